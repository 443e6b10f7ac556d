"""The readers on real DICOM written by other software (``../shared/data/real``, see its README.md).

Skipped when that folder is absent.
"""
from __future__ import annotations

import numpy as np
import pytest

from pancreas_seg.io.dicom import list_series, read_dicom_series
from pancreas_seg.io.nifti import read_nifti, reorient_like

LIVER, PANCREAS = 5, 7  # TotalSegmentator labels in reference_seg.nii.gz
LIVER_MEAN_HU, PANCREAS_MEAN_HU, MEAN_HU_TOL = 89.0, 61.0, 5.0  # README: about 89 and 61 on the right grid


@pytest.fixture
def totalseg(real_data):
    folder = real_data / "totalseg_ct_dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    return folder


@pytest.fixture
def dcmqi(real_data):
    folder = real_data / "dcmqi_ct_3slice"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    return folder


def test_totalseg_jpeg2000_empty_uid_backwards_instance_numbers(totalseg):
    """20 JPEG 2000 slices, no SeriesInstanceUID, InstanceNumber decreasing along z."""
    scan = read_dicom_series(totalseg / "slices")
    assert scan.shape == (20, 512, 512) and scan.array.dtype == np.int16 and scan.modality == "CT"
    np.testing.assert_allclose(scan.spacing, (2.0, 0.9765625, 0.9765625))
    assert scan.source["SeriesInstanceUID"] == ""
    # LPS IPP of the lowest slice (-249.51171875, -437.51171875, -804.5) -> RAS, slice axis towards +S
    np.testing.assert_allclose(scan.affine[:3, 3], [249.51171875, 437.51171875, -804.5])
    np.testing.assert_allclose(np.diag(scan.affine)[:3], [-0.9765625, -0.9765625, 2.0])
    assert -1024 <= scan.array.min() and scan.array.max() < 3000


def test_totalseg_lands_on_reference_segmentation_grid(totalseg):
    scan = read_dicom_series(totalseg / "slices")
    label = read_nifti(totalseg / "reference_seg.nii.gz", kind="label")
    moved = reorient_like(label, scan.affine, scan.shape)
    np.testing.assert_allclose(moved.affine, scan.affine, atol=1e-4)
    assert scan.same_grid(moved)
    assert np.mean(scan.array[moved.array == LIVER]) == pytest.approx(LIVER_MEAN_HU, abs=MEAN_HU_TOL)
    assert np.mean(scan.array[moved.array == PANCREAS]) == pytest.approx(PANCREAS_MEAN_HU, abs=MEAN_HU_TOL)


def test_dcmqi_ge_implicit_vr_descending_z(dcmqi):
    scan = read_dicom_series(dcmqi / "slices")
    assert scan.shape == (3, 512, 512) and scan.array.dtype == np.int16
    np.testing.assert_allclose(scan.spacing, (1.0, 0.810547, 0.810547), atol=1e-5)
    # slice 0 is the lowest one, 03.dcm at z = -128.690002 (files are numbered downwards)
    np.testing.assert_allclose(scan.affine[:3, 3], [235.199997, 226.800003, -128.690002], atol=1e-6)
    assert scan.affine[2, 2] > 0


def test_dcmqi_seg_is_not_an_image_series(dcmqi):
    infos = list_series(dcmqi)
    assert len(infos) == 1
    assert infos[0].n_files == 3 and all(p.parent.name == "slices" for p in infos[0].paths)
    assert read_dicom_series(dcmqi).shape == (3, 512, 512)
