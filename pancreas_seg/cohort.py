"""A cohort predicted by several jobs (nnU-Net's convention), then gathered into one table.

- :func:`select_part`: job ``part_id`` of ``num_parts`` takes every ``num_parts``-th case by sorted
  case id, starting at ``part_id``; the jobs of an array cover the cohort exactly once.
- :func:`is_finished`: a case whose report says it was predicted with the same models (path and
  config hash) and options, and whose mask exists, need not be predicted again: a restarted job
  array resumes.
- :func:`write_cohort_csv`: the per-case JSON reports of an output folder as one CSV (volume,
  slice range, quality flags, models, time), the table a volumetry study needs.

Keras-free: it reads and writes the files of :mod:`pancreas_seg.predict`.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence, TypeVar

from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

VERSION_KEY = "pancreas_seg_version"  # present in every prediction report, and only there
REPORT_PATTERN = "*.json"
COHORT_NAME = "cohort.csv"
MODELS_SEPARATOR = ";"
COLUMNS = ("case_id", "status", "pancreas_volume_ml", "first_slice", "last_slice", "needs_review", "no_pancreas",
           "volume_implausible", "abnormal_shape_changes", "models", "total_s", "modality", "input", "report")

Item = TypeVar("Item")


def select_part(items: Sequence[Item], num_parts: int, part_id: int) -> list[Item]:
    """Job ``part_id``'s share of ``items`` (objects with a ``case_id``): ``sorted(items)[part_id::num_parts]``.

    Raises:
        ValueError: ``num_parts`` < 1 or ``part_id`` outside ``0..num_parts-1``.
    """
    if num_parts < 1:
        raise ValueError(f"the number of parts must be at least 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise ValueError(f"part id {part_id} is outside 0..{num_parts - 1}")
    return sorted(items, key=lambda item: item.case_id)[part_id::num_parts]


def read_report(path: str | os.PathLike) -> dict[str, Any] | None:
    """The prediction report in ``path``, or ``None`` when it is not one (unreadable, not JSON, no version key)."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and VERSION_KEY in report else None


def _model_keys(models: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(resolved path, config hash)`` of each model description, in order (the average depends on the set)."""
    return [(str(Path(model.get("path", "")).resolve()), str(model.get("config_hash"))) for model in models]


def is_finished(report_path: str | os.PathLike, mask_path: str | os.PathLike, models: Sequence[dict[str, Any]],
                flags: dict[str, Any]) -> bool:
    """True when ``report_path`` is a report made with the same ``models`` (their ``describe()``:
    path and config hash) and the same ``flags`` (options and outputs asked), and its mask exists."""
    report = read_report(report_path)
    if report is None or not Path(mask_path).is_file():
        return False
    same_models = _model_keys(report.get("models", [])) == _model_keys(models)
    return same_models and report.get("flags") == json.loads(json.dumps(flags))


def find_reports(folder: str | os.PathLike) -> list[tuple[Path, dict[str, Any] | str]]:
    """``(path, report)`` of the prediction reports under ``folder`` (recursively, hidden entries
    skipped), sorted by path; each file is read once. A JSON file that cannot be read or parsed
    comes with the reason instead of a report (a half-written or damaged report must not vanish
    from the cohort); valid JSON without :data:`VERSION_KEY` is not a report and is left out.

    Raises:
        InputError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "is not a folder of predictions")
    found: list[tuple[Path, dict[str, Any] | str]] = []
    for path in sorted(folder.rglob(REPORT_PATTERN)):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            found.append((path, f"unreadable report ({type(exc).__name__}: {exc})"))
            continue
        if isinstance(report, dict) and VERSION_KEY in report:
            found.append((path, report))
    return found


def _report_problem(report: dict[str, Any]) -> str | None:
    """Why a report cannot stand for its case in the cohort table, or ``None``."""
    if not isinstance(report.get("case_id"), str) or not report["case_id"]:
        return "damaged report: no case_id"
    for key in ("quality", "outputs", "timings_s"):
        if not isinstance(report.get(key), dict):
            return f"damaged report: {key} is {type(report.get(key)).__name__}, not an object"
    mask = report["outputs"].get("mask")
    if not mask or not Path(mask).is_file():
        return f"mask missing: {mask}"
    return None


def cohort_row(report: dict[str, Any] | str, path: Path) -> dict[str, Any]:
    """One CSV row of a report: status (``ok`` or ``failed: <reason>``), volume (mL), slice range
    (0-based axial indices, empty without pancreas), quality flags, models (``path#config_hash``
    joined by ``;``), total time (s). ``report`` is the reason when the file could not be read;
    a failed row keeps only what can be trusted (case id, else the file's stem, and the report path)."""
    problem = report if isinstance(report, str) else _report_problem(report)
    if problem is not None:
        case_id = report.get("case_id") if isinstance(report, dict) else None
        row = dict.fromkeys(COLUMNS, "")
        row.update(case_id=case_id if isinstance(case_id, str) and case_id else path.name.removesuffix(".json"),
                   status=f"failed: {problem}", report=str(path))
        return row
    quality = report["quality"]
    first, last = report.get("slice_range") or ("", "")
    models = MODELS_SEPARATOR.join(f"{m.get('path')}#{m.get('config_hash')}" for m in report.get("models", []))
    return {"case_id": report["case_id"], "status": "ok", "pancreas_volume_ml": report.get("pancreas_volume_ml"),
            "first_slice": first, "last_slice": last, "needs_review": quality.get("needs_review"),
            "no_pancreas": quality.get("no_pancreas"), "volume_implausible": quality.get("volume_implausible"),
            "abnormal_shape_changes": quality.get("abnormal_shape_changes"), "models": models,
            "total_s": report["timings_s"].get("total"), "modality": report.get("modality"),
            "input": report.get("input"), "report": str(path)}


def cohort_rows(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of every report under ``folder``, sorted by case id.

    Rows of reports that cannot be used (unreadable, damaged, mask missing) are kept with
    ``status`` ``failed: <reason>``.

    Raises:
        InputError: no report under ``folder``, or two reports of one case.
    """
    rows: dict[str, dict[str, Any]] = {}
    for path, report in find_reports(folder):
        row = cohort_row(report, path)
        first = rows.get(row["case_id"])
        if first is not None:
            raise InputError(path, f"a second report of case {row['case_id']!r} (the first: {first['report']})")
        rows[row["case_id"]] = row
    if not rows:
        raise InputError(folder, "holds no prediction report (JSON with pancreas_seg_version)")
    return [rows[case_id] for case_id in sorted(rows)]


def write_cohort_csv(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> tuple[Path, list[dict]]:
    """Write the cohort table of ``folder``'s reports to ``output`` (default ``folder/cohort.csv``),
    atomically; returns the path and the rows."""
    rows = cohort_rows(folder)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = atomic_write_text(Path(output) if output is not None else Path(folder) / COHORT_NAME, text.getvalue())
    log.info("%s: %d cases", path, len(rows))
    return path, rows
