"""The run folder: what one training run writes and what prediction and experiments read back.

Layout (every file written atomically)::

    config.json        {"config": ExperimentConfig, "config_hash", "backend", "identity"}
    state.json         finished stages in order: {"order": [...], "stages": {stage: {model, epochs, best,
                       selected_epoch (1-based), selected_slices, samples_per_step, selected_by}}}
    <stage>/           history.csv, best.keras, last.keras, tensorboard/, backup/ (while running)
    model.keras        the selected final model
    last.keras         the last epoch's model of the last stage
    validation.json    loss and DSC of the final model on the validation subset
    localiser/         optional: the coarse stage, a run folder of its own, and margin.json (its
                       margin, chosen on the validation cases; :mod:`pancreas_seg.localiser`)

A run's identity is its config hash, its cross-validation fold (case ids of every subset) and a
fingerprint of the case store it was trained on. Resuming into a folder that holds another
identity is refused: a fold-1 run resumed from a fold-0 folder would leak test patients into
training. This module is keras-free; the trainer saves and loads the models themselves.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pancreas_seg.config import ExperimentConfig, config_hash, from_dict, missing_keys, missing_sections, to_dict
from pancreas_seg.data.splits import Fold
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write_json

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
STATE_NAME = "state.json"
MODEL_NAME = "model.keras"
LAST_NAME = "last.keras"
BEST_NAME = "best.keras"
VALIDATION_NAME = "validation.json"
HISTORY_NAME = "history.csv"
BACKUP_DIR = "backup"  # in a stage folder: Keras's BackupAndRestore state of the epoch in progress
TENSORBOARD_DIR = "tensorboard"
MODEL_SUFFIX = ".keras"
LOCALISER_DIR = "localiser"  # in a run folder: the localiser's own run folder
MARGIN_NAME = "margin.json"  # in the localiser's folder: its margin and how it was chosen
FINGERPRINT_LENGTH = 12  # hex digits of the store fingerprint
# fine-tuning stage -> the stage it starts from, whose validation DSC (Acc_t) it must regain (Sec. IV-A)
FINE_TUNED_FROM = {"finetune": "full", "end_to_end": "rnn"}


@dataclass(frozen=True)
class RunIdentity:
    """What a run was trained on, besides its config: the fold and the store's content."""

    fold: dict[str, Any]  # Fold as a dict: index and the case ids of train / validation / test
    store_modality: str
    store_fingerprint: str  # hash of the store manifest's cases (ids, shapes, spacings, volumes)
    store_root: str  # where the store was, for people; a moved store with the same cases still matches

    @classmethod
    def of(cls, store: CaseStore, fold: Fold) -> "RunIdentity":
        as_json = json.loads(json.dumps(asdict(fold)))  # lists, as config.json gives them back
        return cls(as_json, store.modality, store_fingerprint(store), str(store.root.resolve()))

    def mismatch(self, other: "RunIdentity") -> str | None:
        """A one-line description of how ``other`` differs, or ``None`` when it is the same run."""
        if self.fold != other.fold:
            return f"fold {other.fold.get('index')} (not fold {self.fold.get('index')} with the same cases)"
        if (self.store_modality, self.store_fingerprint) != (other.store_modality, other.store_fingerprint):
            return f"another case store ({other.store_root})"
        return None


def store_fingerprint(store: CaseStore) -> str:
    """Short hash of the store's manifest entries: equal for the same converted cases, wherever they are."""
    text = json.dumps({"modality": store.modality, "cases": store.manifest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


class RunState:
    """``state.json``: the finished stages in order, each with its model file (relative to the
    run folder), epochs run and best monitored value."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / STATE_NAME
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"order": [], "stages": {}}

    def done(self, stage: str) -> bool:
        return stage in self.data["stages"]

    def get(self, stage: str) -> dict[str, Any]:
        return self.data["stages"][stage]

    def model_path(self, stage: str) -> Path:
        return self.root / self.get(stage)["model"]

    @property
    def stages(self) -> list[str]:
        """Finished stages in the order they finished."""
        return list(self.data["order"])

    @property
    def last_stage(self) -> str:
        return self.data["order"][-1]

    def best(self, stage: str) -> float | None:
        """Best monitored value of a finished stage, ``None`` when it has not finished."""
        return self.data["stages"].get(stage, {}).get("best")

    def kept(self, stage: str) -> bool:
        """False for a fine-tuning stage whose last validation DSC stayed below Acc_t, the DSC of
        the stage it started from: by the paper's own rule (Sec. IV-A) its fine-tuning never
        finished, and the earlier model, selected on validation cases it did not train on, stays."""
        earlier = FINE_TUNED_FROM.get(stage)
        if earlier is None or not self.done(earlier) or not self.done(stage):
            return True
        return bool(self.best(stage) >= self.best(earlier))

    def finish(self, stage: str, **values: Any) -> None:
        self.data["stages"][stage] = values
        self.data["order"] = [s for s in self.data["order"] if s != stage] + [stage]
        atomic_write_json(self.path, self.data)


class RunFolder:
    """One training run's folder (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_path(self) -> Path:
        return self.root / STATE_NAME

    @property
    def model_path(self) -> Path:
        return self.root / MODEL_NAME

    @property
    def last_path(self) -> Path:
        return self.root / LAST_NAME

    @property
    def validation_path(self) -> Path:
        return self.root / VALIDATION_NAME

    @property
    def localiser_dir(self) -> Path:
        return self.root / LOCALISER_DIR

    @property
    def margin_path(self) -> Path:
        """Where a localiser's run folder keeps its margin."""
        return self.root / MARGIN_NAME

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def history_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / HISTORY_NAME

    @property
    def state(self) -> RunState:
        """The finished stages, read afresh from ``state.json``."""
        return RunState(self.root)

    @property
    def finished(self) -> bool:
        """True once the trainer wrote the selected model."""
        return self.model_path.is_file()

    # -- config and identity ------------------------------------------------------------------

    def write_config(self, config: ExperimentConfig, identity: RunIdentity | None = None,
                     backend: str | None = None) -> Path:
        """Write ``config.json`` (the full config, its hash, the backend and the run identity)."""
        payload = {"config": to_dict(config), "config_hash": config_hash(config), "backend": backend,
                   "identity": None if identity is None else asdict(identity)}
        return atomic_write_json(self.config_path, payload)

    def start(self, config: ExperimentConfig, identity: RunIdentity, backend: str) -> None:
        """Record a new run, or check that the run already here is the same one (resume).

        Raises:
            InputError: the folder holds a run of another config, fold or store.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.config_path.is_file():
            self.write_config(config, identity, backend)
            return
        payload = self._read_payload()
        if payload.get("config_hash") != config_hash(config):
            raise InputError(self.root, "holds a run with another config; use a new work folder")
        recorded = payload.get("identity")
        if recorded is None:
            log.warning("%s: run recorded no fold or store (older version); resuming without that check", self.root)
            return
        difference = RunIdentity(**recorded).mismatch(identity)
        if difference is not None:
            raise InputError(self.root, f"holds a run trained on {_describe(recorded)}; this run is for "
                                        f"{difference}; use a new work folder")

    def read_identity(self) -> RunIdentity | None:
        """The fold and store the run was trained on; ``None`` for a run that recorded none
        (older versions, :func:`~pancreas_seg.train.export_run`)."""
        recorded = self._read_payload().get("identity")
        return None if recorded is None else RunIdentity(**recorded)

    def read_config(self) -> tuple[ExperimentConfig, str]:
        """``(config, config_hash)`` of the run, the hash computed from the config as it will be used.

        A config missing a whole section (``data``, ``model``, ``train``) is refused: its defaults
        would run the model on another preprocessing without a word. Keys newer than the version
        that wrote the run take their defaults, named in a warning, and the hash then differs from
        the stored one (also warned): reports carry the hash of what was used.

        Raises:
            InputError: ``config.json`` is missing, is not a run configuration or lacks a section.
        """
        payload = self._read_payload()
        data = payload.get("config")
        if isinstance(data, dict) and (absent := missing_sections(data)):
            raise InputError(self.config_path, f"incomplete run configuration: section(s) {absent} missing; "
                                               "the model's preprocessing is unknown")
        try:
            config = from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(self.config_path, f"not a run configuration ({type(exc).__name__}: {exc})") from None
        if absent := missing_keys(data):
            log.warning("%s: keys %s missing (written by an older version); their defaults are used",
                        self.config_path, absent)
        used = config_hash(config)
        if payload.get("config_hash") not in (None, used):
            log.warning("%s: stored config hash %s, %s as read; reports carry %s", self.config_path,
                        payload.get("config_hash"), used, used)
        return config, used

    def _read_payload(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(self.config_path, f"not a run configuration ({type(exc).__name__}: {exc})") from None
        if not isinstance(payload, dict):
            raise InputError(self.config_path, "not a run configuration (not a JSON object)")
        return payload

    # -- stages -------------------------------------------------------------------------------

    def adopt_stages(self, source: "RunFolder", exclude: Collection[str] = ()) -> list[str]:
        """Copy the finished stages of ``source`` (but ``exclude``) into this new run, so its
        trainer skips them; returns the stages taken.

        Each stage's model file, history and last weights are copied to the same place and
        listed in this run's ``state.json``. Nothing happens when this run already has a state, or when a
        stage's model file is missing or lies outside ``source`` (the run then trains its own).
        """
        if self.state_path.exists() or not source.state_path.is_file():
            return []
        state = source.state
        stages = {name: entry for name, entry in state.data["stages"].items() if name not in exclude}
        copies = []
        for name, entry in stages.items():
            relative = _inside(source.root, source.root / entry.get("model", ""))
            if relative is None:
                log.warning("%s: stage %s has no model file in the run; not adopted", source.root, name)
                return []
            copies.append(relative)
            for extra in (source.history_path(name), source.stage_dir(name) / LAST_NAME):
                if extra.is_file():
                    copies.append(extra.relative_to(source.root))
        for relative in copies:
            (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.root / relative, self.root / relative)
        order = [name for name in state.stages if name in stages]
        atomic_write_json(self.state_path, {**state.data, "order": order, "stages": stages})
        return order


def _inside(root: Path, path: Path) -> Path | None:
    """``path`` relative to ``root`` when it is an existing file inside it, else ``None``."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return relative if path.is_file() else None


def _describe(identity: dict[str, Any]) -> str:
    fold = identity.get("fold") or {}
    return f"fold {fold.get('index')} of {identity.get('store_root')}"


def locate_model(path: str | os.PathLike) -> tuple[RunFolder, Path]:
    """The run folder and model file of ``path``: a run folder, or a ``.keras`` file inside one.

    Raises:
        InputError: the path does not exist, is not a ``.keras`` file, the run has no model yet,
            or no ``config.json`` is beside the model (its preprocessing would be unknown).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model path does not exist (give a run folder or a .keras file)")
    if path.is_dir():
        run, model_path = RunFolder(path), path / MODEL_NAME
        if not model_path.is_file():
            raise InputError(path, f"run folder has no {MODEL_NAME} (has the training finished?)")
    else:
        if not path.name.endswith(MODEL_SUFFIX):
            raise InputError(path, f"not a Keras model file (expected a run folder or a {MODEL_SUFFIX} file)")
        run, model_path = RunFolder(path.parent), path
    if not run.config_path.is_file():
        raise InputError(model_path, f"no {CONFIG_NAME} beside the model; the preprocessing of the run "
                                     "is unknown (keep the model in its run folder)")
    return run, model_path


def read_history(path: Path) -> dict[str, list[float]]:
    """Columns of a stage's ``history.csv`` (Keras's CSVLogger): ``{column: values}``, empty when the
    file is absent or empty."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    return {name: [float(row[name]) for row in rows if row.get(name) not in ("", None)] for name in columns}
