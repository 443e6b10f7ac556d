"""Tables with the paper's numbers beside ours (Tables I–IV and the figures' summary tables).

:func:`write_table` puts the paper's numbers (``pancreas_seg/resources/reported_results.json``)
beside ours, always labelled with the data and preset they came from: results on the built-in
phantoms are never the paper's numbers.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import numpy as np

from pancreas_seg import metrics
from pancreas_seg.evaluate import DISPLAY
from pancreas_seg.experiment.rows import modality_name
from pancreas_seg.vocabulary import MODALITIES
from pancreas_seg.io.atomic import atomic_write_text

QUOTED = "quoted from the paper"
MISSING = "—"


def reported_results() -> dict[str, Any]:
    """The paper's numbers shipped with the package (``resources/reported_results.json``)."""
    text = resources.files("pancreas_seg").joinpath("resources", "reported_results.json").read_text()
    return json.loads(text)


def paper_rows(table: str, modality: str) -> dict[str, dict[str, list[float]]]:
    """``{method: {metric: [mean, std, min, max]}}`` of one table and modality, in the paper's
    units (% or mm). Tables reported for CT only (``table3_birnn_ct``) give ``{}`` for MRI."""
    reported = reported_results()
    if table not in reported:
        raise KeyError(f"no table {table!r} in the reported results; known: {sorted(k for k in reported if not k.startswith('_'))}")
    entry, name = reported[table], modality_name(modality)
    if name in entry:
        return entry[name]
    if set(entry) & set(MODALITIES):
        return {}
    return entry if table.lower().endswith(f"_{name.lower()}") else {}


@dataclass(frozen=True)
class Column:
    """A table column: ``ours`` values are multiplied by ``scale`` (100: fraction → %);
    paper values are already in display units. Columns of a metric come from :func:`metric_column`."""

    key: str
    title: str
    scale: float = 100.0
    digits: int = 1
    markdown: bool = True  # shown in the Markdown table; every column is in the CSV


def metric_column(key: str, title: str | None = None) -> Column:
    """The column of a :data:`~pancreas_seg.metrics.METRIC_KEYS` metric in its display units
    (:data:`pancreas_seg.evaluate.DISPLAY`); ``title`` defaults to ``"<key> (<unit>)"``."""
    display = DISPLAY[key]
    return Column(key, title if title is not None else f"{key} ({display.unit})", display.scale, display.digits)


Cell = Union[metrics.Summary, float, int, str, Sequence[float], None]


@dataclass
class Row:
    """One table row: our results and the paper's, per column key."""

    group: str  # "CT" / "MRI"
    method: str
    ours: Mapping[str, Cell] = field(default_factory=dict)  # Summary, number (ours units) or text
    paper: Mapping[str, Cell] = field(default_factory=dict)  # [mean, std, min, max], number or text (paper units)
    note: str = ""


def _paper_number(value: float, digits: int) -> str:
    """A transcribed number with at least ``digits`` decimals and all it was given with (``8.12``)."""
    text = repr(float(value))
    given = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{value:.{max(digits, given)}f}"


def _format_paper(cell: Cell, digits: int) -> str:
    """The paper's ``mean±std [min,max]`` as transcribed (values already in %, mm)."""
    if isinstance(cell, (list, tuple)) and len(cell) == 4:
        mean, std, low, high = (_paper_number(v, digits) for v in cell)
        return f"{mean}±{std} [{low},{high}]"
    if isinstance(cell, (list, tuple)) and len(cell) == 1:
        return _paper_number(cell[0], digits)
    return _format(cell, 1.0, digits)


def _format(cell: Cell, scale: float, digits: int) -> str:
    if cell is None:
        return MISSING
    if isinstance(cell, str):
        return cell
    if isinstance(cell, metrics.Summary):
        return MISSING if cell.n == 0 else metrics.format_summary(cell, scale, digits)
    if isinstance(cell, (int, np.integer)) and not isinstance(cell, bool):
        return str(int(cell))
    if isinstance(cell, (float, np.floating)):
        return MISSING if math.isnan(cell) else f"{cell * scale:.{digits}f}"
    values = list(cell)
    if len(values) == 4:
        return metrics.format_summary(metrics.Summary(*values, n=1, n_nan=0), scale, digits)
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    raise ValueError(f"cannot format {cell!r}")


def _numbers(cell: Cell, scale: float) -> list[Any]:
    """``[mean, std, min, max, n]`` of an ``ours`` cell in display units, blanks where unknown."""
    if isinstance(cell, metrics.Summary):
        return [*(None if math.isnan(v) else v * scale for v in cell[:4]), cell.n]
    if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
        value = float(cell)
        return [None if math.isnan(value) else value * scale, None, None, None, None]
    return [None] * 5


def render_markdown(rows: Sequence[Row], columns: Sequence[Column], data_label: str, title: str = "",
                    notes: Sequence[str] = ()) -> str:
    """Markdown table with a ``paper`` and an ``ours`` column per shown metric, short enough for a
    screen: the data and preset are named once above it, columns not shown are listed below it."""
    shown = [column for column in columns if column.markdown]
    header = ["", "method"]
    for column in shown:
        header += [f"{column.title} paper", f"{column.title} ours"]  # the data and preset: named above
    header.append("note")
    lines = [f"# {title}", ""] if title else []
    lines += [f"`paper`: Cai et al. 2018, as printed. `{data_label}`: this reproduction; "
              "results on phantoms are not the paper's numbers.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row in rows:
        cells = [row.group, row.method]
        for column in shown:
            cells.append(_format_paper(row.paper.get(column.key), column.digits))
            cells.append(_format(row.ours.get(column.key), column.scale, column.digits))
        cells.append(row.note)
        lines.append("| " + " | ".join(cells) + " |")
    hidden = [column.title for column in columns if not column.markdown]
    if hidden:
        notes = [*notes, f"in the CSV only: {', '.join(hidden)}"]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Row], columns: Sequence[Column], data_label: str) -> str:
    """Long CSV, one line per row and metric: the paper's and our formatted cells side by side,
    then our mean/std/min/max in display units and the case count."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "method", "metric", "paper", data_label,
                     "ours_mean", "ours_std", "ours_min", "ours_max", "ours_n", "note"])
    for row in rows:
        for column in columns:
            numbers = _numbers(row.ours.get(column.key), column.scale)
            writer.writerow([row.group, row.method, column.title,
                             _format_paper(row.paper.get(column.key), column.digits),
                             _format(row.ours.get(column.key), column.scale, column.digits),
                             *("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in numbers),
                             row.note])
    return buffer.getvalue()


def write_table(rows: Sequence[Row], path_stem: str | os.PathLike, columns: Sequence[Column], data_label: str,
                title: str = "", notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``<path_stem>.md`` and ``<path_stem>.csv`` atomically; returns both paths."""
    stem = Path(path_stem)
    md = atomic_write_text(stem.with_name(stem.name + ".md"), render_markdown(rows, columns, data_label, title, notes))
    table = atomic_write_text(stem.with_name(stem.name + ".csv"), render_csv(rows, columns, data_label))
    return md, table

