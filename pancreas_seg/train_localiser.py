"""Train a run's localiser and choose its margin (:mod:`pancreas_seg.localiser`).

The localiser is trained on the run's own fold (its training cases; model selection on its
validation cases, as for any run) into ``<run>/localiser/``, then its margin is chosen on the
same validation cases: the fine network's test cases are never seen. A run trained elsewhere
(e.g. on a GPU) gains a localiser this way without being retrained.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pancreas_seg.config import DataConfig, ExperimentConfig
from pancreas_seg.data.dataflow import prepare_cases
from pancreas_seg.data.splits import Fold, select_fold, store_folds
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write_json
from pancreas_seg.localiser import (CalibrationCase, Margin, calibration_grid, choose_margin, hit_region,
                                    localiser_config, localiser_probability)
from pancreas_seg.networks import ModelRunner, load_model
from pancreas_seg.run_folder import RunFolder, RunIdentity
from pancreas_seg.train import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocaliserResult:
    """Where the localiser went, its validation DSC and its margin."""

    folder: Path
    validation_dice: float
    margin: Margin


def run_fold(run: RunFolder, store: CaseStore, config: ExperimentConfig, fold: int | None) -> Fold:
    """The fold ``run`` was trained on, from its recorded identity (the store must hold the same
    cases); for a run that recorded none, fold ``fold`` of the store.

    Raises:
        InputError: the store is not the one the run was trained on, or the run recorded no fold
            and none is given.
    """
    identity = run.read_identity()
    if identity is None:
        if fold is None:
            raise InputError(run.root, "the run records no cross-validation fold; give --fold")
        return select_fold(store_folds(store, config.data), fold)
    recorded = Fold(int(identity.fold["index"]), *(tuple(identity.fold[k]) for k in ("train", "validation", "test")))
    difference = identity.mismatch(RunIdentity.of(store, recorded))
    if difference is not None:
        raise InputError(store.root, f"{run.root} was trained on {identity.store_root}, not on this store "
                                     f"({difference}); give the run's --data")
    if fold is not None and fold != recorded.index:
        raise InputError(run.root, f"the run was trained on fold {recorded.index}, not fold {fold}")
    return recorded


def calibration_cases(localiser: ModelRunner, store: CaseStore, case_ids: list[str],
                      grid: DataConfig) -> list[CalibrationCase]:
    """The localiser's hit regions on ``case_ids`` prepared with ``grid`` (the fine network's
    preprocessing, :func:`~pancreas_seg.localiser.calibration_grid`), with their true masks and
    grid spacing."""
    cases = []
    for prepared in prepare_cases(store, case_ids, grid, progress=False):
        spacing = store.manifest[prepared.case_id]["spacing_mm"]
        y0, y1, _, _ = prepared.transform.box
        pixel_mm = (y1 - y0) * float(spacing[1]) / prepared.transform.size
        probability = localiser_probability(localiser, prepared.image)
        region = hit_region(probability, localiser.model.config.train.threshold, prepared.image.shape[1])
        cases.append(CalibrationCase(prepared.case_id, region, prepared.mask, float(spacing[0]), pixel_mm))
    return cases


def train_localiser(run_dir: str | os.PathLike, base: ExperimentConfig, store: CaseStore, fold: int | None = None,
                    progress: bool = True) -> LocaliserResult:
    """Train the localiser of the run in ``run_dir`` with ``base``'s network and budget (a preset,
    :func:`~pancreas_seg.localiser.localiser_config`) and write its margin; resumable like any run.

    Raises:
        InputError: no run configuration in ``run_dir``, a store of another modality or other
            cases than the run's, a run without a recorded fold and no ``fold``.
    """
    run = RunFolder(run_dir)
    config, _ = run.read_config()
    if store.modality != config.data.modality:
        raise InputError(store.root, f"store holds {store.modality} cases, the run is for {config.data.modality}")
    chosen = run_fold(run, store, config, fold)
    localiser = localiser_config(config, base)
    result = train(localiser, run.localiser_dir, store, chosen, progress=progress)
    runner = ModelRunner(load_model(result.model_path), "float32")
    grid = calibration_grid(config, localiser)
    margin = choose_margin(calibration_cases(runner, store, list(chosen.validation), grid))
    folder = RunFolder(run.localiser_dir)
    atomic_write_json(folder.margin_path, margin.to_dict())
    log.info("%s: margin %.1f mm through-plane, %.1f mm in-plane; region %.1f %% of the grid on validation; "
             "missed %s", folder.root, margin.through_plane_mm, margin.inplane_mm, 100 * margin.region_share,
             list(margin.missed) or "none")
    return LocaliserResult(folder.root, result.final_dice, margin)
