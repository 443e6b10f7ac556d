"""The real-CT transfer benchmark's context measure and fat-ring probe, on hand-worked slices."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from pancreas_seg.io.scan import Scan

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_transfer.py"


@pytest.fixture(scope="module")
def transfer():
    spec = importlib.util.spec_from_file_location("real_transfer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def slice_with_block() -> tuple[np.ndarray, np.ndarray]:
    """20 x 20 px of fat (-100 HU), a 2 x 2 px pancreas (100 HU) and one soft-tissue pixel beside it."""
    image = np.full((20, 20), -100.0, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[9:11, 9:11] = True
    image[mask] = 100.0
    image[9, 11] = 50.0
    return image, mask


def test_context_counts_the_fat_around_the_pancreas(transfer):
    image, mask = slice_with_block()
    context = transfer.pancreas_context(image, mask, pixel_mm=1.0)
    # the 5 mm ring (city-block layers 1..5 of a 2 x 2 block: 4d + 4 px each) holds 80 px, one not fat
    assert context.ring_fat == pytest.approx(79 / 80)
    assert context.body_fat == pytest.approx(395 / 400)
    assert context.pancreas_hu == pytest.approx(100.0)
    assert context.body_solid == pytest.approx(4 / 400)  # the 2 x 2 pancreas; 50 HU is below SOLID_HU
    assert context.pancreas_cm2 == pytest.approx(0.04)  # 4 px of 1 mm^2


def test_context_ring_scales_with_the_pixel_size(transfer):
    image, mask = slice_with_block()
    # 2.5 mm pixels: the 5 mm ring is two layers, 8 + 12 px
    assert transfer.pancreas_context(image, mask, pixel_mm=2.5).ring_fat == pytest.approx(19 / 20)


def test_fat_ring_paints_only_the_ring(transfer):
    image = np.full((1, 20, 20), 60, np.int16)
    truth = np.zeros((1, 20, 20), bool)
    truth[0, 9:11, 9:11] = True
    image[truth] = 100
    original = image.copy()
    scan = Scan(image, np.diag([1.0, 1.0, 1.0, 1.0]), "CT", {})
    painted = transfer.paint_fat_ring(scan, truth, width_mm=3.0).array
    ring = transfer.ring_around(truth[0], 3.0, 1.0)
    assert ring.sum() == 8 + 12 + 16
    assert abs(painted[0][ring].mean() - transfer.RING_FAT_HU) < 3 * transfer.RING_NOISE_HU / np.sqrt(ring.sum())
    assert (painted[0][truth[0]] == 100).all()
    assert (painted[0][~ring & ~truth[0]] == 60).all()
    assert (scan.array == original).all()  # the input is left alone


def test_paste_moves_the_source_disk_onto_the_target_pancreas(transfer):
    target = np.zeros((40, 40), np.float32)
    target_mask = np.zeros((40, 40), bool)
    target_mask[20:23, 20:23] = True  # centroid (21, 21)
    source = np.full((40, 40), 100.0, np.float32)
    source_mask = np.zeros((40, 40), bool)
    source_mask[10:13, 5:8] = True  # centroid (11, 6): moved by (10, 15)
    source[source_mask] = 200.0
    image, truth = transfer.paste_neighbourhood(target, target_mask, source, source_mask, radius_px=5.0)
    assert (truth == target_mask).all()
    assert (image[target_mask] == 200.0).all()
    assert image[21, 23] == 100.0  # 2 px from the centre: all source
    assert image[21, 24] == pytest.approx(100.0 * 2 / 3)  # 3 px: blended over the 3 px feather
    assert image[21, 26] == 0.0 and image[0, 0] == 0.0  # 5 px and beyond: the target


def test_on_pixel_size_resamples_and_pads_with_air(transfer):
    image = np.full((10, 10), 50.0, np.float32)
    mask = np.zeros((10, 10), bool)
    mask[:4, :4] = True
    resampled, resampled_mask = transfer.on_pixel_size(image, mask, from_mm=1.0, to_mm=2.0, shape=(8, 8))
    assert resampled.shape == (8, 8) and (resampled[:5, :5] == 50.0).all()
    assert (resampled[5:] == transfer.AIR_HU).all() and (resampled[:, 5:] == transfer.AIR_HU).all()
    assert resampled_mask[:2, :2].all() and not resampled_mask[3:].any()


def test_swap_radii_are_checked(transfer):
    assert transfer.parse_args(["run", "--phantoms", "s", "--swap", "15,30"]).swap == [15.0, 30.0]
    for bad in (["--swap", "15"], ["--phantoms", "s", "--swap", "0"], ["--phantoms", "s", "--swap", "a"],
                ["--phantoms", "s", "--swap", "15", "--fat-ring", "3"]):
        with pytest.raises(SystemExit):
            transfer.parse_args(["run", *bad])


def test_body_region_leaves_out_the_table_and_the_air(transfer):
    image = np.full((20, 20), -1000.0, np.float32)
    image[2:12, 2:18] = 40.0  # the patient
    image[5:7, 5:7] = -1000.0  # gas inside the bowel
    image[15:17, :] = -400.0  # the table, apart from the patient
    body = transfer.body_region(image)
    assert body.sum() == 10 * 16 - 4
    assert not body[15:17].any() and not body[5:7, 5:7].any()


def test_body_shares_ignore_the_table(transfer):
    image, mask = slice_with_block()
    image[0, :] = -400.0  # a table row that would count as fat, then an air gap
    image[1, :] = -1000.0
    context = transfer.pancreas_context(image, mask, pixel_mm=1.0)
    assert context.body_fat == pytest.approx(355 / 360)  # rows 2-19
    assert context.body_solid == pytest.approx(4 / 360)
