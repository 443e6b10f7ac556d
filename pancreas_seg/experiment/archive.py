"""Results archive: the small, durable record of every finished cross-validation fold.

The ``--out`` cache (models, probability maps) is large and lives on one machine. Regenerating
every table takes longer than one CPU session, so each finished fold also leaves a record small
enough to commit (``experiments/results/`` for the shipped tables)::

    <archive>/<name>-<config_hash>/fold_<k>/
        test_metrics.json            per-case metrics and their cache keys (crossval's format)
        validation_thresholds.json   mean validation DSC per output threshold
        config.json  state.json  validation.json  <stage>/history.csv   the trainer's record

Tables and the figures drawn from metrics are assembled from these records, fold by fold, on
any machine; a fold is trained only where no record of its config exists.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pancreas_seg.io.atomic import atomic_folder
from pancreas_seg.run_folder import HISTORY_NAME, RunFolder

METRICS_FILE = "test_metrics.json"
VALIDATION_CURVE_FILE = "validation_thresholds.json"
RUN_RECORD_FILES = ("config.json", "state.json", "validation.json")


def record_dir(archive: Path, row: str, fold_index: int) -> Path:
    """``<archive>/<row>/fold_<k>``; ``row`` is ``<name>-<config_hash>``."""
    return Path(archive) / row / f"fold_{fold_index}"


def save_fold(run_dir: Path, destination: Path) -> None:
    """Copy the record of a finished fold run (module docstring) to ``destination``, replacing
    an older record whole: a reader sees the old record or the new one, never a mix."""
    run = RunFolder(run_dir)
    names = [*RUN_RECORD_FILES, METRICS_FILE, VALIDATION_CURVE_FILE]
    histories = [f"{stage}/{HISTORY_NAME}" for stage in run.state.stages]

    with atomic_folder(destination) as tmp:
        for name in [*names, *histories]:
            source = run.root / name
            if source.is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, tmp / name)


def load_metrics(record: Path) -> dict[str, Any] | None:
    """The record's ``test_metrics.json``, or None where there is no readable record."""
    path = Path(record) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
