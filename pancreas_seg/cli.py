"""Command line: ``pancreas-seg <command> ...``.

Each command is a thin argparse layer over a library function. User errors
(:class:`~pancreas_seg.errors.PancreasSegError`) become one line on stderr and exit code 2;
nothing half-written is left behind because the library writes atomically.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from pancreas_seg.errors import PancreasSegError

EXIT_USER_ERROR = 2


class UsageError(PancreasSegError):
    """A command-line argument that cannot be used."""
Command = Callable[[argparse.Namespace], int]


def run_guarded(main: Callable[[], int]) -> int:
    """Run ``main``; turn user errors into one clear line and a non-zero exit code."""
    try:
        return main()
    except PancreasSegError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")


def _convert_dicom(args: argparse.Namespace) -> int:
    from pancreas_seg.io.dicom import read_dicom_series
    from pancreas_seg.io.nifti import write_nifti

    scan = read_dicom_series(args.folder, series=args.series, modality=args.modality)
    path = write_nifti(scan, args.output)
    z, y, x = scan.spacing
    print(f"{path}: {scan.shape[2]}x{scan.shape[1]}x{scan.shape[0]} voxels, {x:.3f}x{y:.3f}x{z:.3f} mm, {scan.modality}")
    return 0


def _add_convert_dicom(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("convert-dicom", help="convert one DICOM series folder to NIfTI")
    parser.add_argument("folder", type=Path, help="folder holding the series (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .nii or .nii.gz")
    parser.add_argument("--series", help="SeriesInstanceUID (or unique prefix) when the folder holds several")
    parser.add_argument("--modality", choices=["CT", "MRI"], help="override the DICOM Modality tag")
    return _convert_dicom


def _store_info(args: argparse.Namespace) -> int:
    from pancreas_seg.data.store import CaseStore

    print(CaseStore(args.store).summary())
    return 0


def _add_store_info(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("store-info", help="summarise a converted case store")
    parser.add_argument("store", type=Path)
    return _store_info


def _train(args: argparse.Namespace) -> int:
    from pancreas_seg.config import apply_overrides, preset
    from pancreas_seg.data import builtin
    from pancreas_seg.data.splits import case_patients_from_manifest, make_folds, save_folds
    from pancreas_seg.data.store import CaseStore
    from pancreas_seg.train import train

    try:
        config = apply_overrides(preset(args.preset), args.set or [])
        if args.model:
            config = apply_overrides(config, [f"model.name={args.model}"])
        if args.loss:
            config = apply_overrides(config, [f"train.loss={args.loss}"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    store = CaseStore(args.data) if args.data else builtin.ensure_store(config.data.modality, config.data.builtin_set)
    folds = make_folds(case_patients_from_manifest(store.manifest), config.data.folds,
                       config.data.validation_fraction, config.data.seed)
    if not 0 <= args.fold < len(folds):
        raise UsageError(f"--fold must be in 0..{len(folds) - 1}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_folds(folds, args.out / "folds.json")
    result = train(config, args.out, store, folds[args.fold], progress=not args.quiet)
    print(f"{result.model_path}: validation DSC {result.final_dice:.3f} (selected {result.selected_dice})")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("train", help="train a model on one cross-validation fold")
    parser.add_argument("--data", type=Path, help="case store (default: the built-in phantom set)")
    parser.add_argument("--preset", default="paper", help="paper | quick | testing")
    parser.add_argument("--model", help="pnet_msa | pnet64 | hnn | unet | cnn_rnn (overrides the preset)")
    parser.add_argument("--loss", help="jac | ce | cbce (overrides the preset)")
    parser.add_argument("--fold", type=int, default=0, help="cross-validation fold to train (0-based)")
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs_full=10")
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/train"), help="run folder (resumes if present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return _train


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], Command]] = [
    _add_convert_dicom,
    _add_store_info,
    _add_train,
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(prog="pancreas-seg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {}
    for add in SUBCOMMANDS:
        before = set(sub.choices)
        handler = add(sub)
        (name,) = set(sub.choices) - before
        handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_guarded(lambda: handlers[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
