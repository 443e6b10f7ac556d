"""Shared helpers of the io tests: small synthetic scans and the real-data folder."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pancreas_seg.io.scan import Scan

# A typical DICOM axial grid: LPS-aligned (RAS affine with -x, -y), non-square pixels.
AXIAL_LPS_AFFINE = np.array(
    [
        [-0.9, 0.0, 0.0, 10.0],
        [0.0, -0.7, 0.0, 20.0],
        [0.0, 0.0, 2.5, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SLICE_MARKER_STEP = 100  # slice k of a synthetic CT holds k * SLICE_MARKER_STEP + a small pattern


def rotation_affine(spacing_zyx=(2.0, 0.8, 0.6), origin=(-5.0, 12.0, 40.0), angles_deg=(20.0, -10.0, 35.0)) -> np.ndarray:
    """A right-handed oblique affine: rotation (about x, then y, then z) × diag(spacing x, y, z) + origin."""
    rotation = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()  # extrinsic: Rz @ Ry @ Rx
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing_zyx[::-1])
    affine[:3, 3] = origin
    return affine


def ct_scan(shape=(5, 8, 10), affine=AXIAL_LPS_AFFINE, seed=0) -> Scan:
    """int16 CT ``[Z, Y, X]`` with negative HU; slice k's values lie in [k*100 - 1000, k*100 - 950)."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 50, size=shape).astype(np.int16)
    array += (np.arange(shape[0]) * SLICE_MARKER_STEP - 1000).astype(np.int16)[:, None, None]
    return Scan(array=array, affine=affine, modality="CT", source={})


def mri_scan(shape=(4, 6, 7), affine=AXIAL_LPS_AFFINE, seed=0) -> Scan:
    """float32 MRI ``[Z, Y, X]`` with non-integer values, some negative."""
    rng = np.random.default_rng(seed)
    array = (rng.normal(300.0, 120.0, size=shape)).astype(np.float32)
    return Scan(array=array, affine=affine, modality="MRI", source={})


def slice_markers(array: np.ndarray) -> np.ndarray:
    """Index of each slice of a :func:`ct_scan` recovered from its values."""
    return (array.min(axis=(1, 2)).astype(int) + 1000) // SLICE_MARKER_STEP


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules do not import conftest: its name is not unique)."""
    return SimpleNamespace(
        AXIAL_LPS_AFFINE=AXIAL_LPS_AFFINE.copy(),
        rotation_affine=rotation_affine,
        ct_scan=ct_scan,
        mri_scan=mri_scan,
        slice_markers=slice_markers,
    )
