"""Prediction from files to files: the work of ``pancreas-seg predict``.

Inputs (:func:`find_inputs`): a NIfTI file, a DICOM series folder, or a batch folder holding
several NIfTI files and/or subfolders of one series each. Each scan is read, predicted in memory
(:func:`pancreas_seg.inference.predict_scan`) and its outputs written beside the mask.

Outputs of one case (:class:`OutputPaths`) are written together
(:func:`~pancreas_seg.io.atomic.atomic_write_many`): every file goes to a hidden temporary name
first and all are renamed into place only when all were written, so a failure leaves no partial output.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from pancreas_seg import __version__
from pancreas_seg.cohort import VERSION_KEY, is_finished, read_report
from pancreas_seg.errors import InputError, PancreasSegError, one_line
from pancreas_seg.inference import Prediction, PredictOptions, predict_scan
from pancreas_seg.io.atomic import atomic_write, atomic_write_many, check_writable
from pancreas_seg.io.dicom import list_series, read_dicom_series, resolve_series
from pancreas_seg.io.intensity import check_intensities
from pancreas_seg.io.dicom_seg import SegSource, check_seg_source, write_dicom_seg
from pancreas_seg.io.nifti import (NIFTI_SUFFIXES, XFORM_CODE_FIELDS, nifti_case_id, read_nifti, split_nifti_name,
                                   write_nifti)
from pancreas_seg.io.scan import Scan
from pancreas_seg.metrics import ABNORMAL_SHAPE_CHANGE_MM
from pancreas_seg.metrics import volume_ml as volume_of
from pancreas_seg.networks import LoadedModel, timed
from pancreas_seg.plots import qc_figure
from pancreas_seg.roi import RoiWork

logger = logging.getLogger(__name__)

STAGES = ("read", "preprocess", "cnn", "birnn", "postprocess", "write")  # timed stages in the report
INPUT_KINDS = ("dicom", "nifti")

# output naming: "<stem><suffix>" beside the mask
PROBABILITY_SUFFIX = "_prob"
REPORT_SUFFIX = ".json"
QC_SUFFIX = "_qc.png"
DICOM_SEG_SUFFIX = "_seg.dcm"
BATCH_MASK_SUFFIX = ".nii.gz"

PLAUSIBLE_VOLUME_ML = (20.0, 250.0)  # adult pancreas volumes outside this range are flagged for review

# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: ``kind`` ``"dicom"`` (a series folder) or ``"nifti"`` (a file)."""

    case_id: str
    path: Path
    kind: str


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _real(path: Path) -> Path:
    """``path`` with its symbolic links followed; unlike ``Path.resolve`` it does not raise on a loop."""
    return Path(os.path.realpath(path))


def _named_nifti(path: Path) -> bool:
    """Named like a NIfTI file and no folder: a case, even when it cannot be read (a symlink loop,
    a FIFO), so that its reading fails that case alone."""
    return not path.is_dir() and path.name.lower().endswith(NIFTI_SUFFIXES)


def _is_prediction_folder(path: Path) -> bool:
    """A folder holding this tool's prediction reports (an earlier run's output): not a case."""
    if not path.is_dir():
        return False
    return any(read_report(report) is not None for report in path.glob(f"*{REPORT_SUFFIX}"))


def find_inputs(path: str | os.PathLike, exclude: str | os.PathLike | None = None) -> tuple[list[ScanInput], bool]:
    """The scans under ``path`` and whether it is a batch.

    A NIfTI file is one scan; a folder whose files (recursively) form one DICOM image series is
    one scan; a folder holding NIfTI files and/or several subfolders is a batch: each NIfTI file
    directly inside and each subfolder (one series each) is a case. Hidden entries,
    ``exclude`` (the output folder, when inside) and folders of earlier predictions are skipped.

    Returns:
        ``(inputs, is_batch)``; inputs sorted by case id.

    Raises:
        InputError: missing path, a file that is not NIfTI, a folder with neither DICOM images
            nor NIfTI files, two cases with the same id.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist" + (" (a broken symbolic link or a symlink loop)"
                                                   if path.is_symlink() else ""))
    if not path.is_file() and not path.is_dir():
        raise InputError(path, "neither a regular file nor a folder (a FIFO, socket or device cannot be read)")
    if path.is_file():
        if not _is_nifti(path):
            raise InputError(path, f"not a NIfTI file ({' or '.join(NIFTI_SUFFIXES)}); for DICOM give the "
                                   "folder holding the series")
        return [ScanInput(nifti_case_id(path), path, "nifti")], False
    skip = _real(Path(exclude)) if exclude is not None else None
    entries = [p for p in _visible(path) if _real(p) != skip and not _is_prediction_folder(p)]
    niftis = [p for p in entries if _named_nifti(p)]
    folders = [p for p in entries if p.is_dir()]
    for odd in sorted(set(entries) - set(niftis) - set(folders)):
        if not odd.is_file():
            logger.warning("%s: skipped: not a regular file or folder (FIFO, socket, device, broken link or "
                           "symlink loop)", odd)
    if not niftis:
        try:
            series = list_series(path)
        except InputError:
            if len(folders) < 2:
                raise
            series = None  # a broken file in one case: reported when that case is read
        if series is not None and len(series) == 1:
            return [ScanInput(path.name, path, "dicom")], False
        if series is not None and not series:
            try:
                resolve_series(path)
            except InputError as err:  # says which images were skipped, and why
                raise InputError(path, f"no NIfTI files and {err.problem}") from None
        if len(folders) < 2:
            return [ScanInput(path.name, path, "dicom")], False  # several series: the reader lists them
    inputs = [ScanInput(nifti_case_id(p), p, "nifti") for p in niftis]
    inputs += [ScanInput(p.name, p, "dicom") for p in folders]
    seen: dict[str, Path] = {}
    for item in inputs:
        if item.case_id in seen:
            raise InputError(path, f"two inputs for case {item.case_id!r}: {seen[item.case_id].name} and {item.path.name}")
        seen[item.case_id] = item.path
    return sorted(inputs, key=lambda item: item.case_id), True


def read_input(item: ScanInput, modality: str | None, series: str | None = None) -> Scan:
    """Read a :class:`ScanInput`; ``modality`` overrides the DICOM tag and is required for NIfTI."""
    if item.kind == "dicom":
        return read_dicom_series(item.path, series=series, modality=modality)
    if modality is None:
        raise ValueError("the modality of a NIfTI scan must be given")
    return read_nifti(item.path, modality=modality, kind="image")


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputPaths:
    """Where one case's outputs go."""

    mask: Path
    probability: Path
    report: Path
    qc: Path
    dicom_seg: Path

    @classmethod
    def beside(cls, mask: str | os.PathLike) -> "OutputPaths":
        """Single-scan naming: ``mask`` (``.nii.gz`` / ``.nii``), the rest beside it with suffixes."""
        mask = Path(mask)
        parts = split_nifti_name(mask)
        if parts is None:
            raise InputError(mask, f"output mask must end with {' or '.join(NIFTI_SUFFIXES)}")
        stem, suffix = parts
        return cls(mask, mask.with_name(stem + PROBABILITY_SUFFIX + suffix), mask.with_name(stem + REPORT_SUFFIX),
                   mask.with_name(stem + QC_SUFFIX), mask.with_name(stem + DICOM_SEG_SUFFIX))

    @classmethod
    def in_folder(cls, folder: str | os.PathLike, case_id: str) -> "OutputPaths":
        """Batch naming: ``<folder>/<case_id>.nii.gz`` and the rest beside it."""
        return cls.beside(Path(folder) / f"{case_id}{BATCH_MASK_SUFFIX}")

    def files(self) -> tuple[Path, ...]:
        return self.mask, self.probability, self.report, self.qc, self.dicom_seg


def check_outputs(plan: Sequence[tuple[ScanInput, OutputPaths]]) -> None:
    """Refuse, before any scan is read, outputs that cannot be written or would replace an input scan.

    Raises:
        InputError: naming the output and the reason (its folder cannot be written, the input it
            would overwrite, or the two cases it belongs to: case ``x``'s probability map is case
            ``x_prob``'s mask).
    """
    for folder in sorted({paths.mask.parent for _, paths in plan}):
        if folder.exists() and not folder.is_dir():
            raise InputError(folder, "is a file, not a folder: outputs cannot be written inside it")
        check_writable(folder)
    for _, paths in plan:
        for output in (paths.mask, paths.report):  # always written; an optional output failing keeps the mask
            if output.is_dir():
                raise InputError(output, "is a folder; the output must be a file")
    inputs = {_real(item.path): item.path for item, _ in plan}
    owners: dict[Path, str] = {}
    for item, paths in plan:
        for output in paths.files():
            if _real(output) in inputs:
                raise InputError(output, f"would overwrite the input scan {inputs[_real(output)]}; "
                                         "choose another output")
            owner = owners.setdefault(_real(output), item.case_id)
            if owner != item.case_id:
                raise InputError(output, f"is an output of both case {owner!r} and case {item.case_id!r}; "
                                         "rename one of the inputs")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a scan from its files.

    Attributes:
        modality: ``"CT"`` / ``"MRI"``: overrides the DICOM Modality tag; for NIfTI (which has none)
            the default is the models' modality. Given, it also turns off the check that the
            intensities look like that modality (corrupt CT HU are refused whatever it says).
        series: SeriesInstanceUID of the series to read from a single DICOM folder holding several.
    """

    modality: str | None = None
    series: str | None = None


@dataclass(frozen=True)
class OutputOptions:
    """Which optional outputs to write besides the mask and the JSON report."""

    save_probability: bool = False
    qc: bool = False
    dicom_seg: bool = False


def _slice_range(mask: np.ndarray) -> list[int] | None:
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return None if slices.size == 0 else [int(slices[0]), int(slices[-1])]


def quality_flags(prediction: Prediction, volume_ml: float) -> dict:
    """What a reviewer should look at: no pancreas, an implausible volume, abnormal shape changes
    between neighbouring slices (Sec. IV-D, CT); ``needs_review`` when any is raised."""
    low, high = PLAUSIBLE_VOLUME_ML
    changes = prediction.abnormal_changes_mm
    flags = {
        "no_pancreas": not prediction.mask.any(),
        "volume_implausible": bool(prediction.mask.any()) and not low <= volume_ml <= high,
        "plausible_volume_ml": [low, high],
        "abnormal_shape_changes": None if changes is None else len(changes),
        "abnormal_shape_change_z_mm": changes,
        "abnormal_shape_change_threshold_mm": ABNORMAL_SHAPE_CHANGE_MM,
    }
    flags["needs_review"] = bool(flags["no_pancreas"] or flags["volume_implausible"] or changes)
    return flags


def build_report(item: ScanInput, scan: Scan, prediction: Prediction, models: Sequence[LoadedModel],
                 options: PredictOptions, outputs: OutputOptions, paths: OutputPaths,
                 failed: dict[str, str] | None = None, reading: ReadOptions = ReadOptions()) -> dict:
    """The JSON report of one case (input, volume, slice range, quality flags, timings, the work
    done, models, threshold, options, outputs written and optional outputs that failed)."""
    failed = failed or {}
    volume_ml = volume_of(prediction.mask, scan.spacing)
    written = {"mask": str(paths.mask), "report": str(paths.report)}
    for name, wanted in (("probability", outputs.save_probability), ("qc", outputs.qc),
                         ("dicom_seg", outputs.dicom_seg)):
        if wanted and name not in failed:
            written[name] = str(getattr(paths, name))
    timings = {stage: round(prediction.timings.get(stage, 0.0), 4) for stage in STAGES}
    return {
        "case_id": item.case_id,
        "input": str(item.path.resolve()),
        "input_kind": item.kind,
        "modality": scan.modality,
        "shape_zyx": list(scan.shape),
        "spacing_zyx_mm": [round(s, 6) for s in scan.spacing],
        "pancreas_voxels": int(prediction.mask.sum()),
        "pancreas_volume_ml": volume_ml,
        "slice_range": _slice_range(prediction.mask),
        "quality": quality_flags(prediction, volume_ml),
        "threshold": prediction.threshold,
        "timings_s": {**timings, "total": round(sum(timings.values()), 4)},
        "work": _work(prediction.work),
        "compute": dict(prediction.compute),
        "models": [model.describe() for model in models],
        "flags": report_flags(options, outputs, reading),
        "outputs": written,
        "failed_outputs": dict(failed),
        VERSION_KEY: __version__,
    }


def _work(work: RoiWork) -> dict:
    """What the networks computed: ``mode`` (``"roi"``, ``"dense"`` or a dense fallback), the shares
    of dense CNN slices and pixels, and the region of interest on the network grid."""
    return {"mode": work.mode, "located_by": work.located_by, "slices_fraction": round(work.slices_fraction, 4),
            "pixels_fraction": round(work.pixels_fraction, 4),
            "region": None if work.roi is None else {"slices": [work.roi.z0, work.roi.z1],
                                                     "box_yx": list(work.roi.box)}}


def _scan_modality(item: ScanInput, models: Sequence[LoadedModel], reading: ReadOptions) -> str | None:
    if reading.modality is not None or item.kind == "dicom":
        return reading.modality
    modality = models[0].config.data.modality
    logger.info("%s: NIfTI has no modality; taking the model's (%s)", item.path, modality)
    return modality


def predict_case(item: ScanInput, paths: OutputPaths, models: Sequence[LoadedModel],
                 options: PredictOptions = PredictOptions(), outputs: OutputOptions = OutputOptions(),
                 reading: ReadOptions = ReadOptions()) -> dict:
    """Read (as ``reading`` says), predict and write one scan; returns its report (also written to ``paths.report``).

    The mask and the report are written together, all or nothing. Optional outputs (probability,
    QC picture, DICOM SEG) are written each on its own first: one that fails is named in the
    report's ``failed_outputs`` and never costs the mask.

    Raises:
        InputError: unreadable scan, modality mismatch, corrupt CT intensities, intensities
            unlike the modality (without ``reading.modality``), DICOM SEG asked for a NIfTI input or a series a SEG
            cannot be derived from (checked before the prediction). Nothing is written then.
    """
    if outputs.dicom_seg and item.kind != "dicom":
        raise InputError(item.path, "a DICOM SEG needs a DICOM input series (this input is NIfTI)")
    timings: dict[str, float] = {}
    with timed(timings, "read"):
        seg_source = check_seg_source(item.path, reading.series) if outputs.dicom_seg else None
        series = reading.series if seg_source is None else seg_source.series.uid
        scan = read_input(item, _scan_modality(item, models, reading), series)
    check_intensities(scan, item.path, calibration=reading.modality is None, override="give --modality {modality}")
    prediction = predict_scan(scan, models, options, timings)
    write_start = time.perf_counter()
    failed = _write_optional_outputs(item, scan, prediction, paths, outputs, seg_source)
    report: dict = {}

    def write_report(tmp: Path) -> None:  # last writer: the timings of the others are known
        timings["write"] = time.perf_counter() - write_start
        report.update(build_report(item, scan, prediction, models, options, outputs, paths, failed, reading))
        tmp.write_text(json.dumps(report, indent=2) + "\n")

    mask = Scan(prediction.mask, scan.affine, scan.modality, _same_coordinates(scan))
    atomic_write_many({paths.mask: lambda tmp: write_nifti(mask, tmp, dtype=np.uint8), paths.report: write_report})
    return report


def _same_coordinates(scan: Scan) -> dict[str, str]:
    """The NIfTI transform codes of the input, for outputs on its grid (none for DICOM: scanner)."""
    return {name: scan.source[name] for name in XFORM_CODE_FIELDS if name in scan.source}


def _write_optional_outputs(item: ScanInput, scan: Scan, prediction: Prediction, paths: OutputPaths,
                            outputs: OutputOptions, seg_source: SegSource | None) -> dict[str, str]:
    """Write the optional outputs asked for, each atomically; ``{name: one-line error}`` of those that failed."""
    writers: dict[str, Callable[[Path], object]] = {}
    if outputs.save_probability:
        probability = Scan(prediction.probability, scan.affine, scan.modality, _same_coordinates(scan))
        writers["probability"] = lambda tmp: write_nifti(probability, tmp, dtype=np.float32)
    if outputs.qc:
        writers["qc"] = lambda tmp: qc_figure(scan.array, prediction.mask, scan.spacing, tmp, title=item.case_id)
    if outputs.dicom_seg:
        writers["dicom_seg"] = lambda tmp: write_dicom_seg(prediction.mask, seg_source, tmp, affine=scan.affine)
    failed = {}
    for name, writer in writers.items():
        try:
            atomic_write(getattr(paths, name), writer)
        except Exception as exc:  # noqa: BLE001 - an optional output must not cost the mask, whatever failed
            logger.error("%s: %s output failed: %s", item.case_id, name, exc)
            failed[name] = f"{type(exc).__name__}: {one_line(exc)}"
    return failed


@dataclass
class CaseOutcome:
    """One case of a batch: its report, or the one-line error that stopped it."""

    item: ScanInput
    report: dict | None = None
    error: str | None = None
    skipped: bool = False  # predicted before with the same models and options: its report is the earlier one


def predict_batch(items: Sequence[ScanInput], out_dir: str | os.PathLike, models: Sequence[LoadedModel],
                  options: PredictOptions = PredictOptions(), outputs: OutputOptions = OutputOptions(),
                  progress: bool = True, overwrite: bool = True, reading: ReadOptions = ReadOptions()) -> list[CaseOutcome]:
    """:func:`predict_case` for every input into ``out_dir/<case_id>.*``; a failed case, whatever
    failed, is logged and recorded as one line in its :class:`CaseOutcome`, and the others go on.
    Unless ``overwrite``, a case predicted before with the same models and options is skipped
    (:func:`pancreas_seg.cohort.is_finished`)."""
    out_dir = Path(out_dir)
    results = []
    for item in tqdm(items, desc="predict", unit="scan", disable=not progress):
        if not overwrite and (done := finished_report(item, out_dir, models, options, outputs, reading)) is not None:
            results.append(CaseOutcome(item, report=done, skipped=True))
            continue
        try:
            report = predict_case(item, OutputPaths.in_folder(out_dir, item.case_id), models, options, outputs,
                                  reading)
        except PancreasSegError as exc:
            logger.error("%s: failed: %s", item.case_id, exc)
            results.append(CaseOutcome(item, error=str(exc)))
        except Exception as exc:  # noqa: BLE001 - one case's unexpected failure must not stop the batch
            logger.exception("%s: failed", item.case_id)
            results.append(CaseOutcome(item, error=f"{type(exc).__name__}: {one_line(exc)}"))
        else:
            results.append(CaseOutcome(item, report=report))
    return results


def report_flags(options: PredictOptions, outputs: OutputOptions, reading: ReadOptions = ReadOptions()) -> dict:
    """The ``flags`` of a report: every reading and prediction option and output asked for."""
    return {**{f.name: getattr(options, f.name) for f in fields(options)},
            **{f.name: getattr(reading, f.name) for f in fields(reading)},
            **{f.name: getattr(outputs, f.name) for f in fields(outputs)}}


def finished_report(item: ScanInput, out_dir: str | os.PathLike, models: Sequence[LoadedModel],
                    options: PredictOptions, outputs: OutputOptions, reading: ReadOptions = ReadOptions()) -> dict | None:
    """The report of ``item`` in ``out_dir`` when it was predicted with the same models (path and
    config hash) and options and its mask exists, else ``None``."""
    paths = OutputPaths.in_folder(out_dir, item.case_id)
    if not is_finished(paths.report, paths.mask, [model.describe() for model in models],
                       report_flags(options, outputs, reading)):
        return None
    logger.info("%s: predicted before with the same models and options; skipped", item.case_id)
    return json.loads(paths.report.read_text())
