"""Synthetic phantoms: determinism, anatomy statistics, whole-abdomen coverage, fat plane, 3D texture,
MRI breath holds vs CT slice continuity, NIH layout round trip."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pancreas_seg.data.phantom import (PhantomConfig, flip_rows, generate_case, nih_paths, write_nih_layout,
                                       write_phantom_set)
from pancreas_seg.data.phantom.acquisition import acquisition_plan
from pancreas_seg.io.dicom import read_dicom_series
from pancreas_seg.io.nifti import read_nifti, reorient_like

SMALL = PhantomConfig(matrix=64)
MEDIUM = PhantomConfig(matrix=96)
FINE = PhantomConfig(matrix=128)  # pixels of 2-3.5 mm: the fat plane and parenchyma resolved
MIN_ML, MAX_ML = 35.0, 130.0  # mL, plausible adult pancreas volumes (target 40-120, small-matrix slack)
PARENCHYMA_PERCENTILE = 90  # percentile of the label's HU taken as parenchyma (clefts, partial volume below)
PARENCHYMA_HU = (60.0, 130.0)  # HU, contrast-enhanced pancreatic parenchyma
SHELL_MM = 5.0  # mm, shell around the pancreas whose fat fraction is measured
FAT_HU = -30.0  # HU, a voxel below this is fat
MIN_SHELL_FAT = 0.3  # least fat share of the shell (NIH CT: ~0.67; partial volume at 128 px)
BOX_MM = 20.0  # mm, margin of the box around the pancreas searched by the intensity oracle
MAX_ORACLE_DSC = 0.35  # an HU window + largest component must not find the pancreas (target 0.30 at 512 px)
MIN_SPECK_ML = 0.2  # mL, smallest allowed label component
ABDOMEN_MARGIN_MM = 60.0  # mm, least pancreas-free coverage above and below the pancreas


def _volume_ml(scan, mask) -> float:
    dz, dy, dx = scan.spacing
    return float(mask.sum()) * dz * dy * dx / 1000.0


def _surface_distance(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]) -> float:
    """Mean symmetric surface distance (mm) between two 2D masks (a simple AVD of Sec. IV-D)."""
    edge_a = a & ~ndimage.binary_erosion(a)
    edge_b = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing)
    return (to_b[edge_a].mean() + to_a[edge_b].mean()) / 2


def _mean_interslice_change(scan, mask) -> float:
    m = mask.astype(bool)
    spacing = scan.spacing[1:]
    zs = [z for z in range(m.shape[0] - 1) if m[z].any() and m[z + 1].any()]
    return float(np.mean([_surface_distance(m[z], m[z + 1], spacing) for z in zs]))


def test_deterministic_in_case_and_seed():
    a_img, a_mask = generate_case(3, "CT", seed=0, config=SMALL)
    b_img, b_mask = generate_case(3, "CT", seed=0, config=SMALL)
    assert np.array_equal(a_img.array, b_img.array) and np.array_equal(a_mask, b_mask)
    assert np.array_equal(a_img.affine, b_img.affine)
    c_img, _ = generate_case(4, "CT", seed=0, config=SMALL)
    d_img, _ = generate_case(3, "CT", seed=1, config=SMALL)
    for other in (c_img, d_img):
        assert other.shape != a_img.shape or not np.array_equal(other.array, a_img.array)


def test_ct_types_orientation_and_mask_inside_body():
    scan, mask = generate_case(1, "CT", config=SMALL)
    assert scan.array.dtype == np.int16 and mask.dtype == np.uint8 and mask.shape == scan.shape
    assert scan.modality == "CT" and set(np.unique(mask)) == {0, 1}
    dz, dy, dx = scan.spacing
    assert 1.0 <= dz <= 2.5 and 180 <= scan.shape[0] <= 470
    assert 0.6 * 512 / 64 <= dx <= 0.9 * 512 / 64
    # LPS-style axial grid: columns towards the patient's left (-x RAS), rows posterior (-y), slices superior
    assert scan.affine[0, 0] < 0 and scan.affine[1, 1] < 0 and scan.affine[2, 2] > 0
    body = ndimage.binary_fill_holes(scan.array > -300, structure=np.ones((1, 3, 3)))
    assert mask.any() and body[mask.astype(bool)].all()
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    assert zs[0] > 0 and zs[-1] < scan.shape[0] - 1  # the pancreas lies inside the scanned range


def _oracle_dsc(image: np.ndarray, mask: np.ndarray, spacing) -> float:
    """Best DSC of an HU window chosen knowing the label, largest component, inside the label's box + 20 mm."""
    idx = np.nonzero(mask)
    box = tuple(slice(max(0, int(i.min() - BOX_MM / d)), int(i.max() + BOX_MM / d) + 1) for i, d in zip(idx, spacing))
    img, gt = image[box].astype(float), mask[box].astype(bool)
    best = 0.0
    for lo in np.percentile(img[gt], [5, 20]):
        for hi in np.percentile(img[gt], [80, 95]):
            labels, count = ndimage.label((img >= lo) & (img <= hi), np.ones((3, 3, 3), bool))
            if count:
                largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
                best = max(best, 2 * (largest & gt).sum() / (largest.sum() + gt.sum()))
    return best


def test_parenchyma_enhances_and_intensity_alone_does_not_find_the_pancreas():
    for case in (1, 2):
        scan, mask = generate_case(case, "CT", config=FINE)
        m = mask.astype(bool)
        parenchyma = np.percentile(scan.array[m], PARENCHYMA_PERCENTILE)
        assert PARENCHYMA_HU[0] < parenchyma < PARENCHYMA_HU[1], (case, parenchyma)
        assert _oracle_dsc(scan.array, m, scan.spacing) < MAX_ORACLE_DSC


def test_one_connected_label_on_the_image_grid():
    for case in (1, 2, 3):
        scan, mask = generate_case(case, "CT", config=SMALL)
        assert mask.shape == scan.shape and mask.dtype == np.uint8
        labels, count = ndimage.label(mask, np.ones((3, 3, 3), bool))
        assert count == 1
        assert _volume_ml(scan, mask) > MIN_SPECK_ML


def test_fat_plane_around_the_pancreas():
    scan, mask = generate_case(1, "CT", config=FINE)
    m = mask.astype(bool)
    outside = ndimage.distance_transform_edt(~m, sampling=scan.spacing)
    shell = (outside > 0) & (outside <= SHELL_MM)
    assert np.mean(scan.array[shell] < FAT_HU) > MIN_SHELL_FAT


def test_ct_covers_the_whole_abdomen():
    scan, mask = generate_case(1, "CT", config=SMALL)
    dz = scan.spacing[0]
    assert 180 <= scan.shape[0] <= 470
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    assert zs[0] * dz >= ABDOMEN_MARGIN_MM and (scan.shape[0] - 1 - zs[-1]) * dz >= ABDOMEN_MARGIN_MM
    assert 0.1 < len(zs) / scan.shape[0] < 0.4  # pancreas-free slices dominate, as in NIH scans


def test_a_short_custom_scan_stays_on_the_pancreas():
    config = PhantomConfig(matrix=32, ct_slices=(40, 40), ct_slice_mm=(2.0, 2.0))
    scan, mask = generate_case(1, "CT", config=config)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    assert scan.shape[0] == 40 and zs[0] > 0 and zs[-1] < scan.shape[0] - 1


def test_texture_is_a_3d_field_and_only_noise_is_per_slice():
    quiet = PhantomConfig(matrix=64, ct_noise_hu=(0.0, 0.0))
    scan, _ = generate_case(1, "CT", config=quiet)
    plan = acquisition_plan(1, "CT", config=quiet)
    body = scan.array[:, 24:40, 24:40].astype(float)  # central soft tissue
    within = body.std(axis=(1, 2)).mean()
    between = np.diff(body, axis=0).std(axis=(1, 2)).mean()
    assert plan.dz <= 2.5 and between < within


def test_mri_breath_holds_shift_the_viscera_in_blocks():
    config = PhantomConfig(matrix=64, modality="MRI")
    for case in (1, 2, 3):
        plan = acquisition_plan(case, config=config)
        sizes = np.diff(plan.block_starts + [plan.slices])
        assert 2 <= len(sizes) <= 4 and np.all((8 <= sizes) & (sizes <= 15)), sizes
        for first, end in zip(plan.block_starts, plan.block_starts[1:] + [plan.slices]):
            assert np.all(plan.shifts[first:end] == plan.shifts[first])  # none within a breath hold
        jumps = np.linalg.norm(np.diff(plan.shifts[plan.block_starts], axis=0), axis=1)
        assert np.all((3.0 - 1e-9 <= jumps) & (jumps <= 5.0 + 1e-9)), jumps
    scan, _ = generate_case(1, config=config)
    assert scan.shape[0] == acquisition_plan(1, config=config).slices


def test_volumes_plausible_and_varied():
    volumes = [_volume_ml(*generate_case(case, "CT", config=SMALL)) for case in range(1, 6)]
    assert all(MIN_ML < v < MAX_ML for v in volumes), volumes
    assert max(volumes) - min(volumes) > 10, volumes


def test_mri_thick_slices_float_and_larger_interslice_change():
    mri, mri_mask = generate_case(2, "MRI", config=MEDIUM)
    ct, ct_mask = generate_case(2, "CT", config=MEDIUM)
    assert mri.modality == "MRI" and mri.array.dtype == np.float32 and mri.array.min() >= 0
    assert 5.0 <= mri.spacing[0] <= 8.0
    assert abs(_volume_ml(mri, mri_mask) - _volume_ml(ct, ct_mask)) < 0.35 * _volume_ml(ct, ct_mask)  # same patient
    assert _mean_interslice_change(mri, mri_mask) > 2 * _mean_interslice_change(ct, ct_mask)


def test_flip_rows_keeps_physical_grid():
    scan, _ = generate_case(1, "CT", config=SMALL)
    flipped = flip_rows(scan)
    corner = flipped.affine @ np.array([0, scan.shape[1] - 1, 0, 1.0])
    assert np.allclose(corner, scan.affine @ np.array([0, 0, 0, 1.0]))
    assert np.array_equal(flipped.array[:, ::-1], scan.array)


@pytest.mark.parametrize("case_number", [2, 3])  # 2: label rows flipped; 3: InstanceNumber descending
def test_nih_layout_round_trip(tmp_path, case_number):
    scan, mask = generate_case(case_number, "CT", config=SMALL)
    series_dir, label_path = write_nih_layout(scan, mask, tmp_path, case_number)
    assert (series_dir, label_path) == nih_paths(tmp_path, case_number)
    rel = series_dir.relative_to(tmp_path).parts
    assert rel[:2] == ("Pancreas-CT", f"PANCREAS_{case_number:04d}") and rel[3].startswith("Pancreas-")
    assert label_path.name == f"label{case_number:04d}.nii.gz"
    assert (series_dir / "1-001.dcm").is_file()
    image = read_dicom_series(series_dir)
    assert image.source.get("PatientID", f"PANCREAS_{case_number:04d}") == f"PANCREAS_{case_number:04d}"
    assert np.array_equal(image.array, scan.array) and np.allclose(image.affine, scan.affine, atol=1e-3)
    label = read_nifti(label_path, kind="label")
    assert label.array.dtype == np.uint8
    assert np.array_equal(label.array, mask) == (case_number % 2 == 1)  # every other label is stored flipped
    on_grid = reorient_like(label, image.affine, image.shape)
    assert np.array_equal(on_grid.array, mask)


def test_mri_nih_layout_and_set_writer_idempotent(tmp_path):
    config = PhantomConfig(matrix=64, modality="MRI")
    first = write_phantom_set(tmp_path, [1], config, progress=False)
    again = write_phantom_set(tmp_path, [1], config, progress=False)
    assert first.written == [1] and again.written == [] and again.skipped == [1]
    series_dir, _ = nih_paths(tmp_path, 1)
    image = read_dicom_series(series_dir)
    scan, _ = generate_case(1, config=config)
    assert image.modality == "MRI" and np.allclose(image.array, scan.array, atol=1e-4 * scan.array.max())
