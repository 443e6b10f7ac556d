"""A paper-size CNN-RNN for crops around the pancreas, with a trained localiser (for the speed benchmark).

The fine model is the ``paper`` preset's CNN-RNN (PNet-MSA, 5 units x 4 convs, 64 channels, and
the BiRNN) at ``--size`` px on squares of at least ``--fov-mm`` around the pancreas
(``data.crop=pancreas``), untrained: its arithmetic, and so its time, is that of a trained one;
its masks are not. The localiser is copied from a run folder trained with ``pancreas-seg
train-localiser RUN --preset cpu`` (e.g. a Table II coarse-to-fine fold), so the region it finds
and its margin are a trained localiser's.

    python benchmarks/crop_model.py --localiser runs/experiments/models/pnet_msa-...-c2f/fold_1/localiser --out /tmp/crop
    python benchmarks/predict_speed.py --model /tmp/crop --runs c2f:keras:float32 c2f:openvino:auto
    python benchmarks/crop_model.py --whole-slice --out /tmp/wholeslice   # the reference: 512 px whole slices
    python benchmarks/predict_speed.py --model /tmp/wholeslice --runs dense:keras:float32
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from pancreas_seg.config import preset
from pancreas_seg.models.build import build_model
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.train import export_run

DEFAULT_SIZE = 256  # px: 200 mm at 0.78 mm, about the NIH pixel spacing
DEFAULT_FOV_MM = 200.0  # mm: the widest phantom pancreas (176 mm) and 2 x 10 mm


def make_crop_run(localiser: Path, out: Path, size: int = DEFAULT_SIZE, fov_mm: float = DEFAULT_FOV_MM) -> RunFolder:
    """``out``: the paper CNN-RNN on ``size`` px crops, with ``localiser`` (a run folder with
    ``margin.json``) as its ``localiser/``."""
    if not (RunFolder(localiser).margin_path.is_file() and RunFolder(localiser).model_path.is_file()):
        raise SystemExit(f"{localiser}: not a trained localiser (model.keras and margin.json)")
    paper = preset("paper")
    config = replace(paper, data=replace(paper.data, crop="pancreas", fov_mm=fov_mm, input_size=size),
                     model=replace(paper.model, name="cnn_rnn"))
    run = export_run(build_model(config.model, size), config, out)
    if run.localiser_dir.exists():
        shutil.rmtree(run.localiser_dir)
    shutil.copytree(localiser, run.localiser_dir)
    return run


def make_whole_slice_run(out: Path) -> RunFolder:
    """``out``: the paper CNN-RNN on whole 512 px slices, untrained, without a localiser."""
    paper = preset("paper")
    config = replace(paper, model=replace(paper.model, name="cnn_rnn"))
    return export_run(build_model(config.model, config.data.input_size), config, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--localiser", type=Path, help="a trained localiser's run folder")
    parser.add_argument("--whole-slice", action="store_true", help="the whole-slice reference model instead")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="crop side in px")
    parser.add_argument("--fov-mm", type=float, default=DEFAULT_FOV_MM, help="least crop side in mm")
    args = parser.parse_args(argv)
    if args.whole_slice:
        print(f"{make_whole_slice_run(args.out).root}: paper CNN-RNN on whole 512 px slices")
        return 0
    if args.localiser is None:
        parser.error("give --localiser (or --whole-slice)")
    run = make_crop_run(args.localiser, args.out, args.size, args.fov_mm)
    print(f"{run.root}: paper CNN-RNN on {args.size} px crops of at least {args.fov_mm:g} mm, localiser from "
          f"{args.localiser}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
