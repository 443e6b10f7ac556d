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

from pancreas_seg.config import DEFAULT_PREDICT_BATCH_SIZE, PRESETS
from pancreas_seg.console import EXIT_SOME_FAILED, run_guarded, setup_logging
from pancreas_seg.errors import UsageError
from pancreas_seg.io.atomic import check_output_file, check_output_folder, check_writable
from pancreas_seg.vocabulary import (DEFAULT_FINE_STAGE, FINE_STAGES, LOSS_NAMES, MODALITIES, PANCREAS_CROP,
                                     PRECISIONS, RUNTIMES, SCAN_MODELS)

Command = Callable[[argparse.Namespace], int]
log = logging.getLogger(__name__)


def _convert_dicom(args: argparse.Namespace) -> int:
    from pancreas_seg.io.dicom import read_dicom_series
    from pancreas_seg.io.nifti import NIFTI_SUFFIXES, write_nifti
    from pancreas_seg.io.intensity import check_intensities

    check_output_file(args.output, NIFTI_SUFFIXES, "NIfTI scan")
    scan = read_dicom_series(args.folder, series=args.series, modality=args.modality)
    check_intensities(scan, args.folder, calibration=False)  # corrupt HU are refused, not converted
    path = write_nifti(scan, args.output)
    z, y, x = scan.spacing
    print(f"{path}: {scan.shape[2]}x{scan.shape[1]}x{scan.shape[0]} voxels, {x:.3f}x{y:.3f}x{z:.3f} mm, {scan.modality}")
    return 0


def _add_convert_dicom(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("convert-dicom", help="convert one DICOM series folder to NIfTI")
    parser.add_argument("folder", type=Path, help="folder holding the series (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .nii or .nii.gz")
    parser.add_argument("--series", help="SeriesInstanceUID (or unique prefix) when the folder holds several")
    parser.add_argument("--modality", choices=MODALITIES, help="override the DICOM Modality tag")
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
    from pancreas_seg.config import FINE_STAGE_OVERRIDES, apply_overrides, preset
    from pancreas_seg.data import builtin
    from pancreas_seg.data.splits import select_fold, store_folds
    from pancreas_seg.data.store import CaseStore
    from pancreas_seg.train import train
    from pancreas_seg.train_localiser import train_localiser

    try:
        config = apply_overrides(preset(args.preset), [*FINE_STAGE_OVERRIDES[args.fine_stage], *(args.set or [])])
        if args.model:
            config = apply_overrides(config, [f"model.name={args.model}"])
        if args.loss:
            config = apply_overrides(config, [f"train.loss={args.loss}"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    check_writable(args.out)
    store = CaseStore(args.data) if args.data else builtin.ensure_store(config.data.modality, config.data.builtin_set,
                                                                        progress=not args.quiet)
    try:
        fold = select_fold(store_folds(store, config.data), args.fold)
    except ValueError as err:
        raise UsageError(f"--fold: {err}") from None
    result = train(config, args.out, store, fold, progress=not args.quiet)
    if not result.worker.is_chief:
        print(f"worker {result.worker.index} of {result.worker.count}: done, weights {result.weights_digest} "
              f"(the chief wrote {args.out})")
        return 0
    print(f"{result.model_path}: validation DSC {result.final_dice:.3f} (selected {result.selected_dice})")
    if args.no_localiser:
        if config.data.crop == PANCREAS_CROP:
            print(f"a fine stage on crops predicts only with its localiser: run pancreas-seg train-localiser {args.out}")
        return 0
    if result.worker.count > 1:
        print(f"the localiser is not trained by several workers: run pancreas-seg train-localiser {args.out}")
        return 0
    _print_localiser(train_localiser(args.out, config, store, progress=not args.quiet))
    return 0


def _print_localiser(result) -> None:
    margin = result.margin
    missed = f"; found nothing on {len(margin.missed)} validation case(s)" if margin.missed else ""
    print(f"{result.folder}: localiser validation DSC {result.validation_dice:.3f}, margin "
          f"{margin.through_plane_mm:g} mm through-plane and {margin.inplane_mm:g} mm in-plane, region "
          f"{100 * margin.region_share:.1f} % of the grid on validation{missed}")


def _train_localiser(args: argparse.Namespace) -> int:
    from pancreas_seg.config import apply_overrides, preset
    from pancreas_seg.data import builtin
    from pancreas_seg.data.store import CaseStore
    from pancreas_seg.run_folder import RunFolder
    from pancreas_seg.train_localiser import train_localiser

    try:
        base = apply_overrides(preset(args.preset), args.set or [])
    except ValueError as err:
        raise UsageError(str(err)) from None
    run_config, _ = RunFolder(args.run).read_config()
    check_writable(args.run)
    data = run_config.data
    store = CaseStore(args.data) if args.data else builtin.ensure_store(data.modality, data.builtin_set,
                                                                        progress=not args.quiet)
    _print_localiser(train_localiser(args.run, base, store, fold=args.fold, progress=not args.quiet))
    return 0


def _add_train_localiser(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("train-localiser", help="train the coarse stage (localiser) of an existing run folder")
    parser.add_argument("run", type=Path, help="run folder of the fine model (gains localiser/)")
    parser.add_argument("--data", type=Path, help="case store the run was trained on (default: the built-in set)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="the localiser's network and training budget (default cpu: minutes on a CPU)")
    parser.add_argument("--fold", type=int, help="fold, for a run that recorded none (exported models)")
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides of the localiser's preset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return _train_localiser


def _add_train(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("train", help="train a model on one cross-validation fold")
    parser.add_argument("--data", type=Path, help="case store (default: the built-in phantom set)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="named config (default paper)")
    parser.add_argument("--model", choices=SCAN_MODELS, help="network (overrides the preset)")
    parser.add_argument("--loss", choices=LOSS_NAMES, help="training loss (overrides the preset)")
    parser.add_argument("--fold", type=int, default=0, help="cross-validation fold to train (0-based)")
    parser.add_argument("--fine-stage", choices=FINE_STAGES, default=DEFAULT_FINE_STAGE,
                        help="crops (default): trained on squares around the pancreas, predicted on its localiser's "
                             "region (more accurate and faster, docs/REPRODUCTION.md); whole-slice: the paper's model")
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs_full=10")
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/train"), help="run folder (resumes if present)")
    parser.add_argument("--no-localiser", action="store_true",
                        help="skip the localiser (the coarse stage of prediction, trained after the model)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return _train


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _predict(args: argparse.Namespace) -> int:
    from pancreas_seg import inference, networks, predict
    from pancreas_seg.output_plan import OptionNames, plan_outputs

    flags = OptionNames(output="-o", series="--series", dicom_seg="--dicom-seg", num_parts="--num-parts",
                        part_id="--part-id")  # named in the plan's messages
    plan = plan_outputs(args.input, args.output, series=args.series, dicom_seg=args.dicom_seg,
                        num_parts=args.num_parts, part_id=args.part_id, names=flags)
    outputs = predict.OutputOptions(save_probability=args.save_probability, qc=args.qc, dicom_seg=args.dicom_seg)
    options = inference.PredictOptions(batch_size=args.batch_size, threshold=args.threshold, tta=args.tta,
                                       largest_component=args.largest_component, dense=args.dense,
                                       precision=args.precision, runtime=args.runtime,
                                       localiser=not args.no_localiser)
    reading = predict.ReadOptions(modality=args.modality, series=args.series)
    _log_devices()
    models = networks.load_models(args.model)
    if not plan.batch:
        item, paths = plan.cases[0]
        report = predict.predict_case(item, paths, models, options, outputs, reading)
        print(f"{paths.mask}: pancreas {report['pancreas_volume_ml']:.1f} mL, slices {report['slice_range']}, "
              f"{report['timings_s']['total']:.1f} s" + _review_note(report))
        for name, error in report["failed_outputs"].items():
            print(f"error: {name} output not written: {error}", file=sys.stderr)
        return EXIT_SOME_FAILED if report["failed_outputs"] else 0
    outcomes = predict.predict_batch(plan.items, args.output, models, options, outputs, progress=not args.quiet,
                                     reading=reading,
                                     overwrite=args.overwrite)
    skipped = sum(1 for outcome in outcomes if outcome.skipped)
    if skipped:
        print(f"{args.output}: {skipped} scans predicted before with the same models and options were skipped "
              "(--overwrite predicts them again)")
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    for outcome in failed:
        print(f"error: {outcome.item.case_id}: {outcome.error}", file=sys.stderr)
    incomplete = [outcome for outcome in outcomes if outcome.report and outcome.report["failed_outputs"]]
    for outcome in incomplete:
        for name, error in outcome.report["failed_outputs"].items():
            print(f"error: {outcome.item.case_id}: {name} output not written: {error}", file=sys.stderr)
    review = sum(1 for outcome in outcomes if outcome.report and outcome.report["quality"]["needs_review"])
    print(f"{args.output}: {len(outcomes) - len(failed)} of {len(outcomes)} scans predicted"
          + (f", {len(failed)} failed" if failed else "") + (f", {review} flagged for review" if review else ""))
    return EXIT_SOME_FAILED if failed or incomplete else 0


def _log_devices() -> None:
    from pancreas_seg.distribute import describe_devices

    log.info("%s", describe_devices())


def _review_note(report: dict) -> str:
    """`` (review: ...)`` naming the raised quality flags of a prediction report, or nothing."""
    quality = report["quality"]
    raised = [name for name in ("no_pancreas", "volume_implausible") if quality[name]]
    if quality["abnormal_shape_changes"]:
        raised.append(f"{quality['abnormal_shape_changes']} abnormal slice changes")
    return f" (review: {', '.join(raised)})" if raised else ""


def _add_predict(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("predict", help="predict pancreas masks of DICOM series or NIfTI scans")
    parser.add_argument("input", type=Path, help="DICOM series folder, NIfTI file, or a folder of several (batch)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="mask .nii.gz for one scan (other outputs beside it); output folder for a batch")
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="run folder or .keras file (config.json beside it); repeat to average models")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_PREDICT_BATCH_SIZE,
                        help=f"3-slice stacks per CNN call (default {DEFAULT_PREDICT_BATCH_SIZE})")
    parser.add_argument("--threshold", type=_probability, help="mask threshold (default: the run's train.threshold)")
    parser.add_argument("--tta", action="store_true", help="average with the left-right flipped prediction")
    parser.add_argument("--largest-component", action="store_true", help="keep the largest connected component")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dense", action="store_const", const=True, dest="dense",
                       help="run the networks on every slice and pixel (the default on a GPU)")
    where.add_argument("--roi", action="store_const", const=False, dest="dense",
                       help="run them only on the region that can hold pancreas (the default elsewhere)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="CNN arithmetic (default auto: OpenVINO's choice for the CPU; under Keras bfloat16 on "
                             "CPUs with AMX, else float32)")
    parser.add_argument("--no-localiser", action="store_true",
                        help="find the region with the model itself on sparse slices, not with the run's localiser")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="what runs the CNN (default auto: OpenVINO on a CPU where it is installed, else Keras)")
    parser.add_argument("--save-probability", action="store_true", help="also write the probability map (_prob)")
    parser.add_argument("--qc", action="store_true", help="also write a QC picture (_qc.png)")
    parser.add_argument("--dicom-seg", action="store_true", help="also write a DICOM SEG (_seg.dcm; DICOM input)")
    parser.add_argument("--modality", choices=MODALITIES,
                        help="scan modality (NIfTI has none: default the model's; overrides the DICOM tag)")
    parser.add_argument("--series", help="SeriesInstanceUID when a single DICOM folder holds several series")
    parser.add_argument("--num-parts", type=_positive_int, default=1,
                        help="split a batch between this many jobs (by sorted case id; default 1)")
    parser.add_argument("--part-id", type=_non_negative_int, default=0,
                        help="this job's part, 0 .. --num-parts - 1: the cases [part-id::num-parts]")
    parser.add_argument("--overwrite", action="store_true",
                        help="predict again the batch cases predicted before with the same models and options")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return _predict


def _summarize(args: argparse.Namespace) -> int:
    from pancreas_seg.cohort import write_cohort_csv

    if args.output is not None:
        check_output_file(args.output, (".csv",), "cohort table")
    path, rows = write_cohort_csv(args.folder, args.output)
    review = sum(1 for row in rows if row["needs_review"] is True)
    failed = [row for row in rows if row["status"] != "ok"]
    print(f"{path}: {len(rows)} cases" + (f", {review} flagged for review" if review else "")
          + (f", {len(failed)} failed" if failed else ""))
    for row in failed:
        print(f"{row['case_id']}: {row['status']} ({row['report']})", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else 0


def _add_summarize(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("summarize", help="gather the prediction reports of a folder into one cohort CSV")
    parser.add_argument("folder", type=Path, help="output folder of predict (searched recursively for reports)")
    parser.add_argument("-o", "--output", type=Path, help="CSV file (default FOLDER/cohort.csv)")
    return _summarize


def _evaluate(args: argparse.Namespace) -> int:
    from pancreas_seg.evaluate import evaluate, format_table, write_results

    if args.output is not None:
        check_output_folder(args.output)
    result = evaluate(args.pred, args.gt, labels=args.label, pred_labels=args.pred_label, progress=not args.quiet)
    print(format_table(result))
    if args.output is not None:
        csv_path, json_path = write_results(result, args.output)
        print(f"wrote {csv_path} and {json_path}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> Command:
    parser = sub.add_parser("evaluate", help="DSC, JI, surface distances of predicted masks against ground truth")
    parser.add_argument("--pred", type=Path, required=True, help="prediction NIfTI file or folder")
    parser.add_argument("--gt", type=Path, required=True, help="ground truth NIfTI file or folder (cases matched by id)")
    parser.add_argument("--label", type=_positive_int, nargs="+",
                        help="ground truth values counted as pancreas (default: the files must hold only 1; "
                             "MSD: 1 2; a multi-organ map: its pancreas value)")
    parser.add_argument("--pred-label", type=_positive_int, nargs="+",
                        help="prediction values counted as pancreas (default: its one nonzero value)")
    parser.add_argument("-o", "--output", type=Path, help="folder for per_case.csv and summary.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return _evaluate


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], Command]] = [
    _add_convert_dicom,
    _add_store_info,
    _add_train,
    _add_train_localiser,
    _add_predict,
    _add_evaluate,
    _add_summarize,
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
