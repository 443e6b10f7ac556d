"""A fine stage trained on crops around the pancreas (``data.crop = "pancreas"``, after Zhou et
al. [9]): the square cut around the manual mask in training and around the localiser's region in
prediction, checked by hand and with identity models whose masks are known."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from pancreas_seg import inference
from pancreas_seg.config import DataConfig, ExperimentConfig, preset
from pancreas_seg.data.preprocess import InplaneTransform, mask_region, plan_inplane
from pancreas_seg.data.splits import store_folds
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.experiment.crossval import _default_predictor
from pancreas_seg.localiser import Margin, localiser_config
from pancreas_seg.networks import load_model
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.train import export_run, train
from pancreas_seg.train_localiser import train_localiser
from tests.conftest import blob_case, middle_slice_model

SPACING = (2.0, 0.8, 0.8)  # blob_case's (z, y, x) mm


def test_mask_region_is_the_masks_box_over_all_slices_widened_in_mm():
    mask = np.zeros((4, 20, 30), np.uint8)
    mask[1, 5:8, 10:12] = 1
    mask[2, 9, 4] = 1
    # rows 5..9, columns 4..11; 2 mm at 0.8 mm px: 3 px, clipped at 0
    assert mask_region(mask, SPACING, margin_mm=2.0) == (2, 13, 1, 15)
    assert mask_region(np.zeros((2, 5, 5)), SPACING) is None


def test_the_pancreas_crop_is_a_square_of_at_least_fov_mm_holding_the_region():
    image = np.full((3, 64, 64), -1000, np.int16)
    image[:, 4:60, 10:50] = 40  # the body
    config = DataConfig(crop="pancreas", fov_mm=16.0, input_size=32)  # 16 mm: 20 px
    small = plan_inplane(image, SPACING, "CT", config, region=(30, 34, 40, 46))
    assert small.box == (22, 42, 33, 53) and small.size == 32  # 20 px around the region's centre (32, 43)
    large = plan_inplane(image, SPACING, "CT", config, region=(10, 40, 20, 30))
    assert large.box == (10, 40, 10, 40)  # the region's 30 px, as a square
    free = plan_inplane(image, SPACING, "CT", config)  # a pancreas-free case: centred on the body
    assert free.box == (4, 60, 2, 58)  # the body's 56 rows, centred on it


def test_the_pancreas_crop_of_a_slice_smaller_than_fov_mm_is_the_slice_not_a_padded_square():
    image = np.full((3, 64, 64), 40, np.int16)  # 51.2 mm at 0.8 mm px
    config = DataConfig(crop="pancreas", fov_mm=200.0, input_size=32)
    box = plan_inplane(image, SPACING, "CT", config, region=(20, 30, 20, 30)).box
    assert box[1] - box[0] == box[3] - box[2] == 64  # not 250 px of padding around a 64 px slice


def test_a_box_on_the_network_grid_maps_to_scan_pixels():
    transform = InplaneTransform((100, 100), box=(-20, 80, 10, 110), size=50)  # 2 scan px per grid px
    assert transform.to_scan_box((10, 20, 0, 50)) == (0, 20, 10, 100)  # clipped to the scan
    assert transform.to_scan_box((15, 16, 5, 6)) == (10, 12, 20, 22)


def test_the_localiser_of_a_crop_run_sees_whole_slices():
    run = replace(preset("cpu"), data=replace(preset("cpu").data, crop="pancreas", fov_mm=160.0))
    config = localiser_config(run, preset("cpu"))
    assert config.data.crop == "body" and config.data.fov_mm == preset("cpu").data.fov_mm
    assert localiser_config(run, run).data.crop == "body"  # the CLI passes the run itself: the body's box


def _identity_runs(tmp_path, margin_mm: float = 4.0):
    """A fine identity model on 32 px squares of 25.6 mm (no resize at 0.8 mm px) around the
    pancreas, with an identity localiser on whole 64 px slices."""
    fine = ExperimentConfig(data=DataConfig(crop="pancreas", fov_mm=25.6, input_size=32))
    run = export_run(middle_slice_model(32), fine, tmp_path / "run")
    localiser = export_run(middle_slice_model(64), ExperimentConfig(data=DataConfig(crop="none", input_size=64)),
                           run.localiser_dir)
    localiser.margin_path.write_text(json.dumps(Margin(margin_mm, margin_mm).to_dict()))
    return run


def _blob_scan():
    scan = blob_case("B", depth=16, size=64).scan
    body = (scan.array > 0) & (scan.array < 80)
    scan.array[body] = -100  # windowed 0.15: below the hit level, as the blob (0.65) is not
    return scan


def test_a_crop_model_predicts_on_the_localisers_square_and_slices_only(tmp_path):
    model = load_model(_identity_runs(tmp_path).root)
    scan = _blob_scan()
    crop = inference.predict_scan(scan, [model])
    work = crop.work
    assert work.mode == "crop" and work.located_by == "localiser"
    z0, z1, (y0, y1, x0, x1) = work.roi.z0, work.roi.z1, work.roi.box
    truth = (scan.array > 40).astype(np.uint8)  # the identity model's dense mask: windowed HU > 0.5
    np.testing.assert_array_equal(crop.mask, truth)  # the blob lies inside the region
    assert 0 < work.slices_fraction < 1 and work.slices_fraction == pytest.approx((z1 - z0) / 16)
    assert work.pixels_fraction == pytest.approx(32 * 32 / 64 ** 2)
    sy0, sy1, sx0, sx1 = plan_inplane(scan.array, SPACING, "CT", model.config.data, region=(y0, y1, x0, x1)).box
    assert sy0 <= y0 and y1 <= sy1 and sx0 <= x0 and x1 <= sx1 and sy1 - sy0 == 32
    outside = np.ones(scan.array.shape, bool)
    outside[z0:z1, sy0:sy1, sx0:sx1] = False
    assert not crop.probability[outside].any() and crop.probability[~outside].any()


def test_a_crop_model_predicts_nothing_where_the_localiser_finds_nothing(tmp_path):
    model = load_model(_identity_runs(tmp_path).root)
    scan = _blob_scan()
    scan.array[scan.array > 40] = -100
    prediction = inference.predict_scan(scan, [model])
    assert prediction.work.mode == "not_located" and not prediction.mask.any()


def test_a_crop_model_without_a_localiser_is_refused_and_never_run_on_whole_slices(tmp_path):
    fine = ExperimentConfig(data=DataConfig(crop="pancreas", fov_mm=25.6, input_size=32))
    model = load_model(export_run(middle_slice_model(32), fine, tmp_path / "run").root)
    with pytest.raises(InputError, match="train-localiser"):
        inference.predict_scan(_blob_scan(), [model])
    with pytest.raises(ValueError, match="predict_scan"):
        inference.network_probability(np.zeros((4, 32, 32), np.float32), (2.0, 0.8), [model])


@pytest.mark.parametrize("options", [inference.PredictOptions(dense=True), inference.PredictOptions(localiser=False)])
def test_a_crop_model_refuses_whole_slice_options(tmp_path, options):
    model = load_model(_identity_runs(tmp_path).root)
    with pytest.raises(InputError, match="--dense and --no-localiser do not apply"):
        inference.predict_scan(_blob_scan(), [model], options)


def test_training_on_crops_then_a_localiser_gives_a_coarse_to_fine_run(tmp_path):
    store = CaseStore.create(tmp_path / "store", "CT")
    for index in range(4):
        store.write_case(blob_case(f"CASE_{index:02d}", seed=index, size=64))
    testing = preset("testing")
    config = replace(testing, data=replace(testing.data, crop="pancreas", fov_mm=25.6, input_size=32))
    fold = store_folds(store, config.data)[0]
    run = tmp_path / "run"
    train(config, run, store, fold, progress=False)
    train_localiser(run, testing, store, progress=False)
    localiser = load_model(RunFolder(run).localiser_dir)
    assert localiser.config.data.crop == testing.data.crop  # whole slices
    assert RunFolder(RunFolder(run).localiser_dir).margin_path.is_file()
    # a one-epoch localiser finds nothing; an identity one finds the body (40 HU: windowed 0.5)
    identity = export_run(middle_slice_model(localiser.config.data.input_size), localiser.config, tmp_path / "identity")
    shutil.copyfile(identity.model_path, RunFolder(run).localiser_dir / "model.keras")
    model = load_model(run)
    case = store.read_case(fold.test[0])
    keras_float32 = inference.PredictOptions(runtime="keras", precision="float32")  # as cross-validation runs it
    prediction = inference.predict_scan(case.scan, [model], keras_float32)
    assert prediction.work.located_by == "localiser" and prediction.work.mode == "crop"
    predicted = _default_predictor(RunFolder(run).model_path, config)(case, None)
    np.testing.assert_allclose(predicted, prediction.probability, atol=1e-6)
