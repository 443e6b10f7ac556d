import numpy as np
import pytest
from skimage.transform import resize

from pancreas_seg.config import DataConfig
from pancreas_seg.data.preprocess import (InplaneTransform, body_box, normalize_intensity, plan_inplane,
                                          prepare_volume, slice_stack)
from tests.conftest import blob_case


def test_ct_window_maps_to_unit_range():
    config = DataConfig(hu_window=(-100.0, 300.0))
    hu = np.array([[[-1000, -100, 100, 300, 2000]]], np.int16)
    np.testing.assert_allclose(normalize_intensity(hu, "CT", config)[0, 0], [0, 0, 0.5, 1, 1])


def test_mri_percentiles_map_to_unit_range():
    volume = np.linspace(0, 1000, 1001, dtype=np.float32).reshape(1, 7, 143)
    out = normalize_intensity(volume, "MRI", DataConfig(mri_percentiles=(10.0, 90.0)))
    assert out.min() == 0 and out.max() == 1
    assert out[0, 3, 71] == pytest.approx(0.5, abs=1e-3)


def test_slice_stack_replicates_edges():
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 2), np.float32)
    np.testing.assert_array_equal(slice_stack(volume, 0, 3)[0, 0], [0, 0, 1])
    np.testing.assert_array_equal(slice_stack(volume, 2, 3)[0, 0], [1, 2, 3])
    np.testing.assert_array_equal(slice_stack(volume, 3, 3)[0, 0], [2, 3, 3])


def test_body_box_finds_the_body():
    case = blob_case("A", size=48)
    assert body_box(case.image, "CT") == (4, 44, 6, 42)


@pytest.mark.parametrize("crop", ["none", "body", "fov"])
def test_transform_inverts_back_onto_the_scan_grid(crop):
    case = blob_case("A", size=48)
    config = DataConfig(crop=crop, input_size=32, fov_mm=30.0)
    transform = plan_inplane(case.image, case.spacing, "CT", config)
    small = transform.apply_mask(case.mask)
    assert small.shape == (case.mask.shape[0], 32, 32)
    back = transform.invert(small.astype(np.float32)) > 0.5
    assert back.shape == case.mask.shape
    overlap = (back & case.mask.astype(bool)).sum() / case.mask.sum()
    assert overlap > 0.85


def test_invert_skips_zero_slices_with_the_same_result_as_resizing_them():
    transform = InplaneTransform((48, 40), (-4, 44, -4, 44), 16)
    probability = np.zeros((6, 16, 16), np.float32)
    probability[2:4] = np.random.default_rng(0).random((2, 16, 16))
    box_map = resize(probability, (6, 48, 48), order=1, anti_aliasing=False, preserve_range=True)
    whole = np.zeros((6, 48, 40), np.float32)
    whole[:, :44, :] = box_map[:, 4:, 4:44]  # the box starts 4 px before the image and ends past its rows
    np.testing.assert_allclose(transform.invert(probability), whole, atol=1e-6)
    assert transform.invert(probability)[[0, 1, 4, 5]].max() == 0.0
    assert not transform.invert(np.zeros((3, 16, 16), np.float32)).any()


def test_transform_survives_json_round_trip():
    transform = InplaneTransform((48, 40), (-4, 44, -4, 44), 16)
    assert InplaneTransform.from_dict(transform.to_dict()) == transform


def test_prepare_volume_is_unit_range_float32():
    case = blob_case("A")
    image, transform = prepare_volume(case.image, case.spacing, "CT", DataConfig(input_size=24, crop="body"))
    assert image.dtype == np.float32 and image.shape == (12, 24, 24)
    assert 0.0 <= image.min() and image.max() <= 1.0
