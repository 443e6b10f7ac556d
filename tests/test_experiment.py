"""Experiments library and scripts: caching, tables with paper and ours side by side, analyses.

Most tests replace the trainer and the predictor by stubs (the experiments layer is under test,
not the networks); one test runs a script end to end with the real trainer and inference.
"""
from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.experiment import crossval
from pancreas_seg.experiment.analysis import interslice_share, threshold_curves, volume_fit
from pancreas_seg.experiment.crossval import run_cross_validation
from pancreas_seg.experiment.rows import CNN_RNN, data_label, experiment_config
from pancreas_seg.experiment.tables import QUOTED, Column, Row, metric_column, paper_rows, write_table
from pancreas_seg.metrics import METRIC_KEYS, Summary, summarize
from pancreas_seg.run_folder import RunFolder
from tests.conftest import blob_case

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = ("table1_losses", "table2_architectures", "table3_birnn", "table4_sota", "fig5_threshold",
           "fig6_volume", "fig7_sorted_cases", "fig8_probability_maps", "fig9_3d")
STUB_PROBABILITY = 0.8  # stub predictor: this probability inside the blob, 0 outside
BLOB_HU = 70  # between the blob's 100 HU and the body's 40 HU (tests/conftest.py blob_case)


class StubTrainer:
    """Leaves what the real trainer leaves behind, through its RunFolder: the finished CNN stage
    (and the BiRNN stage of ``cnn_rnn``) in state.json, then model.keras."""

    def __init__(self):
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, config, workdir, store, fold, progress=True):
        run = RunFolder(workdir)
        self.calls.append((config.model.name, run.root))
        state = run.state
        if not state.done("full"):
            run.stage_dir("full").mkdir(parents=True, exist_ok=True)
            (run.stage_dir("full") / "best.keras").write_bytes(b"cnn")
            state.finish("full", model="full/best.keras", best=0.5, epochs=1)
        if config.model.name == CNN_RNN:
            state.finish("rnn", model="rnn/best.keras", best=0.6, epochs=1)
        run.model_path.write_bytes(config.model.name.encode())


class StubPredictor:
    """``STUB_PROBABILITY`` where the blob's HU is high; BiRNN models add a little in the slices' ring."""

    def __init__(self):
        self.loads = 0
        self.scans = 0

    def __call__(self, model_path, config):
        self.loads += 1

        def predict(scan):
            self.scans += 1
            return np.where(scan.array > BLOB_HU, STUB_PROBABILITY, 0.0).astype(np.float32)

        return predict


def _config(model="pnet_msa", loss="jac"):
    return experiment_config("testing", "ct", model, loss)


@pytest.fixture
def stubs(monkeypatch):
    trainer, predictor = StubTrainer(), StubPredictor()
    monkeypatch.setattr(crossval, "_default_train", trainer)
    monkeypatch.setattr(crossval, "_default_predictor", predictor)
    return trainer, predictor


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
    result = run_cross_validation(_config(CNN_RNN), tiny_store, tmp_path, folds=[0], progress=False)
    assert [name for name, _ in trainer.calls] == ["pnet_msa", CNN_RNN]  # the CNN first, then the BiRNN on it
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


def test_paper_rows_come_from_the_shipped_numbers():
    assert paper_rows("table1_losses", "ct")["JAC"]["DSC"] == [83.7, 5.4, 58.4, 90.4]
    assert paper_rows("table2_architectures", "MRI")["PNet-MSA"]["JI"] == [68.2, 9.64, 32.3, 82.7]
    assert paper_rows("table3_birnn_ct", "ct")["PNet-MSA + BiRNN"]["AVD_mm"] == [0.54, 0.53, 0.12, 3.78]
    assert paper_rows("table3_birnn_ct", "mri") == {}
    with pytest.raises(KeyError):
        paper_rows("table9", "ct")


def test_table_has_paper_and_labelled_ours_columns(tmp_path):
    label = data_label("quick", ["ct"])
    assert label == "ours (built-in CT phantoms, quick preset)"
    assert data_label("paper", ["mri"], "/data/store-mri") == "ours (MRI store store-mri, paper preset)"
    columns = [metric_column("DSC"), metric_column("AVD_mm", "AVD (mm)")]
    # metric columns take their units from evaluate.DISPLAY
    assert columns == [Column("DSC", "DSC (%)"), Column("AVD_mm", "AVD (mm)", scale=1.0, digits=2)]
    rows = [Row("CT", "PNet-MSA", {"DSC": summarize([0.8, 0.9]), "AVD_mm": Summary(0.61, 0.5, 0.15, 3.48, 2, 1)},
                {"DSC": [83.3, 5.6, 59.0, 91.0]}),
            Row("CT", "3D FCN", {}, {"DSC": [76.8, 9.4, 43.7, 89.4]}, QUOTED),
            Row("CT", "Roth et al.", {}, {"DSC": [81.3, 6.3, 50.6, 88.9], "AVD_mm": [0.61, 0.53, 0.15, 3.5]}, QUOTED)]
    md, table = write_table(rows, tmp_path / "figs" / "table_x", columns, label, title="Table X")
    assert (md.name, table.name) == ("table_x.md", "table_x.csv")
    text = md.read_text()
    assert f"| DSC (%) paper | DSC (%) {label} |" in text
    assert "| CT | PNet-MSA | 83.3±5.6 [59.0,91.0] | 85.0±7.1 [80.0,90.0] | — | 0.61±0.50 [0.15,3.48] (1 nan) |" in text
    assert f"| CT | 3D FCN | 76.8±9.4 [43.7,89.4] | — | — | — | {QUOTED} |" in text
    assert "| 0.61±0.53 [0.15,3.50] |" in text  # the paper's digits are kept, never fewer than the column's
    lines = list(csv.DictReader(table.open()))
    assert lines[0]["paper"] == "83.3±5.6 [59.0,91.0]" and lines[0][label] == "85.0±7.1 [80.0,90.0]"
    assert float(lines[0]["ours_mean"]) == pytest.approx(85.0) and lines[0]["ours_n"] == "2"
    assert lines[2]["note"] == QUOTED and lines[2][label] == "—"
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary files left


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return {name: importlib.import_module(name) for name in SCRIPTS}


def test_every_script_writes_its_table_and_figures(tiny_store, tmp_path, stubs, scripts, capsys):
    """All nine scripts on the tiny store with the stub trainer: files named after the script."""
    trainer, _ = stubs
    figures = tmp_path / "figures"
    for name, module in scripts.items():
        code = module.main(["--data", str(tiny_store.root), "--preset", "testing", "--folds", "0,1", "--quiet",
                            "--out", str(tmp_path / "runs"), "--figures", str(figures)])
        assert code == 0, name
        assert (figures / f"{name}.md").is_file() and (figures / f"{name}.csv").is_file()
        assert "ours (CT store store, testing preset)" in (figures / f"{name}.md").read_text()
    assert {p.name for p in figures.glob("*.png")} == {
        "fig5_threshold.png", "fig6_volume.png", "fig7_sorted_cases.png", "fig8_probability_maps.png", "fig9_3d.png"}
    # 6 configs (pnet_msa/jac, ce, cbce, hnn, unet, pnet64) + cnn_rnn, folds 0 and 1 each
    assert len(trainer.calls) == 7 * 2
    table4 = (figures / "table4_sota.md").read_text()
    assert f"| CT | Coarse-to-Fine (Zhou et al.) | 82.3±5.6 [62.4,90.8] | — | — | — | {QUOTED} |" in table4
    assert "MRI" not in table4.split("|---|")[1]  # a CT store runs CT rows only
    printed = capsys.readouterr().out
    assert str(figures / "fig9_3d.png") in printed


def test_script_errors_are_one_line(tiny_store, tmp_path, scripts, capsys):
    code = scripts["table1_losses"].main(["--data", str(tiny_store.root), "--modality", "mri",
                                          "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert scripts["table2_architectures"].main(["--data", str(tmp_path / "missing"), "--figures", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        scripts["table1_losses"].main(["--preset", "huge"])


def test_help_lists_flags_and_public_presets(scripts, capsys):
    with pytest.raises(SystemExit):
        scripts["table2_architectures"].main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--modality", "--folds", "--preset", "--out", "--figures"):
        assert flag in text
    assert "{quick,paper}" in text and "testing" not in text


@pytest.mark.slow
def test_table3_end_to_end_with_real_training(tiny_store, tmp_path, scripts):
    """The real trainer and inference, testing preset cut to its essential stages, one fold:
    PNet-MSA, then the BiRNN on that CNN."""
    figures = tmp_path / "figures"
    argv = ["--data", str(tiny_store.root), "--preset", "testing", "--folds", "0", "--quiet",
            "--set", "train.stagewise=false", "train.epochs_finetune=0",
            "--out", str(tmp_path / "runs"), "--figures", str(figures)]
    assert scripts["table3_birnn"].main(argv) == 0
    rows = list(csv.DictReader((figures / "table3_birnn.csv").open()))
    dsc = [r for r in rows if r["metric"] == "DSC (%)" and r["method"] == "PNet-MSA"][0]
    assert dsc["paper"] == "83.3±5.6 [59.0,91.0]" and 0.0 <= float(dsc["ours_mean"]) <= 100.0
    models = sorted(p.name.split("-")[0] for p in (tmp_path / "runs" / "models").iterdir())
    assert models == ["cnn_rnn", "pnet_msa"]
    # everything cached: the second run loads no model
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.keras")}
    assert scripts["table3_birnn"].main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
