"""Cross-validation with its cache: what is trained, predicted and scored again, and when."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.experiment import archive as archive_module
from pancreas_seg.experiment import crossval
from pancreas_seg.experiment.crossval import run_cross_validation
from pancreas_seg.experiment.rows import experiment_config
from pancreas_seg.metrics import METRIC_KEYS
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.vocabulary import RNN_MODEL
from tests.conftest import blob_case
from tests.experiment.conftest import BLOB_HU, STUB_HISTORY, STUB_PROBABILITY
from tests.experiment.conftest import testing_config as _config


def test_second_run_trains_and_predicts_nothing(tiny_store, tmp_path, stubs):
    trainer, predictor = stubs
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out", progress=False)
    assert first.trained == [0, 1, 2, 3] and first.predicted == [0, 1, 2, 3]
    assert sorted(first.case_ids) == tiny_store.case_ids  # every case is tested exactly once
    assert len(trainer.calls) == 4 and predictor.scans == 4
    stamps = {p: p.stat().st_mtime_ns for p in first.root.rglob("*") if p.is_file()}

    second = run_cross_validation(_config(), tiny_store, tmp_path / "out", progress=False)
    assert second.trained == [] and second.predicted == []
    assert len(trainer.calls) == 4 and predictor.loads == 4 and predictor.scans == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert second.case_metrics() == first.case_metrics()
    assert first.summary("DSC").mean == pytest.approx(1.0)
    assert first.root.name.startswith("pnet_msa-") and (first.root / "fold_0" / "test_predictions.npz").is_file()
    for case_id in tiny_store.case_ids:  # the cached maps read back as predicted (float16)
        scan = tiny_store.read_case(case_id).image
        expected = np.where(scan > BLOB_HU, STUB_PROBABILITY, 0.0).astype(np.float16)
        assert np.array_equal(first.probability(case_id), expected)


def test_fold_metrics_are_cached_in_evaluate_format(tiny_store, tmp_path, stubs):
    _, predictor = stubs
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0], progress=False)
    fold = result.folds[0]
    path = fold.run_dir / crossval.METRICS_FILE
    cached = json.loads(path.read_text())
    assert cached["format"] == crossval.CACHE_FORMAT and cached["threshold"] == 0.5
    assert [row["case_id"] for row in cached["rows"]] == list(fold.case_ids) == cached["cases"]
    # summary.json's fields, as pancreas_seg.evaluate writes them
    assert cached["n_cases"] == len(fold.case_ids) and cached["std"] == "sample (ddof=1)"
    assert sorted(cached["metrics"]) == sorted(METRIC_KEYS)
    assert cached["metrics"]["DSC"]["paper"] == "100.0±0.0 [100.0,100.0]"
    # a cache of another format is scored again from the cached maps, not predicted again
    path.write_text(json.dumps({**cached, "format": crossval.CACHE_FORMAT - 1, "rows": []}))
    again = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0], progress=False)
    assert again.predicted == [] and predictor.scans == len(fold.case_ids)
    assert again.case_metrics() == result.case_metrics()
    assert json.loads(path.read_text()) == cached


def test_selected_folds_and_retrained_model_repredicts(tiny_store, tmp_path, stubs):
    trainer, predictor = stubs
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[1], progress=False)
    assert [f.index for f in result.folds] == [1] and result.trained == [1]
    RunFolder(result.folds[0].run_dir).model_path.write_bytes(b"a retrained model")  # new size and mtime
    again = run_cross_validation(_config(), tiny_store, tmp_path, folds=[1], progress=False)
    assert again.trained == [] and again.predicted == [1]
    with pytest.raises(ValueError, match="fold 7"):
        run_cross_validation(_config(), tiny_store, tmp_path, folds=[7], progress=False)


def test_rows_of_different_tables_share_one_model(tiny_store, tmp_path, stubs):
    trainer, _ = stubs
    table1_jac = experiment_config("testing", "ct", "pnet_msa", "jac")
    table2_pnet_msa = experiment_config("testing", "CT", model="pnet_msa")
    run_cross_validation(table1_jac, tiny_store, tmp_path, folds=[0], progress=False)
    assert run_cross_validation(table2_pnet_msa, tiny_store, tmp_path, folds=[0], progress=False).trained == []
    assert run_cross_validation(_config(loss="ce"), tiny_store, tmp_path, folds=[0], progress=False).trained == [0]
    assert len(trainer.calls) == 2


def test_birnn_run_starts_from_the_pnet_msa_fold_model(tiny_store, tmp_path, stubs):
    trainer, _ = stubs
    result = run_cross_validation(_config(RNN_MODEL), tiny_store, tmp_path, folds=[0], progress=False)
    assert [name for name, _ in trainer.calls] == ["pnet_msa", RNN_MODEL]  # the CNN first, then the BiRNN on it
    base_dir, rnn_dir = trainer.calls[0][1], trainer.calls[1][1]
    state = RunFolder(rnn_dir).state
    assert state.stages == ["full", "rnn"] and state.get("full")["model"] == "full/best.keras"
    assert (rnn_dir / "full" / "best.keras").read_bytes() == (base_dir / "full" / "best.keras").read_bytes()
    assert result.root.name.startswith("cnn_rnn-")


def test_models_of_another_store_are_refused(tiny_store, tmp_path, stubs):
    run_cross_validation(_config(), tiny_store, tmp_path / "out", folds=[0], progress=False)
    other = CaseStore.create(tmp_path / "other", "CT")
    for index in range(4):
        other.write_case(blob_case(f"OTHER_{index}", seed=10 + index))
    with pytest.raises(InputError, match="another --out"):
        run_cross_validation(_config(), other, tmp_path / "out", folds=[0], progress=False)


def test_archived_folds_are_read_on_another_machine_without_training(tiny_store, tmp_path, stubs):
    # machine A trains and scores; only the archive travels (committed); machine B has an empty --out
    trainer, predictor = stubs
    archive = tmp_path / "results"
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out_a", progress=False, archive=archive)
    record = archive / first.root.name / "fold_0"
    assert {"state.json", "test_metrics.json"} <= {p.name for p in record.iterdir()}
    assert (record / "full" / "history.csv").read_text() == STUB_HISTORY
    assert not list(archive.rglob("*.keras")) and not list(archive.rglob("*.npz"))  # small enough to commit

    second = run_cross_validation(_config(), tiny_store, tmp_path / "out_b", progress=False, archive=archive)
    assert second.trained == [] and second.predicted == [] and second.archived == [0, 1, 2, 3]
    assert len(trainer.calls) == 4 and predictor.scans == 4
    assert second.case_metrics() == first.case_metrics()
    assert second.folds[0].interslice == first.folds[0].interslice
    assert second.folds[0].by_threshold == first.folds[0].by_threshold
    with pytest.raises(InputError, match="archived record without probability maps"):
        second.probability(second.case_ids[0])

    maps = run_cross_validation(_config(), tiny_store, tmp_path / "out_b", folds=[0], progress=False,
                                archive=archive, maps=True)  # figures of maps train the fold here
    assert maps.trained == [0] and maps.archived == [] and maps.folds[0].has_maps


def test_archived_record_of_another_config_or_format_is_not_used(tiny_store, tmp_path, stubs):
    trainer, _ = stubs
    archive = tmp_path / "results"
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out_a", folds=[0], progress=False,
                                 archive=archive)
    path = archive / first.root.name / "fold_0" / crossval.METRICS_FILE
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "format": crossval.CACHE_FORMAT - 1}))
    again = run_cross_validation(_config(), tiny_store, tmp_path / "out_b", folds=[0], progress=False,
                                 archive=archive)
    assert again.trained == [0] and again.archived == [] and len(trainer.calls) == 2
    assert json.loads(path.read_text())["format"] == crossval.CACHE_FORMAT  # the record is renewed
    other = run_cross_validation(_config(loss="ce"), tiny_store, tmp_path / "out_c", folds=[0], progress=False,
                                 archive=archive)
    assert other.trained == [0] and len(trainer.calls) == 3


def test_scores_at_the_scored_thresholds_equal_thresholding_the_map(tiny_store, tmp_path, stubs):
    result = run_cross_validation(_config(), tiny_store, tmp_path, folds=[0], progress=False)
    fold = result.folds[0]
    for cid in fold.case_ids:
        probability, mask = result.probability(cid), tiny_store.read_case(cid).mask.astype(bool)
        for column, threshold in enumerate(crossval.SCORED_THRESHOLDS):
            pred = probability > threshold
            expected = 2 * np.sum(pred & mask) / (pred.sum() + mask.sum())
            assert fold.by_threshold[cid]["DSC"][column] == pytest.approx(expected)


def test_validation_curves_travel_with_the_archived_record(tiny_store, tmp_path, stubs):
    archive, thresholds = tmp_path / "results", [0.25, 0.5, 0.9]
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out_a", progress=False, archive=archive)
    curves = crossval.validation_threshold_curves(first, tiny_store, thresholds, progress=False)
    second = run_cross_validation(_config(), tiny_store, tmp_path / "out_b", progress=False, archive=archive)
    assert np.array_equal(crossval.validation_threshold_curves(second, tiny_store, thresholds, progress=False), curves)
    with pytest.raises(InputError, match="has no validation curve"):
        crossval.validation_threshold_curves(second, tiny_store, [0.3], progress=False)


def test_an_unchanged_record_is_not_rewritten(tiny_store, tmp_path, stubs):
    archive = tmp_path / "results"
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out", folds=[0], progress=False, archive=archive)
    record = archive / first.root.name / "fold_0"
    stamps = {p: p.stat().st_mtime_ns for p in record.rglob("*")}
    run_cross_validation(_config(), tiny_store, tmp_path / "out", folds=[0], progress=False, archive=archive)
    assert {p: p.stat().st_mtime_ns for p in record.rglob("*")} == stamps
    (first.folds[0].run_dir / "validation.json").write_text("{}")  # the run changed: its record follows
    run_cross_validation(_config(), tiny_store, tmp_path / "out", folds=[0], progress=False, archive=archive)
    assert (record / "validation.json").read_text() == "{}"


def test_a_record_keeps_its_validation_curve_when_the_same_run_is_saved_again_without_one(tiny_store, tmp_path,
                                                                                          stubs):
    archive, thresholds = tmp_path / "results", [0.25, 0.5]
    first = run_cross_validation(_config(), tiny_store, tmp_path / "out", folds=[0], progress=False, archive=archive)
    crossval.validation_threshold_curves(first, tiny_store, thresholds, progress=False)
    record = archive / first.root.name / "fold_0"
    curve = (record / archive_module.VALIDATION_CURVE_FILE).read_text()
    run = first.folds[0].run_dir
    (run / archive_module.VALIDATION_CURVE_FILE).unlink()  # another machine's copy of the run, without its curve
    (run / "validation.json").write_text("{}")  # and some other change to the record
    archive_module.save_fold(run, record)
    assert (record / "validation.json").read_text() == "{}"
    assert (record / archive_module.VALIDATION_CURVE_FILE).read_text() == curve
    metrics = json.loads((run / archive_module.METRICS_FILE).read_text())
    (run / archive_module.METRICS_FILE).write_text(json.dumps({**metrics, "n_cases": -1}))  # a different model
    archive_module.save_fold(run, record)
    assert not (record / archive_module.VALIDATION_CURVE_FILE).exists()


def test_coarse_to_fine_row_takes_the_rows_fold_model_and_adds_a_localiser(tiny_store, tmp_path):
    config = _config()
    result = run_cross_validation(config, tiny_store, tmp_path, folds=[0], progress=False,
                                  variant=crossval.COARSE_TO_FINE)
    run = RunFolder(result.folds[0].run_dir)
    plain = RunFolder(crossval.model_dir(config, tmp_path) / "fold_0")
    assert result.root.name == plain.root.parent.name + "-c2f" and result.trained == [0]
    assert RunFolder(run.localiser_dir).margin_path.is_file() and not plain.localiser_dir.exists()
    stage = plain.state.get("full")["model"]
    assert (run.root / stage).read_bytes() == (plain.root / stage).read_bytes()  # taken, not trained again
    again = run_cross_validation(config, tiny_store, tmp_path, folds=[0], progress=False,
                                 variant=crossval.COARSE_TO_FINE)
    assert again.trained == [] and again.predicted == [] and again.case_metrics() == result.case_metrics()
