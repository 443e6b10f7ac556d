"""Analyses of cross-validated results behind Figs. 5–9 and Table III's shape-change columns.

Everything here reads the cache of :mod:`pancreas_seg.experiment.crossval` (per-case metrics,
overlap at the scored thresholds, inter-slice AVDs; probability maps only for thresholds off that
grid); nothing trains or predicts.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from pancreas_seg import metrics
from pancreas_seg.data.store import CaseStore
from pancreas_seg.experiment.crossval import (RNN_STAGES, SCORED_THRESHOLDS, SURFACE_SUFFIX, CrossValResult,
                                              stage_selection)
from pancreas_seg.run_folder import FINE_TUNED_FROM, RunFolder, read_history

FIG5_THRESHOLDS = SCORED_THRESHOLDS  # Fig. 5: output thresholds 0.05..0.95, scored with every fold
VOLUME_BAND = 0.15  # Fig. 6: ±15 % over-/under-segmentation band
VALIDATION_DSC_COLUMNS = ("val_fused_dice", "val_dice")  # history.csv column of the validation DSC of Ŷ
#                                                           (several outputs: prefixed by the fused one's name)
LATE_FRACTION = 0.25  # learning curves: "flattened" = the best validation DSC gains little in this last share


def threshold_curves(result: CrossValResult, store: CaseStore,
                     thresholds: Sequence[float] = FIG5_THRESHOLDS) -> np.ndarray:
    """DSC of every test case at every output threshold (Fig. 5): from the scores kept with each
    fold where the thresholds are scored ones, else from the cached maps.

    Returns float64 ``[len(thresholds), cases]`` in [0, 1], cases in ``result.case_ids`` order.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or thresholds.min() <= 0.0 or thresholds.max() >= 1.0:
        raise ValueError(f"thresholds must lie in (0, 1), got {thresholds.tolist()}")
    scored = _scored_columns(thresholds)
    if scored is not None:
        columns = [np.asarray(fold.by_threshold[cid]["DSC"])[scored] for fold in result.folds for cid in fold.case_ids]
    else:
        columns = [metrics.overlap_by_threshold(probability, store.read_case(cid).mask, thresholds)[0]
                   for cid, probability in result.probabilities()]
    return np.array(columns, dtype=np.float64).T.reshape(len(thresholds), -1)


def _scored_columns(thresholds: Sequence[float]) -> list[int] | None:
    """Positions of ``thresholds`` in :data:`SCORED_THRESHOLDS`, or None if one is not there."""
    grid = np.asarray(SCORED_THRESHOLDS)
    columns = []
    for t in thresholds:
        hits = np.flatnonzero(np.isclose(grid, t, rtol=0.0, atol=1e-9))
        if hits.size == 0:
            return None
        columns.append(int(hits[0]))
    return columns


def chosen_thresholds(validation_curves: np.ndarray, thresholds: Sequence[float] = FIG5_THRESHOLDS) -> np.ndarray:
    """Each fold's output threshold with the best mean validation DSC, float64 ``[folds]``
    (``validation_curves``: ``[folds, T]`` from
    :func:`~pancreas_seg.experiment.crossval.validation_threshold_curves`); ties go to the lowest."""
    curves = np.asarray(validation_curves, dtype=np.float64)
    return np.asarray(thresholds, dtype=np.float64)[np.argmax(np.nan_to_num(curves, nan=-1.0), axis=1)]


def overlap_at_fold_thresholds(result: CrossValResult, store: CaseStore,
                               fold_thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """``{"DSC": [cases], "JI": [cases]}`` of the test cases, each fold's cases at its own threshold
    (``fold_thresholds[i]`` for ``result.folds[i]``), cases in ``result.case_ids`` order."""
    if len(fold_thresholds) != len(result.folds):
        raise ValueError(f"{len(fold_thresholds)} thresholds for {len(result.folds)} folds")
    by_fold = {fold.index: float(t) for fold, t in zip(result.folds, fold_thresholds)}
    scored = _scored_columns([by_fold[fold.index] for fold in result.folds])
    if scored is not None:
        pairs = [(fold.by_threshold[cid], column) for fold, column in zip(result.folds, scored) for cid in fold.case_ids]
        return {key: np.array([scores[key][column] for scores, column in pairs], dtype=np.float64)
                for key in ("DSC", "JI")}
    dsc, ji = [], []
    for cid, probability in result.probabilities():
        threshold = by_fold[result.fold_of(cid).index]
        case_dsc, case_ji = metrics.overlap_by_threshold(probability, store.read_case(cid).mask, [threshold])
        dsc.append(case_dsc[0])
        ji.append(case_ji[0])
    return {"DSC": np.array(dsc, dtype=np.float64), "JI": np.array(ji, dtype=np.float64)}


@dataclass(frozen=True)
class InterSliceShare:
    """Neighbouring-slice shape changes (Sec. IV-D) pooled over the test cases."""

    flagged: int  # pairs with AVD > threshold_mm
    compared: int  # pairs with organ in both slices
    avd: metrics.Summary  # pooled inter-slice AVD, mm

    @property
    def share(self) -> float:
        return self.flagged / self.compared if self.compared else math.nan


INTERSLICE_SOURCES = ("pred", "gt", f"pred{SURFACE_SUFFIX}", f"gt{SURFACE_SUFFIX}")


def interslice_share(result: CrossValResult, source: str = "pred",
                     threshold_mm: float = metrics.ABNORMAL_SHAPE_CHANGE_MM) -> InterSliceShare:
    """Share of neighbouring-slice pairs with an abnormal shape change, AVD > ``threshold_mm``
    (Sec. IV-D: 0.5 mm for CT), in the predictions (``source="pred"``) or the ground truth (``"gt"``)
    by the point-set AVD, or by the surface AVD (``"pred_surface"``, ``"gt_surface"``)."""
    if source not in INTERSLICE_SOURCES:
        raise ValueError(f"source must be one of {INTERSLICE_SOURCES}, got {source!r}")
    values = np.array([v for fold in result.folds for cid in fold.case_ids for v in fold.interslice[cid][source]],
                      dtype=np.float64)
    kept = values[~np.isnan(values)]
    return InterSliceShare(int((kept > threshold_mm).sum()), int(kept.size), metrics.summarize(kept))


@dataclass(frozen=True)
class VolumeFit:
    """Automatic vs manual volume (Fig. 6): least-squares line auto = slope·manual + intercept."""

    slope: float
    intercept: float  # mL
    r2: float  # coefficient of determination of the fit, Pearson r²
    error_variance: float  # variance (ddof=1) of the relative error (auto − manual)/manual, in %²
    within_band: float  # share of cases whose auto volume is within ±VOLUME_BAND of manual
    n: int


def volume_fit(manual_ml: Sequence[float], auto_ml: Sequence[float]) -> VolumeFit:
    """Fit auto ~ manual volumes (mL, one per case); nan statistics with fewer than 2 cases."""
    manual, auto = np.asarray(manual_ml, np.float64), np.asarray(auto_ml, np.float64)
    if manual.shape != auto.shape:
        raise ValueError(f"{manual.shape} manual and {auto.shape} automatic volumes")
    keep = np.isfinite(manual) & np.isfinite(auto) & (manual > 0)
    manual, auto = manual[keep], auto[keep]
    n = int(manual.size)
    if n == 0:
        return VolumeFit(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    error = (auto - manual) / manual * 100.0
    within = float(np.mean(np.abs(auto - manual) <= VOLUME_BAND * manual))
    if n < 2 or np.ptp(manual) == 0:
        return VolumeFit(math.nan, math.nan, math.nan, math.nan, within, n)
    fit = stats.linregress(manual, auto)
    r2 = float(fit.rvalue) ** 2 if np.ptp(auto) > 0 else math.nan  # constant auto volumes: nothing to explain
    return VolumeFit(float(fit.slope), float(fit.intercept), r2, float(error.var(ddof=1)), within, n)


def rank_cases(result: CrossValResult, key: str = "DSC") -> list[str]:
    """Test case ids sorted by ``key`` ascending (nan first)."""
    values = result.values(key)
    order = np.argsort(np.nan_to_num(values, nan=-np.inf), kind="stable")
    return [result.case_ids[i] for i in order]


def pancreas_slice(mask: np.ndarray) -> int:
    """Axial slice ``[Z, Y, X]`` with the largest pancreas area (Fig. 8); the middle slice if none."""
    area = mask.reshape(mask.shape[0], -1).astype(bool).sum(axis=1)
    return int(np.argmax(area)) if area.any() else mask.shape[0] // 2


@dataclass(frozen=True)
class LearningCurve:
    """Validation DSC of the full-model stage against training slices seen, one row per fold."""

    slices: np.ndarray  # [E] training samples seen at the end of each epoch (slice stacks; runs for the BiRNN)
    dsc: np.ndarray  # [folds, E] validation DSC in [0, 1]; nan past a fold's last epoch (early stop)
    kept: np.ndarray  # [folds] 1-based epoch whose model the stage kept

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.dsc, axis=0)

    @property
    def last(self) -> np.ndarray:
        """[folds] each fold's validation DSC at its own last epoch."""
        return self.dsc[np.arange(len(self.dsc)), np.sum(~np.isnan(self.dsc), axis=1) - 1]

    def late_gain(self, fraction: float = LATE_FRACTION) -> float:
        """How much the best mean validation DSC rose in the last ``fraction`` of the epochs (in [0, 1]
        DSC units); under 0.02 (2 points) counts as flattened. Under a decaying learning rate a curve
        flattens also because the steps shrink, so a small gain there shows less convergence; nan
        with fewer than two epochs."""
        mean = self.mean
        if len(mean) < 2:
            return math.nan  # one epoch: no curve to have flattened
        cut = min(len(mean) - 1, max(1, int(math.floor(len(mean) * (1.0 - fraction)))))
        return float(np.nanmax(mean) - np.nanmax(mean[:cut]))


def _validation_dsc(history: dict[str, list[float]], where: Path) -> list[float]:
    for column in VALIDATION_DSC_COLUMNS:
        if history.get(column):
            return history[column]
    raise ValueError(f"{where}: no validation DSC column ({' or '.join(VALIDATION_DSC_COLUMNS)})")


def learning_curve(result: CrossValResult, stage: str = "full") -> LearningCurve:
    """Each fold's validation DSC per epoch of ``stage`` (``history.csv`` of its run folder) and the
    epoch it kept (``state.json``; the best epoch for runs that predate that record)."""
    curves, kept = [], []
    for fold in result.folds:
        path = RunFolder(fold.run_dir).history_path(stage)
        curve = _validation_dsc(read_history(path), path)
        curves.append(curve)
        entry = stage_selection(fold.run_dir).get(stage, {})
        kept.append(int(entry.get("selected_epoch", int(np.nanargmax(curve)) + 1)))
    epochs = max((len(c) for c in curves), default=0)
    dsc = np.full((len(curves), epochs), np.nan)
    for row, curve in zip(dsc, curves):
        row[:len(curve)] = curve
    train = result.config.train
    per_step = train.sequence_batch_size if stage in RNN_STAGES else train.batch_size
    return LearningCurve(np.arange(1, epochs + 1) * train.steps_per_epoch * per_step, dsc, np.array(kept, dtype=int))


def selection_note(result: CrossValResult) -> str:
    """Which epoch each fold kept, per training stage, for a table row's note, e.g.
    ``"kept epoch/epochs run: full 9/15, 12/18 (2880–3840 slices)"``; the BiRNN stages count slice runs.
    A fine-tuning stage whose model was not kept (:meth:`RunState.kept`) says which one was."""
    per_stage: dict[str, list[dict]] = {}
    for fold in result.folds:
        state = RunFolder(fold.run_dir).state
        for stage, entry in stage_selection(fold.run_dir).items():
            per_stage.setdefault(stage, []).append({**entry, "kept": state.kept(stage)})
    parts = []
    for stage, entries in per_stage.items():
        kept = ", ".join(f"{e.get('selected_epoch', '?')}/{e.get('epochs', '?')}"
                         + ("" if e["kept"] else f" (not back at Acc_t: {FINE_TUNED_FROM[stage]} kept)")
                         for e in entries)
        seen = [e["selected_slices"] for e in entries if "selected_slices" in e]
        unit = "runs" if stage in RNN_STAGES else "slices"
        span = f" ({min(seen)}–{max(seen)} {unit})" if seen else ""
        parts.append(f"{stage} {kept}{span}")
    return "kept epoch/epochs run: " + "; ".join(parts) if parts else ""
