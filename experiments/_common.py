"""Command line shared by the experiment scripts (one script per table or figure of the paper).

Every script takes the same flags (see :func:`build_parser`), trains and predicts through the
cache of :func:`pancreas_seg.experiment.crossval.run_cross_validation`, and writes
``<figures>/<script>.md``, ``<figures>/<script>.csv`` and its PNG figures. User errors end in
one line on stderr and exit code 2 (:func:`pancreas_seg.console.run_guarded`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.config import PRESETS, ExperimentConfig
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import UsageError
from pancreas_seg.experiment.crossval import CrossValResult, run_cross_validation, validation_threshold_curves
from pancreas_seg.experiment.rows import BASE_CNN, data_label, experiment_config, modality_name
from pancreas_seg.experiment.tables import Column, Row, write_table
from pancreas_seg.vocabulary import MODALITY_BY_FLAG

log = logging.getLogger("experiments")

PUBLIC_PRESETS = ("quick", "cpu", "paper")  # shown in --help; "testing" (seconds, tiny data) is for the test suite
DEFAULT_OUT = Path("runs/experiments")
COMMITTED_FIGURES = Path("figures")  # the tables and figures the repository ships
SCRATCH_FIGURES = Path("runs/figures")  # any other run: a partial one never replaces a shipped table
COMMITTED_PRESET = "cpu"  # the preset the shipped tables come from
COMMITTED_ARCHIVE = Path(__file__).resolve().parent / "results"  # fold records of the shipped tables

EPILOG = """\
presets:
  quick  the paper's models shrunk to run on a 2-core CPU: 96x96 slices, 16 channels, a few
         epochs, no unit-by-unit growth ({quick_time}).
  cpu    the committed results: quick's shapes trained until the validation DSC stops
         improving (at most 30 epochs of 320 slices, learning rate halved on plateaus);
         about 3 min per model and fold on a 2-core CPU, so tables are assembled fold by fold
         across sessions (times and the plan: docs/REPRODUCTION.md).
  paper  the paper's protocol (Sec. IV-A): 512x512 slices, 64 channels, full training budgets;
         meant for a GPU and real data (--data).

Trained fold models are cached in --out by a hash of their config and shared between scripts;
an interrupted run resumes where it stopped, and a finished one only re-reads cached predictions.
Each scored fold also leaves a small record in --archive (default for built-in data and the cpu
preset: experiments/results/, committed): a fold recorded there is not trained again on another
machine; figures of probability maps train their folds here.
Without --data the built-in phantom set is used: its numbers are never the paper's numbers.
"""


def _fold_list(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"folds must be integers, e.g. 0 or 0,1 (got {text!r})") from None


def build_parser(description: str, quick_time: str, default_modalities: Sequence[str]) -> argparse.ArgumentParser:
    """The flags every experiment script takes."""
    parser = argparse.ArgumentParser(description=description, epilog=EPILOG.format(quick_time=quick_time),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path,
                        help="converted case store (data_prep/convert_*.py); default: the built-in phantom set")
    parser.add_argument("--modality", choices=[*MODALITY_BY_FLAG, "both"],
                        help=f"rows to run: ct, mri, or both (this script's: {', '.join(default_modalities)}); "
                             "default ct, which keeps the quick preset within minutes on a CPU; "
                             "with --data: the store's modality")
    parser.add_argument("--folds", type=_fold_list, nargs="+", metavar="K",
                        help="cross-validation folds to run, e.g. 0 1 or 0,1 (default: all)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                        metavar="{" + ",".join(PUBLIC_PRESETS) + "}",
                        help="training protocol (default: quick)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every model, e.g. train.epochs_full=10")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"cache of trained models and predictions (default: {DEFAULT_OUT})")
    parser.add_argument("--figures", type=Path,
                        help=f"where tables and figures are written (default: {COMMITTED_FIGURES}/ for a run of "
                             f"what the repository ships: built-in data, --modality both, all folds, preset "
                             f"{COMMITTED_PRESET}, no --set; {SCRATCH_FIGURES}/ for any other run)")
    parser.add_argument("--archive", type=Path,
                        help=f"results archive of fold records (default: experiments/results/ for built-in data, "
                             f"preset {COMMITTED_PRESET} and no --set; none otherwise)")
    parser.add_argument("--no-archive", action="store_true", help="neither read nor write fold records")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


@dataclass
class Context:
    """What a script needs: parsed flags, stores and cross-validation results by row."""

    name: str  # script name: names the output files
    args: argparse.Namespace
    modalities: list[str]  # "CT" / "MRI"
    _stores: dict[str, CaseStore] = field(default_factory=dict)
    _results: dict[tuple, CrossValResult] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Header of the ``ours`` column, e.g. ``ours (built-in CT phantoms, quick preset)``."""
        return data_label(self.args.preset, self.modalities, self.args.data)

    def config(self, modality: str, model: str = BASE_CNN, loss: str = "jac",
               overrides: Sequence[str] = ()) -> ExperimentConfig:
        try:
            return experiment_config(self.args.preset, modality, model, loss, overrides=[*overrides, *self.args.set])
        except ValueError as err:
            raise UsageError(str(err)) from None

    def store(self, modality: str) -> CaseStore:
        """The ``--data`` store, or the built-in phantom set of the preset (built on first use)."""
        name = modality_name(modality)
        if name not in self._stores:
            if self.args.data is not None:
                self._stores[name] = CaseStore(self.args.data)
            else:
                from pancreas_seg.data.builtin import ensure_store

                self._stores[name] = ensure_store(name, self.config(name).data.builtin_set, jobs=os.cpu_count() or 1,
                                                  progress=not self.args.quiet)
        return self._stores[name]

    def run(self, modality: str, model: str = BASE_CNN, loss: str = "jac", maps: bool = False,
            variant: str | None = None, overrides: Sequence[str] = ()) -> CrossValResult:
        """Cross-validated results of one row (trained, predicted and cached on first use, or read
        from the results archive); ``maps``: every fold with its probability maps (trained here);
        ``variant``: ``COARSE_TO_FINE`` for the row's model predicted through a trained localiser;
        ``overrides``: the row's own ``key=value`` config changes (``--set`` comes after them)."""
        key = (modality_name(modality), model, loss, maps, variant, tuple(overrides))
        if key not in self._results:
            config = self.config(modality, model, loss, overrides)
            folds = None if self.args.folds is None else sorted({k for group in self.args.folds for k in group})
            try:
                self._results[key] = run_cross_validation(config, self.store(modality), self.args.out, folds,
                                                          progress=not self.args.quiet, archive=self.args.archive,
                                                          maps=maps, variant=variant)
            except ValueError as err:
                raise UsageError(str(err)) from None
        return self._results[key]

    def validation_curves(self, modality: str, thresholds: Sequence[float], model: str = BASE_CNN,
                          loss: str = "jac") -> np.ndarray:
        """Mean validation DSC per fold and output threshold of one row, ``[folds, T]`` (cached)."""
        return validation_threshold_curves(self.run(modality, model, loss), self.store(modality), thresholds,
                                           progress=not self.args.quiet)

    def table(self, rows: Sequence[Row], columns: Sequence[Column], title: str,
              notes: Sequence[str] = ()) -> list[Path]:
        """Write ``<figures>/<script>.md`` and ``.csv``."""
        folds = "all folds" if self.args.folds is None else f"folds {sorted({k for g in self.args.folds for k in g})}"
        notes = [*notes, f"ours: {folds}, config overrides {self.args.set or 'none'}, models in {self.args.out}"]
        return list(write_table(rows, self.args.figures / self.name, columns, self.label, title, notes))

    def figure_path(self, suffix: str = "") -> Path:
        """``<figures>/<script>[_suffix].png``."""
        return self.args.figures / f"{self.name}{'_' + suffix if suffix else ''}.png"


def _modalities(args: argparse.Namespace, default: Sequence[str]) -> list[str]:
    if args.data is not None:
        stored = CaseStore(args.data).modality
        if args.modality and args.modality != "both" and modality_name(args.modality) != stored:
            raise UsageError(f"--modality {args.modality} but {args.data} holds {stored} cases")
        return [stored]
    if args.modality == "both":
        return [modality_name(m) for m in default]
    return [modality_name(args.modality or "ct")]


def figures_folder(args: argparse.Namespace) -> Path:
    """``--figures``, else :data:`COMMITTED_FIGURES` for a run that recomputes a shipped table whole
    and :data:`SCRATCH_FIGURES` for any other (fewer modalities or folds, other data, preset or config)."""
    if args.figures is not None:
        return args.figures
    whole = (args.data is None and args.modality == "both" and args.folds is None and not args.set
             and args.preset == COMMITTED_PRESET)
    return COMMITTED_FIGURES if whole else SCRATCH_FIGURES


def archive_folder(args: argparse.Namespace) -> Path | None:
    """``--archive``, else :data:`COMMITTED_ARCHIVE` for built-in data with the committed preset and
    no overrides (records of other configs would not be read by anyone), else none."""
    if args.no_archive:
        return None
    if args.archive is not None:
        return args.archive
    shipped = args.data is None and not args.set and args.preset == COMMITTED_PRESET
    return COMMITTED_ARCHIVE if shipped else None


def run_script(script_file: str, description: str, body: Callable[[Context], list[Path]],
               argv: Sequence[str] | None, default_modalities: Sequence[str] = ("ct", "mri"),
               quick_time: str = "time not yet measured") -> int:
    """Parse flags, run ``body`` under the one-line error guard, list the files written."""
    parser = build_parser(description.strip(), quick_time, default_modalities)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def go() -> int:
        args.figures = figures_folder(args)
        args.archive = archive_folder(args)
        context = Context(Path(script_file).stem, args, _modalities(args, default_modalities))
        for path in body(context):
            print(path)
        return 0

    return run_guarded(go)


def main_guard(main: Callable[[], int]) -> None:
    """``sys.exit(main())`` for ``if __name__ == "__main__"``."""
    sys.exit(main())
