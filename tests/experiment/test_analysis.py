"""Analyses of cached cross-validation results (Figs. 5-9, Table III's shape-change columns)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pancreas_seg.experiment.analysis import (LearningCurve, chosen_thresholds, interslice_share, learning_curve,
                                              overlap_at_fold_thresholds, selection_note, threshold_curves,
                                              volume_fit)
from pancreas_seg.experiment.crossval import run_cross_validation, validation_threshold_curves
from pancreas_seg.data.splits import store_folds
from pancreas_seg.run_folder import RunFolder
from tests.experiment.conftest import testing_config as _config


def test_threshold_curves_from_cached_maps(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, progress=False)
    thresholds = [0.05, 0.5, 0.75, 0.8, 0.95]
    dsc = threshold_curves(result, tiny_store, thresholds)
    assert dsc.shape == (5, 4)
    # the stub's map is 0.8 (float16: 0.7998) inside the blob: a perfect mask below 0.8, empty from 0.8 on
    np.testing.assert_allclose(dsc, [[1] * 4, [1] * 4, [1] * 4, [0] * 4, [0] * 4])
    with pytest.raises(ValueError):
        threshold_curves(result, tiny_store, [0.0, 0.5])


def test_interslice_share_matches_ground_truth_for_a_perfect_prediction(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, progress=False)
    pred, truth = interslice_share(result, "pred"), interslice_share(result, "gt")
    assert pred == truth and pred.compared > 0
    # blob_case: ellipsoid in 12 slices of 2 mm -> in-plane outlines change by more than 0.5 mm
    assert 0.0 < pred.share <= 1.0 and pred.flagged <= pred.compared


def test_volume_fit_golden():
    manual = [10.0, 20.0, 30.0]
    auto = [21.0, 41.0, 61.0]  # 2 * manual + 1
    fit = volume_fit(manual, auto)
    assert fit.slope == pytest.approx(2.0) and fit.intercept == pytest.approx(1.0) and fit.r2 == pytest.approx(1.0)
    # relative errors 110, 105, 103.33 %: mean 106.11, squared deviations 15.12 + 1.23 + 7.72 = 24.07, / 2
    assert fit.error_variance == pytest.approx(12.037, abs=1e-3)
    assert fit.within_band == 0.0 and fit.n == 3
    single = volume_fit([10.0], [10.0])
    assert math.isnan(single.r2) and single.within_band == 1.0


def test_volume_fit_hand_worked_imperfect_line():
    manual, auto = [10.0, 20.0, 30.0], [10.0, 30.0, 20.0]
    fit = volume_fit(manual, auto)
    # means 20, 20; Sxy = (-10)(-10) + 0 + 10·0 = 100, Sxx = Syy = 200: slope 0.5, intercept 20 - 0.5·20 = 10,
    # r = 100 / 200 = 0.5 -> R² 0.25 (residuals -5, 10, -5: 1 - 150/200)
    assert (fit.slope, fit.intercept, fit.r2) == pytest.approx((0.5, 10.0, 0.25))
    # relative errors 0, 50, -33.33 %: mean 5.556, squared deviations 30.86 + 1975.31 + 1512.35 = 3518.52, / 2
    assert fit.error_variance == pytest.approx(1759.259, abs=1e-3)
    assert fit.within_band == pytest.approx(1 / 3) and fit.n == 3
    flat = volume_fit(manual, [15.0, 15.0, 15.0])  # no variance in the automatic volumes: R² undefined
    assert (flat.slope, flat.intercept) == pytest.approx((0.0, 15.0)) and math.isnan(flat.r2)


def test_learning_curve_reads_each_folds_history(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0, 1], progress=False)
    # fold 1 stopped early after one epoch of another run: its missing epoch is nan
    RunFolder(result.folds[1].run_dir).history_path("full").write_text("epoch,val_dice\n0,0.75\n")
    curve = learning_curve(result)
    train = result.config.train
    np.testing.assert_array_equal(curve.slices, [train.steps_per_epoch * train.batch_size * e for e in (1, 2)])
    np.testing.assert_allclose(curve.dsc, [[0.25, 0.5], [0.75, np.nan]])
    np.testing.assert_allclose(curve.mean, [0.5, 0.5])
    np.testing.assert_allclose(curve.last, [0.5, 0.75])  # each fold's own last epoch
    np.testing.assert_array_equal(curve.kept, [2, 2])  # from state.json, whatever the history says


def test_learning_curve_late_gain_is_the_rise_of_the_best_in_the_last_quarter():
    slices = np.arange(1, 9) * 100
    rising = LearningCurve(slices, np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]), np.array([8]))
    assert rising.late_gain() == pytest.approx(0.8 - 0.6)  # best of epochs 7-8 over best of epochs 1-6
    flat = LearningCurve(slices, np.array([[0.1, 0.5, 0.7, 0.75, 0.74, 0.76, 0.75, 0.755]]), np.array([6]))
    assert flat.late_gain() == pytest.approx(0.0)  # the last quarter never beats epoch 6


def test_chosen_thresholds_take_each_folds_best_validation_dsc_lowest_on_ties():
    curves = np.array([[0.2, 0.6, 0.4], [0.7, 0.7, np.nan], [np.nan, np.nan, 0.1]])
    np.testing.assert_array_equal(chosen_thresholds(curves, [0.25, 0.5, 0.75]), [0.5, 0.25, 0.75])


def test_validation_thresholds_come_from_validation_cases_and_are_cached(tiny_store, tmp_path, stubs):
    _, predictor = stubs
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0, 1], progress=False)
    scans = predictor.scans
    curves = validation_threshold_curves(result, tiny_store, [0.5, 0.9], progress=False)
    # the stub's map is 0.8 inside the blob: a perfect validation mask at 0.5, an empty one at 0.9
    np.testing.assert_allclose(curves, [[1.0, 0.0], [1.0, 0.0]])
    validation_cases = sum(len(fold.validation) for fold in store_folds(tiny_store, result.config.data)[:2])
    assert predictor.scans - scans == validation_cases > 0
    again = validation_threshold_curves(result, tiny_store, [0.5, 0.9], progress=False)
    np.testing.assert_array_equal(again, curves)
    assert predictor.scans - scans == validation_cases  # read back, not predicted again
    validation_threshold_curves(result, tiny_store, [0.5, 0.7], progress=False)
    assert predictor.scans - scans == 2 * validation_cases  # other thresholds: a new curve


def test_overlap_at_fold_thresholds_scores_each_fold_at_its_own_threshold(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0, 1], progress=False)
    overlap = overlap_at_fold_thresholds(result, tiny_store, [0.5, 0.9])
    in_fold_0 = np.array([result.fold_of(cid).index == 0 for cid in result.case_ids])
    # fold 0 at 0.5: the blob exactly (DSC = JI = 1); fold 1 at 0.9: nothing predicted (0)
    np.testing.assert_allclose(overlap["DSC"], np.where(in_fold_0, 1.0, 0.0))
    np.testing.assert_allclose(overlap["JI"], np.where(in_fold_0, 1.0, 0.0))
    with pytest.raises(ValueError):
        overlap_at_fold_thresholds(result, tiny_store, [0.5])


def test_selection_note_names_each_folds_kept_epoch(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0, 1], progress=False)
    slices = 2 * result.config.train.steps_per_epoch * result.config.train.batch_size
    assert selection_note(result) == f"kept epoch/epochs run: full 2/2, 2/2 ({slices}–{slices} slices)"


def test_selection_note_says_when_a_fine_tuning_stage_was_not_kept(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0, 1], progress=False)
    for fold, tuned in zip(result.folds, (0.75, 0.65)):
        state = RunFolder(fold.run_dir).state
        state.finish("rnn", best=0.7, selected_epoch=3, epochs=5)
        state.finish("end_to_end", best=tuned, selected_epoch=2, epochs=2)
    note = selection_note(result)
    assert "end_to_end 2/2, 2/2 (not back at Acc_t: rnn kept)" in note
    assert note.count("not back at Acc_t") == 1
