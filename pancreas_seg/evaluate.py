"""Evaluate predicted pancreas masks against ground truth NIfTI files (paper Sec. IV-A).

:func:`evaluate` takes two files or two folders. In folders, files ending in
``.nii`` or ``.nii.gz`` (not hidden) are cases, the case id being the file name
without that ending. Predictions are paired with ground truth files

1. by identical case id, then
2. among the files left, by the one number in their case id, compared as an
   integer: ``label0001`` (gt) pairs with ``PANCREAS_0001`` or ``case_1``
   (prediction). An id with several numbers (``case1_run2``) is never paired by
   number, and two leftover ids on one side with the number of an id on the
   other side (``seg_3`` and ``s03`` for ``label0003``) are refused as ambiguous.

Files left unpaired are listed in the result (and logged), never dropped
silently; no pair at all is an :class:`~pancreas_seg.errors.InputError`. A row's
``case_id`` is the ground truth's.

Ground truth voxels whose value is in ``labels`` are pancreas (MSD Task07:
``(1, 2)`` = pancreas + tumour; a multi-organ map such as BTCV: ``(7,)``). In
the prediction every nonzero voxel is pancreas, unless ``pred_labels`` is given.
When no ``labels`` are given, a ground truth may hold only the value 1 and a
prediction only one foreground value: a multi-label file is refused, listing its
values, instead of being scored against the wrong organ.
Prediction and ground truth must share the grid (shape and affine).

The metrics are :func:`pancreas_seg.metrics.case_metrics`. :data:`DISPLAY` holds each metric's
display units (scale, decimals, unit) for every table, the experiments' too, and
:func:`nan_to_none` / :func:`none_to_nan` carry undefined values through JSON (``summary.json``
and the experiments' cached fold metrics).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from pancreas_seg import metrics
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write_text
from pancreas_seg.io.nifti import NIFTI_SUFFIXES, nifti_case_id, read_nifti

logger = logging.getLogger(__name__)

CSV_NAME = "per_case.csv"
JSON_NAME = "summary.json"
CSV_DIGITS = 6  # decimals of metric values in the CSV
AFFINE_DIGITS = 3  # decimals of affine entries in error messages
STD_CONVENTION = "sample (ddof=1)"  # the std of every summary (metrics.summarize)
_DIGITS = re.compile(r"\d+")
DEFAULT_LABEL = 1  # the pancreas value of a binary mask (NIH Pancreas-CT labels)


class MetricDisplay(NamedTuple):
    """How a metric is shown in paper-style strings and tables: ``value * scale`` with ``digits``
    decimals, in ``unit``; ``header`` is its short column title in :func:`format_table`."""

    scale: float
    digits: int
    unit: str
    header: str


# Display units of every key of metrics.METRIC_KEYS (raw values: fractions, mm, mL).
DISPLAY: dict[str, MetricDisplay] = {
    "DSC": MetricDisplay(100.0, 1, "%", "DSC%"),
    "JI": MetricDisplay(100.0, 1, "%", "JI%"),
    "precision": MetricDisplay(100.0, 1, "%", "Prec%"),
    "recall": MetricDisplay(100.0, 1, "%", "Rec%"),
    "AVD_pointset_mm": MetricDisplay(1.0, 2, "mm", "AVDpts_mm"),
    "AVD_mm": MetricDisplay(1.0, 2, "mm", "AVDsurf_mm"),
    "HD95_mm": MetricDisplay(1.0, 2, "mm", "HD95_mm"),
    "ASSD_mm": MetricDisplay(1.0, 2, "mm", "ASSD_mm"),
    "volume_pred_ml": MetricDisplay(1.0, 1, "mL", "Vpred_mL"),
    "volume_gt_ml": MetricDisplay(1.0, 1, "mL", "Vgt_mL"),
    "RVE": MetricDisplay(100.0, 1, "%", "RVE%"),
}


@dataclass
class EvaluationResult:
    """Per-case metrics and their summary.

    Attributes:
        rows: one dict per case, sorted by case id: ``case_id``, every key of
            :data:`pancreas_seg.metrics.METRIC_KEYS` (fractions, mm, mL as
            :func:`~pancreas_seg.metrics.case_metrics` returns them),
            ``pred_path`` and ``gt_path``.
        summary: metric key -> :class:`~pancreas_seg.metrics.Summary` over the rows.
        labels: ground truth values counted as pancreas.
        pred_labels: prediction values counted as pancreas, ``None`` = nonzero.
        unmatched_pred, unmatched_gt: files of the folders that paired with nothing.
    """

    rows: list[dict]
    summary: dict[str, metrics.Summary]
    labels: tuple[int, ...] = (1,)
    pred_labels: tuple[int, ...] | None = None
    unmatched_pred: list[Path] = field(default_factory=list)
    unmatched_gt: list[Path] = field(default_factory=list)

    @property
    def both_empty(self) -> list[str]:
        """Cases whose prediction and ground truth are both empty: DSC = JI = 1 by
        :data:`BOTH_EMPTY_CONVENTION`, counted in the means and reported apart."""
        return [row["case_id"] for row in self.rows if row["volume_pred_ml"] == 0 and row["volume_gt_ml"] == 0]


# ---------------------------------------------------------------------------
# finding and pairing cases
# ---------------------------------------------------------------------------

case_id = nifti_case_id  # file name without .nii / .nii.gz
BOTH_EMPTY_CONVENTION = "DSC = JI = 1 when both masks are empty, counted in the means"


def list_cases(folder: str | os.PathLike) -> dict[str, Path]:
    """Case id -> path of the NIfTI files directly in ``folder`` (hidden files skipped). An entry
    named like NIfTI that is no regular file (a symlink loop, a FIFO) is a case, refused when read."""
    folder = Path(folder)
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if path.name.startswith(".") or path.is_dir() or not lower.endswith(NIFTI_SUFFIXES):
            continue
        cid = case_id(path)
        if cid in cases:
            raise InputError(folder, f"two files for case {cid!r}: {cases[cid].name} and {path.name}")
        cases[cid] = path
    return cases


def _without_auxiliary_outputs(cases: dict[str, Path], folder: Path) -> dict[str, Path]:
    """``cases`` less the files that ``predict``'s reports in ``folder`` name as outputs other than
    the mask (``CASE_prob.nii.gz``): a folder written by ``predict`` is evaluated as it stands."""
    from pancreas_seg.cohort import find_reports

    auxiliary = {os.path.realpath(path) for _, report in find_reports(folder) if isinstance(report, dict)
                 for name, path in (report.get("outputs") or {}).items() if name != "mask" and isinstance(path, str)}
    kept = {cid: path for cid, path in cases.items() if os.path.realpath(path) not in auxiliary}
    if len(kept) < len(cases):
        logger.info("%s: %d probability maps written by predict left out", folder, len(cases) - len(kept))
    return kept


def _case_number(cid: str) -> int | None:
    """The number in a case id that holds exactly one run of digits, else ``None``."""
    numbers = _DIGITS.findall(cid)
    return int(numbers[0]) if len(numbers) == 1 else None


def _by_number(ids: Sequence[str]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for cid in ids:
        number = _case_number(cid)
        if number is not None:
            groups.setdefault(number, []).append(cid)
    return groups


def match_cases(pred_cases: dict[str, Path], gt_cases: dict[str, Path]
                ) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """Pair predictions with ground truth (rule in the module docstring).

    Returns:
        ``[(case_id, pred_path, gt_path), ...]`` sorted by the ground truth
        case id, then the unpaired prediction and ground truth paths.

    Raises:
        InputError: two files on one side claim the number of a file on the other side.
    """
    exact = sorted(set(pred_cases) & set(gt_cases))
    pairs = {cid: (pred_cases[cid], gt_cases[cid]) for cid in exact}
    pred_left = [cid for cid in pred_cases if cid not in pairs]
    gt_left = [cid for cid in gt_cases if cid not in pairs]
    pred_numbers, gt_numbers = _by_number(pred_left), _by_number(gt_left)
    for number in sorted(set(pred_numbers) & set(gt_numbers)):
        for side, cases in ((pred_numbers, pred_cases), (gt_numbers, gt_cases)):
            if len(side[number]) > 1:
                names = ", ".join(cases[c].name for c in side[number])
                raise InputError(cases[side[number][0]].parent, f"ambiguous pairing: {names} all carry case number "
                                                                 f"{number}; rename them or give files with equal names")
        pred_id, gt_id = pred_numbers[number][0], gt_numbers[number][0]
        pairs[gt_id] = (pred_cases[pred_id], gt_cases[gt_id])
        pred_left.remove(pred_id)
        gt_left.remove(gt_id)
    matched = [(cid, *pairs[cid]) for cid in sorted(pairs)]
    return matched, [pred_cases[c] for c in pred_left], [gt_cases[c] for c in gt_left]


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

def _check_labels(labels: Sequence[int], name: str) -> tuple[int, ...]:
    labels = tuple(int(v) for v in labels)
    if not labels or any(v <= 0 for v in labels):
        raise ValueError(f"{name} must be one or more positive label values, got {labels}")
    return labels


def _format_affine(affine: np.ndarray) -> str:
    return np.array2string(np.round(affine[:3], AFFINE_DIGITS), separator=",").replace("\n", "")


def _foreground_values(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(array) if v != 0]


def _gt_mask(array: np.ndarray, labels: tuple[int, ...] | None, path: str | os.PathLike) -> np.ndarray:
    """Pancreas of a ground truth: voxels in ``labels``; without labels the file may hold only 1."""
    if labels is None:
        values = _foreground_values(array)
        if set(values) - {DEFAULT_LABEL}:
            raise InputError(path, f"ground truth holds label values {values}; say which are pancreas with --label "
                                   "(e.g. --label 1 2 for MSD pancreas + tumour, --label 7 for a multi-organ map)")
        labels = (DEFAULT_LABEL,)
    return np.isin(array, labels)


def _pred_mask(array: np.ndarray, labels: tuple[int, ...] | None, path: str | os.PathLike) -> np.ndarray:
    """Pancreas of a prediction: voxels in ``labels``; without labels one foreground value (any)."""
    if labels is not None:
        return np.isin(array, labels)
    values = _foreground_values(array)
    if len(values) > 1:
        raise InputError(path, f"prediction holds label values {values}; say which are pancreas with --pred-label")
    return array != 0


def evaluate_case(pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                  labels: Sequence[int] | None = None, pred_labels: Sequence[int] | None = None) -> dict[str, float]:
    """Metrics of one prediction file against one ground truth file.

    Returns :func:`pancreas_seg.metrics.case_metrics` of the two masks, with the
    spacing ``(z, y, x)`` mm of the ground truth. Label semantics: module docstring.

    Raises:
        InputError: a file cannot be read, the grids differ, or a file holds several label
            values and no labels were given for it.
    """
    labels = None if labels is None else _check_labels(labels, "labels")
    gt = read_nifti(gt_path, kind="label")
    pred = read_nifti(pred_path, kind="label")
    if not pred.same_grid(gt):
        raise InputError(
            pred_path,
            f"grid differs from ground truth {Path(gt_path).name}: shape [Z,Y,X] {pred.shape} vs {gt.shape}, "
            f"affine {_format_affine(pred.affine)} vs {_format_affine(gt.affine)}",
        )
    gt_mask = _gt_mask(gt.array, labels, gt_path)
    pred_mask = _pred_mask(pred.array, None if pred_labels is None else _check_labels(pred_labels, "pred_labels"),
                           pred_path)
    if not gt_mask.any():
        logger.warning("%s: no voxel has a label in %s; the ground truth is empty", gt_path, labels or DEFAULT_LABEL)
    return metrics.case_metrics(pred_mask, gt_mask, gt.spacing)


def evaluate_pairs(pred_paths: Sequence[str | os.PathLike], gt_paths: Sequence[str | os.PathLike],
                   labels: Sequence[int] | None = None, pred_labels: Sequence[int] | None = None,
                   case_ids: Sequence[str] | None = None, progress: bool = False) -> EvaluationResult:
    """Evaluate prediction/ground truth file pairs, given in the same order.

    Args:
        pred_paths, gt_paths: NIfTI files, ``pred_paths[i]`` against ``gt_paths[i]``.
        labels: ground truth values counted as pancreas; ``None``: the files must hold only 1.
        pred_labels: prediction values counted as pancreas; ``None``: the one nonzero value.
        case_ids: row names; default the ground truth case ids.
        progress: show a tqdm bar.
    """
    if len(pred_paths) != len(gt_paths):
        raise ValueError(f"{len(pred_paths)} predictions but {len(gt_paths)} ground truth files")
    labels = None if labels is None else _check_labels(labels, "labels")
    pred_labels = None if pred_labels is None else _check_labels(pred_labels, "pred_labels")
    if case_ids is None:
        case_ids = [case_id(p) for p in gt_paths]
    rows = []
    triples = list(zip(case_ids, pred_paths, gt_paths))
    for cid, pred_path, gt_path in tqdm(triples, desc="evaluate", unit="case", disable=not progress):
        values = evaluate_case(pred_path, gt_path, labels, pred_labels)
        rows.append({"case_id": cid, **values, "pred_path": str(pred_path), "gt_path": str(gt_path)})
    return EvaluationResult(rows=rows, summary=summarize_rows(rows), labels=labels or (DEFAULT_LABEL,),
                            pred_labels=pred_labels)


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, metrics.Summary]:
    """Metric key -> :class:`~pancreas_seg.metrics.Summary` over per-case rows (dicts holding every
    key of :data:`~pancreas_seg.metrics.METRIC_KEYS`)."""
    return {key: metrics.summarize([row[key] for row in rows]) for key in metrics.METRIC_KEYS}


def evaluate(pred: str | os.PathLike, gt: str | os.PathLike, labels: Sequence[int] | None = None,
             pred_labels: Sequence[int] | None = None, progress: bool = False) -> EvaluationResult:
    """Evaluate a prediction file against a ground truth file, or folder against folder.

    Pairing of folder contents, label semantics and grid checks are described in
    the module docstring.

    Raises:
        InputError: a path is missing, a file and a folder are mixed, a folder
            has no NIfTI files, no prediction pairs with any ground truth file,
            a file is unreadable or a grid differs.
    """
    pred, gt = Path(pred), Path(gt)
    for path in (pred, gt):
        if not path.exists():
            raise InputError(path, "does not exist")
    if pred.is_file() and gt.is_file():
        return evaluate_pairs([pred], [gt], labels, pred_labels, progress=progress)
    if pred.is_dir() != gt.is_dir():
        raise InputError(pred, f"give two files or two folders; ground truth {gt} is "
                               f"{'a folder' if gt.is_dir() else 'a file'}")
    pred_cases, gt_cases = _without_auxiliary_outputs(list_cases(pred), pred), list_cases(gt)
    for folder, cases in ((gt, gt_cases), (pred, pred_cases)):
        if not cases:
            raise InputError(folder, f"no {' or '.join(NIFTI_SUFFIXES)} files in this folder")
    pairs, unmatched_pred, unmatched_gt = match_cases(pred_cases, gt_cases)
    if not pairs:
        raise InputError(pred, f"no prediction matches a ground truth file in {gt} "
                               f"(e.g. {next(iter(pred_cases))!r} vs {next(iter(gt_cases))!r})")
    for path in unmatched_pred:
        logger.warning("%s: no matching ground truth file, not evaluated", path)
    for path in unmatched_gt:
        logger.warning("%s: no matching prediction, not evaluated", path)
    cids, pred_paths, gt_paths = zip(*pairs)
    result = evaluate_pairs(pred_paths, gt_paths, labels, pred_labels, case_ids=cids, progress=progress)
    result.unmatched_pred, result.unmatched_gt = unmatched_pred, unmatched_gt
    return result


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

def format_metric(key: str, summary: metrics.Summary) -> str:
    """Paper-style ``mean±std [min,max]`` of one metric in its display unit."""
    display = DISPLAY[key]
    return metrics.format_summary(summary, scale=display.scale, digits=display.digits)


def nan_to_none(value: Any) -> Any:
    """``value`` with every non-finite float, also inside dicts, lists and tuples, replaced by
    ``None``: JSON has no nan. :func:`none_to_nan` undoes it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


def none_to_nan(value: Any) -> Any:
    """``value`` read from JSON with every ``None``, also inside dicts and lists, turned into nan."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: none_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [none_to_nan(v) for v in value]
    return value


def metric_summaries(summary: Mapping[str, metrics.Summary]) -> dict[str, dict]:
    """``summary.json``'s ``"metrics"``: per metric mean/std/min/max (raw units, ``None`` for nan),
    n, n_nan and the paper-style string in display units."""
    per_metric = {}
    for key, s in summary.items():
        display = DISPLAY[key]
        per_metric[key] = {
            "mean": s.mean, "std": s.std, "min": s.min, "max": s.max, "n": s.n, "n_nan": s.n_nan,
            "paper": format_metric(key, s), "paper_unit": display.unit, "paper_scale": display.scale,
        }
    return nan_to_none(per_metric)


def summary_dict(result: EvaluationResult) -> dict:
    """JSON-ready summary: case count, labels, :func:`metric_summaries`, unmatched files and the
    cases with both masks empty."""
    return {
        "n_cases": len(result.rows),
        "both_empty": {"n": len(result.both_empty), "cases": result.both_empty, "convention": BOTH_EMPTY_CONVENTION},
        "labels": list(result.labels),
        "pred_labels": None if result.pred_labels is None else list(result.pred_labels),
        "std": STD_CONVENTION,
        "metrics": metric_summaries(result.summary),
        "unmatched_pred": [str(p) for p in result.unmatched_pred],
        "unmatched_gt": [str(p) for p in result.unmatched_gt],
    }


def write_results(result: EvaluationResult, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``per_case.csv`` (case_id, metrics, paths) and ``summary.json``, each atomically.

    CSV values are the raw metric units (fractions, mm, mL) with
    :data:`CSV_DIGITS` decimals, ``nan`` where undefined.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["case_id", *metrics.METRIC_KEYS, "pred_path", "gt_path"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in result.rows:
        writer.writerow([f"{row[c]:.{CSV_DIGITS}f}" if c in metrics.METRIC_KEYS else row[c] for c in columns])
    csv_path, json_path = out_dir / CSV_NAME, out_dir / JSON_NAME
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(json_path, json.dumps(summary_dict(result), indent=2) + "\n")
    return csv_path, json_path


def format_table(result: EvaluationResult) -> str:
    """Text table: one line per case (display units), then the paper-style summary per metric."""
    keys = metrics.METRIC_KEYS
    id_width = max([len("case_id"), *(len(row["case_id"]) for row in result.rows)])
    widths = [max(len(DISPLAY[k].header), 8) for k in keys]
    lines = ["  ".join([f"{'case_id':<{id_width}}", *(f"{DISPLAY[k].header:>{w}}" for k, w in zip(keys, widths))])]
    for row in result.rows:
        cells = []
        for key, width in zip(keys, widths):
            display = DISPLAY[key]
            cells.append(f"{row[key] * display.scale:>{width}.{display.digits}f}")
        lines.append("  ".join([f"{row['case_id']:<{id_width}}", *cells]))
    lines.append("")
    lines.append(f"{len(result.rows)} cases, mean±std (sample) [min,max]:")
    name_width = max(len(k) for k in keys) + 5
    for key in keys:
        unit = DISPLAY[key].unit
        lines.append(f"  {f'{key} ({unit})':<{name_width}} {format_metric(key, result.summary[key])}")
    if result.both_empty:
        lines.append(f"{len(result.both_empty)} of these with both masks empty ({BOTH_EMPTY_CONVENTION}): "
                     f"{', '.join(result.both_empty)}")
    for label, paths in (("predictions", result.unmatched_pred), ("ground truth files", result.unmatched_gt)):
        if paths:
            lines.append(f"unmatched {label} ({len(paths)}): {', '.join(p.name for p in paths)}")
    return "\n".join(lines)
