"""The localiser's region and margin (pancreas_seg.localiser), checked against hand-worked cases and
brute force, and its training into a run folder (pancreas_seg.train_localiser)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pancreas_seg import inference
from pancreas_seg.config import DataConfig, ExperimentConfig, preset
from pancreas_seg.data.splits import store_folds
from pancreas_seg.errors import InputError
from pancreas_seg.localiser import (MARGIN_STEP_MM, CalibrationCase, Margin, _coverage_table, choose_margin,
                                    hit_region, localiser_config, localiser_size, needed_margins, widen)
from pancreas_seg.networks import load_model
from pancreas_seg.roi import Roi
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.train import export_run, train
from pancreas_seg.train_localiser import train_localiser
from tests.conftest import blob_case, middle_slice_model


@pytest.mark.parametrize("fine, units, expected", [(512, 5, 128), (96, 5, 64), (64, 3, 64), (48, 3, 48), (200, 5, 64)])
def test_localiser_side_is_a_quarter_of_the_fine_side_within_bounds(fine, units, expected):
    assert localiser_size(fine, units) == expected


def test_localiser_config_keeps_the_runs_preprocessing_and_takes_the_presets_network():
    run = preset("paper")
    config = localiser_config(run, preset("cpu"))
    assert config.data.input_size == 128 and config.data.hu_window == run.data.hu_window
    assert config.data.crop == run.data.crop and config.model.channels == preset("cpu").model.channels
    assert config.model.name == "pnet_msa" and config.train.epochs_finetune == 0


def test_hit_region_scales_the_hits_to_the_fine_grid():
    probability = np.zeros((6, 8, 8), np.float32)
    probability[2, 3, 1] = probability[3, 5, 4] = 0.9  # hits at slices 2-3, rows 3-5, columns 1-4
    probability[4, 0, 0] = 0.2  # below HIT_FRACTION x 0.5
    region = hit_region(probability, threshold=0.5, fine_size=32)
    assert region == Roi(2, 4, (12, 24, 4, 20))  # rows [3, 6) x 4, columns [1, 5) x 4
    assert hit_region(np.zeros((3, 8, 8)), 0.5, 32) is None


def test_widen_converts_mm_to_slices_and_pixels_and_stays_on_the_grid():
    region = Roi(5, 8, (10, 20, 2, 30))
    margin = Margin(through_plane_mm=5.0, inplane_mm=3.0)
    # 5 mm at 2 mm slices: 3 slices; 3 mm at 0.8 mm pixels: 4 px; clipped at 0 and 32
    assert widen(region, margin, slice_mm=2.0, pixel_mm=0.8, shape=(10, 32, 32)) == Roi(2, 10, (6, 24, 0, 32))


def test_needed_margins_by_hand():
    mask = np.zeros((6, 10, 10), bool)
    mask[1, 4, 4] = True  # inside
    mask[4, 4, 4] = True  # one slice above the region: 2.5 mm
    mask[2, 4, 9] = True  # three columns right of the box: 3 x 0.5 mm
    need_z, need_p = needed_margins(Roi(1, 4, (3, 6, 3, 7)), mask, slice_mm=2.5, pixel_mm=0.5)
    assert sorted(zip(need_z.tolist(), need_p.tolist())) == [(0.0, 0.0), (0.0, 1.5), (2.5, 0.0)]


def test_coverage_table_is_the_brute_force_count():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 20, 20)) < 0.05
    case = CalibrationCase("a", Roi(3, 7, (5, 12, 6, 14)), mask, slice_mm=1.7, pixel_mm=0.9)
    grid = np.arange(0.0, 20.0, MARGIN_STEP_MM)
    table = _coverage_table(case, grid)
    need_z, need_p = needed_margins(case.region, mask, 1.7, 0.9)
    for i, mz in enumerate(grid):
        for j, mp in enumerate(grid):
            assert table[i, j] == pytest.approx(np.mean((need_z <= mz + 1e-9) & (need_p <= mp + 1e-9)))


def test_margin_is_the_smallest_that_holds_every_case_and_missed_cases_are_listed():
    mask = np.zeros((20, 40, 40), bool)
    mask[5:10, 10:20, 10:20] = True  # 500 voxels inside the region
    mask[11, 12:17, 12:16] = True  # 20 voxels two slices above (2 x 2 mm): 3.8 % of the pancreas
    held = CalibrationCase("held", Roi(5, 10, (10, 20, 10, 20)), mask, slice_mm=2.0, pixel_mm=1.0)
    missed = CalibrationCase("missed", None, mask, slice_mm=2.0, pixel_mm=1.0)
    margin = choose_margin([held, missed], coverage=0.995)
    assert (margin.through_plane_mm, margin.inplane_mm) == (5.0, 0.0)  # 4 mm needed: the next multiple of 2.5
    assert margin.missed == ("missed",) and margin.validation_coverage == {"held": 1.0}
    assert choose_margin([held], coverage=0.96).through_plane_mm == 0.0  # 96.2 % held without a margin
    assert Margin.from_dict(json.loads(json.dumps(margin.to_dict()))) == margin


def test_pancreas_free_validation_cases_constrain_nothing():
    mask = np.zeros((20, 40, 40), bool)
    mask[5:10, 10:20, 10:20] = True
    held = CalibrationCase("held", Roi(5, 10, (10, 20, 10, 20)), mask, slice_mm=2.0, pixel_mm=1.0)
    empty = np.zeros_like(mask)
    false_hit = CalibrationCase("free_hit", Roi(0, 3, (0, 5, 0, 5)), empty, slice_mm=2.0, pixel_mm=1.0)
    nothing = CalibrationCase("free_none", None, empty, slice_mm=2.0, pixel_mm=1.0)
    margin = choose_margin([held, false_hit, nothing], coverage=0.995)
    assert (margin.through_plane_mm, margin.inplane_mm) == (0.0, 0.0)
    assert margin.missed == () and margin.validation_coverage == {"held": 1.0, "free_hit": 1.0}


def _blob_store(tmp_path):
    from pancreas_seg.data.store import CaseStore
    store = CaseStore.create(tmp_path / "store", "CT")
    for index in range(4):
        store.write_case(blob_case(f"CASE_{index:02d}", seed=index, size=64))
    return store


def test_train_localiser_writes_a_localiser_that_predict_uses(tmp_path):
    store = _blob_store(tmp_path)
    config = preset("testing")
    fold = store_folds(store, config.data)[0]
    run = tmp_path / "run"
    train(config, run, store, fold, progress=False)
    result = train_localiser(run, preset("testing"), store, progress=False)
    margin = json.loads(RunFolder(result.folder).margin_path.read_text())
    assert set(margin["validation_coverage"]) | set(margin["missed"]) == set(fold.validation)
    model = load_model(run)
    assert model.localiser is not None and model.describe()["localiser"]["margin_mm"] == [
        margin["through_plane_mm"], margin["inplane_mm"]]
    scan = store.read_case(fold.test[0]).scan
    prediction = inference.predict_scan(scan, [model], inference.PredictOptions(dense=False))
    assert prediction.work.located_by == "localiser"
    dense = inference.predict_scan(scan, [model], inference.PredictOptions(dense=True))
    assert dense.work.located_by is None and dense.probability.shape == prediction.probability.shape


def test_train_localiser_refuses_another_store_and_a_run_without_a_fold(tmp_path):
    store = _blob_store(tmp_path)
    config = preset("testing")
    run = tmp_path / "run"
    train(config, run, store, store_folds(store, config.data)[0], progress=False)
    other = _blob_store(tmp_path / "other")
    other.write_case(blob_case("CASE_99", seed=9, size=64))
    with pytest.raises(InputError, match="not on this store"):
        train_localiser(run, config, other, progress=False)
    exported = export_run(middle_slice_model(64), ExperimentConfig(data=DataConfig(input_size=64)), tmp_path / "exp")
    with pytest.raises(InputError, match="give --fold"):
        train_localiser(exported.root, config, store, progress=False)


def test_a_localisers_region_gives_the_dense_probability_inside_it(tmp_path):
    # the identity model's mask is the bright blob; a localiser that is the same model finds it,
    # and inside its widened region the fine output is the dense one
    config = ExperimentConfig(data=DataConfig(crop="none", input_size=64))
    run = export_run(middle_slice_model(64), config, tmp_path / "run")
    localiser = export_run(middle_slice_model(64), config, run.localiser_dir)
    localiser.margin_path.write_text(json.dumps(Margin(4.0, 4.0).to_dict()))
    scan = blob_case("B", depth=16, size=64).scan
    body = (scan.array > 0) & (scan.array < 80)
    scan.array[body] = -100  # windowed 0.15: below the localiser's hit level, as the blob (0.65) is not
    model = load_model(run.root)
    roi = inference.predict_scan(scan, [model], inference.PredictOptions(dense=False))
    dense = inference.predict_scan(scan, [model], inference.PredictOptions(dense=True))
    assert roi.work.located_by == "localiser" and roi.work.mode == "roi" and roi.work.slices_fraction < 1
    np.testing.assert_allclose(roi.probability[dense.mask > 0], dense.probability[dense.mask > 0], atol=1e-5)
    np.testing.assert_array_equal(roi.mask, dense.mask)
    own = inference.predict_scan(scan, [model], inference.PredictOptions(dense=False, localiser=False))
    assert own.work.located_by == "cnn"


def test_a_localiser_without_its_margin_is_ignored_and_a_damaged_margin_refused(tmp_path):
    config = ExperimentConfig(data=DataConfig(crop="none", input_size=64))
    run = export_run(middle_slice_model(64), config, tmp_path / "run")
    localiser = export_run(middle_slice_model(64), config, run.localiser_dir)
    assert load_model(run.root).localiser is None
    localiser.margin_path.write_text("{}")
    with pytest.raises(InputError, match="not a localiser margin"):
        load_model(run.root)


def test_cli_train_then_train_localiser_and_predict_reports_it(tmp_path, capsys):
    from pancreas_seg.cli import main
    store = _blob_store(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--preset", "testing", "--data", str(store.root), "--no-localiser", "--quiet",
                 "-o", str(run)]) == 0
    assert not RunFolder(run).localiser_dir.exists()
    assert main(["train-localiser", str(run), "--preset", "testing", "--data", str(store.root), "--quiet"]) == 0
    assert "localiser validation DSC" in capsys.readouterr().out
    scan_path = tmp_path / "scan.nii.gz"
    from pancreas_seg.io.nifti import write_nifti
    write_nifti(store.read_case(store.case_ids[0]).scan, scan_path)
    assert main(["predict", str(scan_path), "-o", str(tmp_path / "out.nii.gz"), "--model", str(run)]) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["work"]["located_by"] == "localiser"
    assert main(["train-localiser", str(tmp_path / "nothing"), "--data", str(store.root)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_cli_train_trains_crops_by_default_and_whole_slices_on_request(tmp_path, capsys):
    from pancreas_seg.cli import main
    from pancreas_seg.config import CROP_FOV_MM
    store = _blob_store(tmp_path)
    common = ["train", "--preset", "testing", "--data", str(store.root), "--no-localiser", "--quiet"]
    assert main([*common, "-o", str(tmp_path / "crops")]) == 0
    assert "run pancreas-seg train-localiser" in capsys.readouterr().out  # it cannot predict without one
    crops, _ = RunFolder(tmp_path / "crops").read_config()
    assert (crops.data.crop, crops.data.fov_mm) == ("pancreas", CROP_FOV_MM)
    assert main([*common, "-o", str(tmp_path / "whole"), "--fine-stage", "whole-slice"]) == 0
    whole, _ = RunFolder(tmp_path / "whole").read_config()
    assert whole.data.crop == preset("testing").data.crop
    assert main([*common, "-o", str(tmp_path / "set"), "--set", "data.fov_mm=120"]) == 0  # --set comes after
    assert RunFolder(tmp_path / "set").read_config()[0].data.fov_mm == 120.0
