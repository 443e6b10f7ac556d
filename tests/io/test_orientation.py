"""Canonical storage orientation: flips and permutations only, undone exactly."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from pancreas_seg.io.orientation import CANONICAL_AXCODES, storage_axcodes, to_canonical
from pancreas_seg.io.scan import Scan

LPS_AFFINE = np.diag([-0.8, -0.7, 2.5, 1.0])  # columns to the left, rows posterior, slices superior


def stored_as(scan: Scan, axcodes: tuple[str, str, str]) -> Scan:
    """The same voxels and world positions stored with its voxel axes pointing to ``axcodes``."""
    transform = ornt_transform(axcodes2ornt(CANONICAL_AXCODES), axcodes2ornt(axcodes))
    data_xyz = scan.array.transpose(2, 1, 0)
    moved = apply_orientation(data_xyz, transform)
    affine = scan.affine @ inv_ornt_aff(transform, data_xyz.shape)
    return Scan(np.ascontiguousarray(moved.transpose(2, 1, 0)), affine, scan.modality)


def world_values(scan: Scan) -> dict[tuple[float, float, float], float]:
    """Voxel value by world position (mm, rounded): independent of the storage order."""
    z, y, x = np.indices(scan.shape).reshape(3, -1)
    world = (scan.affine @ np.stack([x, y, z, np.ones_like(x)]))[:3].T.round(3)
    return dict(zip(map(tuple, world), scan.array.ravel().tolist()))


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("L", "A", "S"), ("S", "P", "L"),
                                     ("A", "I", "R")])
def test_any_storage_comes_back_canonical_with_the_same_voxels(axcodes):
    reference = Scan(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), LPS_AFFINE)
    stored = stored_as(reference, axcodes)
    assert storage_axcodes(stored) == axcodes
    canonical, reorientation = to_canonical(stored)
    assert storage_axcodes(canonical) == CANONICAL_AXCODES
    np.testing.assert_array_equal(canonical.array, reference.array)
    np.testing.assert_allclose(canonical.affine, reference.affine)
    assert world_values(canonical) == world_values(stored)
    np.testing.assert_array_equal(reorientation.restore(canonical.array), stored.array)
    assert reorientation.is_identity == (axcodes == CANONICAL_AXCODES)


def test_oblique_grid_goes_to_the_nearest_axes():
    rotation = nib.eulerangles.euler2mat(z=np.radians(15))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, -0.9, -2.0])  # columns right-ish, rows anterior-ish, slices inferior
    canonical, reorientation = to_canonical(Scan(np.zeros((3, 4, 5), np.uint8), affine))
    assert storage_axcodes(canonical) == CANONICAL_AXCODES and canonical.shape == (3, 4, 5)
    assert reorientation.restore(np.ones((3, 4, 5))).shape == (3, 4, 5)
