"""Patient-level K-fold cross-validation with a validation subset per fold (paper Sec. IV-A).

All scans of one patient land in the same fold. Folds are deterministic in the seed and
saved to JSON so every model of an experiment sees the same split.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pancreas_seg.config import DataConfig
from pancreas_seg.data.store import CaseStore
from pancreas_seg.io.atomic import atomic_write_json
from pancreas_seg.errors import InputError


@dataclass(frozen=True)
class Fold:
    """Case ids of one cross-validation fold."""

    index: int
    train: tuple[str, ...]  # training subset: network parameters
    validation: tuple[str, ...]  # validation subset: model selection (Sec. IV-A)
    test: tuple[str, ...]  # held-out patients of this fold

    @property
    def train_and_validation(self) -> tuple[str, ...]:
        return tuple(sorted(self.train + self.validation))


def make_folds(case_patients: dict[str, str], folds: int = 4, validation_fraction: float = 0.15,
               seed: int = 0) -> list[Fold]:
    """Split cases into ``folds`` patient-disjoint test sets.

    Args:
        case_patients: ``{case_id: patient_id}``; a patient's cases always share a fold.
        folds: K of K-fold cross-validation (paper: 4).
        validation_fraction: share of each fold's training patients kept for validation
            (at least one patient when there are two or more training patients).
        seed: shuffling seed.
    """
    patients = sorted(set(case_patients.values()))
    if len(patients) < folds:
        raise ValueError(f"{len(patients)} patients cannot make {folds} folds")
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[i]: rank % folds for rank, i in enumerate(order)}
    result = []
    for k in range(folds):
        test_patients = [p for p in patients if fold_of[p] == k]
        rest = [patients[i] for i in order if fold_of[patients[i]] != k]
        n_val = int(round(validation_fraction * len(rest)))
        n_val = min(max(n_val, 1 if len(rest) >= 2 else 0), len(rest) - 1)
        val_patients, train_patients = set(rest[:n_val]), set(rest[n_val:])
        pick = lambda chosen: tuple(sorted(c for c, p in case_patients.items() if p in chosen))  # noqa: E731
        result.append(Fold(k, pick(train_patients), pick(val_patients), pick(set(test_patients))))
    return result


def case_patients_from_manifest(manifest: dict[str, dict]) -> dict[str, str]:
    """``{case_id: patient_id}`` from a store manifest (PatientID when known, else the case id)."""
    return {cid: entry.get("source", {}).get("PatientID") or cid for cid, entry in manifest.items()}


def store_folds(store: CaseStore, config: DataConfig) -> list[Fold]:
    """The patient-level folds of a store's cases for ``config`` (Sec. IV-A: 4-fold CV).

    Raises:
        InputError: the store has fewer patients than folds (e.g. anonymised with one PatientID).
    """
    try:
        return make_folds(case_patients_from_manifest(store.manifest), config.folds, config.validation_fraction,
                          config.seed)
    except ValueError as err:
        raise InputError(store.root, f"{err} (patients are told apart by PatientID)") from None


def select_fold(folds: list[Fold], index: int) -> Fold:
    """``folds[index]``; an index outside the folds raises ``ValueError`` naming the valid range."""
    if not 0 <= index < len(folds):
        raise ValueError(f"fold {index} does not exist; folds are 0..{len(folds) - 1}")
    return folds[index]


def save_folds(folds: list[Fold], path: str | os.PathLike) -> Path:
    """Write folds to JSON atomically."""
    return atomic_write_json(Path(path), [asdict(f) for f in folds])


def load_folds(path: str | os.PathLike) -> list[Fold]:
    """Read folds written by :func:`save_folds`."""
    try:
        raw = json.loads(Path(path).read_text())
        return [Fold(int(f["index"]), tuple(f["train"]), tuple(f["validation"]), tuple(f["test"])) for f in raw]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"not a folds file ({err})") from None
