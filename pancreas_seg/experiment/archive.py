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

import filecmp
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
    an older record whole: a reader sees the old record or the new one, never a mix. A record
    already equal to the run's is left as it is. The older record's validation curve is kept
    when the run has none and its test metrics are the record's (the same model: the curve is
    computed once, on the machine that had the run's probability maps)."""
    run, destination = RunFolder(run_dir), Path(destination)
    names = [*RUN_RECORD_FILES, METRICS_FILE, VALIDATION_CURVE_FILE,
             *(f"{stage}/{HISTORY_NAME}" for stage in run.state.stages)]
    sources = {name: run.root / name for name in names if (run.root / name).is_file()}
    if VALIDATION_CURVE_FILE not in sources and _same_file(run.root / METRICS_FILE, destination / METRICS_FILE) \
            and (destination / VALIDATION_CURVE_FILE).is_file():
        sources[VALIDATION_CURVE_FILE] = destination / VALIDATION_CURVE_FILE
    if _same_record(sources, destination):
        return
    with atomic_folder(destination) as tmp:  # the old record stays in place until the block ends
        for name, source in sources.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / name)


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def _same_record(sources: dict[str, Path], destination: Path) -> bool:
    """Whether ``destination`` holds exactly the files named in ``sources``, each with its source's content."""
    if not destination.is_dir():
        return False
    held = sorted(str(path.relative_to(destination)) for path in destination.rglob("*") if path.is_file())
    return held == sorted(sources) and all(_same_file(source, destination / name) for name, source in sources.items())


def load_metrics(record: Path) -> dict[str, Any] | None:
    """The record's ``test_metrics.json``, or None where there is no readable record."""
    path = Path(record) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
