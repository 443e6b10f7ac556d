"""Speed, memory and agreement of dense, region-of-interest and coarse-to-fine prediction on a
phantom CT, under Keras and OpenVINO (run by hand).

A realistic phantom CT (:func:`pancreas_seg.data.phantom.generate_case`, ``size`` px, ``slices``
slices: its margins above and below the pancreas are extended; ``--case`` a number outside the
built-in set, so that no model trained on it has seen the patient) is written as NIfTI and
predicted by the paper-size CNN-RNN of ``benchmarks/localiser_model.py`` (cached in ``--cache``;
about 15 min on 2 cores the first time) or ``--model``, in one fresh process per run, so each
run's peak resident memory is its own and includes tracing and compilation. A run is
``mode:runtime:precision[:margin px]``: mode ``dense`` (every slice and pixel), ``roi`` (the region
the fine model finds on sparse slices) or ``c2f`` (the region of the run's trained localiser,
``pancreas-seg train-localiser``; a model trained on crops around the pancreas,
``benchmarks/crop_model.py``, always runs so); runtime ``keras`` or ``openvino``. Printed: per-stage timings,
the shares of slices and pixels the fine CNN processed, the region's share of the true pancreas,
peak memory, the DSC of every mask with the truth and with the first dense run's.

    python benchmarks/predict_speed.py --cache /tmp/localiser                     # 512 x 512 x 240
    python benchmarks/predict_speed.py --cache /tmp/localiser --slices 600 --runs roi:openvino:auto   # memory
    python benchmarks/predict_speed.py --model runs/fold0 --runs dense:keras:float32 c2f:openvino:auto
    KERAS_BACKEND=jax python benchmarks/predict_speed.py --model runs/fold0 --runs dense:keras:auto --repeat 3  # GPU
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from pancreas_seg import inference, networks
from pancreas_seg.config import DEFAULT_PREDICT_BATCH_SIZE
from pancreas_seg.data.phantom import PhantomConfig, generate_case
from pancreas_seg.distribute import describe_devices
from pancreas_seg.data.preprocess import plan_inplane
from pancreas_seg.io.orientation import to_canonical
from pancreas_seg.io.scan import Scan
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.io.nifti import read_nifti, write_nifti
from pancreas_seg.metrics import dice
from pancreas_seg.vocabulary import PANCREAS_CROP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localiser_model import train_localiser  # noqa: E402 - a sibling script, not a package

KIB_PER_GIB = 1024 ** 2  # ru_maxrss is in KiB on Linux
STAGES = ("read", "preprocess", "localise", "cnn", "birnn", "postprocess")
DEFAULT_RUNS = ("dense:keras:float32", "dense:openvino:auto", "c2f:openvino:auto")  # the first dense run: reference
DEFAULT_CASE = 201  # phantom case number outside the built-in sets (their cases are numbered from 1)


def conv_flops(model: keras.Model) -> float:
    """FLOPs of one forward pass of one slice: 2 x multiply-adds of every Conv2D / Conv2DTranspose of a
    model with a fixed input size (a transposed convolution scatters a kernel from every input pixel)."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += conv_flops(layer)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            k_h, k_w = layer.kernel_size
            shape = layer.input.shape if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output.shape
            total += 2.0 * shape[1] * shape[2] * k_h * k_w * layer.input.shape[-1] * layer.filters
    return total


def predict_once(run: Path, image: Path, mode: str, runtime: str, precision: str, margin: int | None,
                 batch_size: int, mask_out: Path, repeat: int = 1) -> dict:
    """``repeat`` predictions of the scan in this (fresh) process: the timings of each (the first
    includes tracing and compilation), the work and peak memory; the last mask saved to ``mask_out``."""
    models = networks.load_models([run])
    if mode == "c2f" and models[0].localiser is None:
        raise SystemExit(f"{run} has no localiser: pancreas-seg train-localiser {run} --preset cpu --fold 0")
    options = inference.PredictOptions(batch_size=batch_size, dense=mode == "dense", precision=precision,
                                       roi_margin=margin, runtime=runtime, localiser=mode == "c2f")
    repeats = []
    for _ in range(repeat):
        start = time.perf_counter()
        scan = read_nifti(image, modality="CT", kind="image")
        timings = {"read": time.perf_counter() - start}
        prediction = inference.predict_scan(scan, models, options, timings)
        repeats.append(timings)
    np.save(mask_out, prediction.mask)
    return {"timings": repeats[0], "repeats": repeats, "work": asdict(prediction.work),
            "compute": prediction.compute,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_GIB,
            "flops_per_slice": conv_flops(models[0].cnn), "devices": describe_devices()}


def truth_on_grid(scan: Scan, truth: np.ndarray, run: Path) -> np.ndarray:
    """The phantom's pancreas on the run's network grid ``[Z, S, S]`` (canonical orientation); for a
    model on crops around the pancreas, whose region is in the scan's voxels, on the canonical scan."""
    config, _ = RunFolder(run).read_config()
    canonical, _ = to_canonical(scan)
    mask, _ = to_canonical(Scan(truth, scan.affine, scan.modality))
    if config.data.crop == PANCREAS_CROP:
        return mask.array
    return plan_inplane(canonical.array, canonical.spacing, scan.modality, config.data).apply_mask(mask.array)


def _held(work: dict, truth_grid: np.ndarray) -> float | None:
    """Share of the true pancreas voxels inside the region the run predicted (network grid)."""
    if work["roi"] is None:
        return None
    roi = work["roi"]
    y0, y1, x0, x1 = roi["box"]
    return float(truth_grid[roi["z0"]:roi["z1"], y0:y1, x0:x1].sum() / max(1, truth_grid.sum()))


def _in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(predict_once, *args).result()


def _total(timings: dict, work: dict) -> float:
    """Seconds of a prediction: the fine model's localisation is part of its CNN time, a localiser's is not."""
    own = work.get("located_by") == "localiser"
    return sum(timings.get(stage, 0.0) for stage in STAGES if stage != "localise" or own)


def _region_share(held: float | None) -> str:
    return "" if held is None else f"; the region holds {100 * held:.2f} % of the true pancreas"


def _print_run(name: str, result: dict, slices: int, held: float | None) -> None:
    timings, work = result["timings"], result["work"]
    total = _total(timings, work)
    compute = result["compute"]
    print(f"{name}  ({compute['runtime']} {compute['precision']}, mode {work['mode']}, located by "
          f"{work['located_by']}, {result['devices']})")
    for stage in STAGES:
        seconds = timings.get(stage, 0.0)
        note = "  (part of cnn)" if stage == "localise" and work.get("located_by") == "cnn" else ""
        print(f"  {stage:<12} {seconds:8.1f} s  {1000 * seconds / slices:7.1f} ms/slice{note}")
    print(f"  {'total':<12} {total:8.1f} s")
    print(f"  CNN processed {100 * work['slices_fraction']:.1f} % of the slices, "
          f"{100 * work['pixels_fraction']:.1f} % of the pixels; region {work['roi']}{_region_share(held)}")
    flops = result["flops_per_slice"] * slices * work["pixels_fraction"]
    print(f"  CNN {flops / max(timings.get('cnn', 0.0), 1e-9) / 1e9:.1f} GFLOP/s; "
          f"peak resident memory {result['peak_gib']:.2f} GiB")
    for number, again in enumerate(result["repeats"][1:], start=2):
        stages = ", ".join(f"{stage} {again.get(stage, 0.0):.2f}" for stage in STAGES)
        print(f"  again ({number}): total {_total(again, work):.2f} s ({stages} s); "
              f"CNN {flops / max(again.get('cnn', 0.0), 1e-9) / 1e9:.1f} GFLOP/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane pixels of the phantom CT")
    parser.add_argument("--slices", type=int, default=240, help="slices of the phantom CT")
    parser.add_argument("--case", type=int, default=DEFAULT_CASE, help="phantom case number")
    parser.add_argument("--cache", type=Path, help="run folder of the localising model (trained when missing)")
    parser.add_argument("--model", type=Path, help="a run folder to use instead of --cache")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS,
                        help="mode:runtime:precision[:margin px]; mode dense, roi or c2f, runtime keras or "
                             "openvino (default margin: receptive field)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_PREDICT_BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=1,
                        help="predictions per run in its process (the first includes compilation)")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.cache is None):
        parser.error("give --cache or --model")
    run = args.model or train_localiser(args.cache)

    with tempfile.TemporaryDirectory(prefix="predict_speed-") as tmp:
        tmp = Path(tmp)
        phantom = PhantomConfig(matrix=args.size, ct_slices=(args.slices, args.slices))
        scan, truth = generate_case(args.case, "CT", config=phantom)
        image = write_nifti(scan, tmp / "ct.nii.gz")
        print(f"phantom CT case {args.case}: {scan.shape[2]}x{scan.shape[1]}x{scan.shape[0]}, spacing (z, y, x) "
              f"{tuple(round(s, 2) for s in scan.spacing)} mm; pancreas on "
              f"{100 * truth.any(axis=(1, 2)).mean():.0f} % of the slices; model {run}")
        truth_grid = truth_on_grid(scan, truth, run)
        del scan
        masks, results = {}, {}
        for name in args.runs:
            mode, runtime, precision, *margin = name.split(":")
            margin = int(margin[0]) if margin else None
            results[name] = _in_fresh_process(run, image, mode, runtime, precision, margin, args.batch_size,
                                              tmp / f"{len(masks)}.npy", args.repeat)
            masks[name] = np.load(tmp / f"{len(masks)}.npy")
            _print_run(name, results[name], args.slices, _held(results[name]["work"], truth_grid))
    reference = next((name for name in args.runs if name.startswith("dense")), None)
    for name, mask in masks.items():
        line = f"{name}: DSC with truth {dice(mask, truth):.4f}"
        if reference is not None and name != reference:
            lost = int((masks[reference].astype(bool) & ~mask.astype(bool)).sum())
            seconds = _total(results[name]["timings"], results[name]["work"])
            ref_seconds = _total(results[reference]["timings"], results[reference]["work"])
            line += (f"; with {reference}: DSC {dice(mask, masks[reference]):.4f}, {lost} of its "
                     f"{int(masks[reference].sum())} voxels lost, time ratio {ref_seconds / seconds:.2f}x")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
