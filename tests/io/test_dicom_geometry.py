"""Slice geometry shared by the DICOM reader, writer and SEG: normal, order, RAS <-> LPS."""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from pancreas_seg.io.dicom_geometry import along_normal, slice_normal, slice_order, swap_lps_ras

# Coronal slices: rows along -z (feet), columns along +x; normal = x × (-z) = +y.
CORONAL_IOP = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


def _slice(y_mm: float, iop=CORONAL_IOP) -> Dataset:
    ds = Dataset()
    ds.ImageOrientationPatient = iop
    ds.ImagePositionPatient = [3.0, y_mm, 7.0]
    return ds


def test_normal_is_the_unit_cross_product_of_the_cosines():
    np.testing.assert_allclose(slice_normal(CORONAL_IOP), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(slice_normal([2.0, 0.0, 0.0, 0.0, 3.0, 0.0]), [0.0, 0.0, 1.0])  # not unit: normalised


def test_order_follows_the_position_along_the_normal_not_the_list():
    slices = [_slice(y) for y in (5.0, -2.5, 0.0, 2.5)]
    np.testing.assert_allclose(along_normal(slices), [5.0, -2.5, 0.0, 2.5])
    assert slice_order(slices).tolist() == [1, 2, 3, 0]


def test_order_is_stable_for_equal_positions():
    assert slice_order([_slice(1.0), _slice(0.0), _slice(1.0)]).tolist() == [1, 0, 2]


def test_swap_lps_ras_flips_x_and_y_rows_and_is_its_own_inverse():
    affine = np.array([[0.8, 0, 0, 10], [0, 0.7, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1]])
    swapped = swap_lps_ras(affine)
    np.testing.assert_allclose(swapped[:3], np.diag([-1, -1, 1]) @ affine[:3])
    np.testing.assert_allclose(swapped[3], [0, 0, 0, 1])
    np.testing.assert_allclose(swap_lps_ras(swapped), affine)
