"""NIfTI reading/writing and reorient_like."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pancreas_seg.errors import InputError
from pancreas_seg.io.nifti import nifti_case_id, read_nifti, reorient_like, split_nifti_name, write_nifti
from pancreas_seg.io.scan import Scan

SUFFIXES = [".nii", ".nii.gz"]


def _label(shape=(5, 8, 10), affine=None, helpers=None) -> Scan:
    array = np.zeros(shape, dtype=np.uint8)
    array[1:3, 2:5, 3:7] = 1
    array[3, 6, 8] = 7
    return Scan(array=array, affine=helpers.AXIAL_LPS_AFFINE if affine is None else affine, source={})


# --------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_ct_int16_round_trip(tmp_path, helpers, suffix):
    scan = helpers.ct_scan(affine=helpers.rotation_affine())
    path = write_nifti(scan, tmp_path / f"ct{suffix}")
    back = read_nifti(path)
    assert back.array.dtype == np.int16 and back.modality == "CT"
    np.testing.assert_array_equal(back.array, scan.array)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)
    assert back.source["path"] == str(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_mri_float_round_trip(tmp_path, helpers, suffix):
    scan = helpers.mri_scan()
    back = read_nifti(write_nifti(scan, tmp_path / f"mr{suffix}"), modality="MRI")
    assert back.array.dtype == np.float32 and back.modality == "MRI"
    np.testing.assert_array_equal(back.array, scan.array)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_label_round_trip(tmp_path, helpers, suffix):
    label = _label(helpers=helpers)
    back = read_nifti(write_nifti(label, tmp_path / f"seg{suffix}"), kind="label")
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, label.array)


def test_array_is_stored_xyz_and_codes_set(tmp_path, helpers):
    """array[z, y, x] is the NIfTI voxel (i=x, j=y, k=z); qform and sform codes are 1 (scanner)."""
    scan = helpers.ct_scan()
    img = nib.load(write_nifti(scan, tmp_path / "ct.nii.gz"))
    assert img.shape == (10, 8, 5)
    assert np.asanyarray(img.dataobj)[7, 3, 2] == scan.array[2, 3, 7]
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), scan.affine, atol=1e-4)
    np.testing.assert_allclose(img.get_sform(), scan.affine, atol=1e-4)


def test_qform_used_when_sform_unset(tmp_path, helpers):
    data = np.zeros((4, 3, 2), dtype=np.int16)
    img = nib.Nifti1Image(data, None)
    img.set_qform(helpers.AXIAL_LPS_AFFINE, code=1)
    img.set_sform(np.eye(4), code=0)
    nib.save(img, tmp_path / "q.nii")
    np.testing.assert_allclose(read_nifti(tmp_path / "q.nii").affine, helpers.AXIAL_LPS_AFFINE, atol=1e-5)


def test_sform_preferred_over_qform(tmp_path, helpers):
    img = nib.Nifti1Image(np.zeros((4, 3, 2), dtype=np.int16), None)
    img.set_qform(np.eye(4), code=1)
    img.set_sform(helpers.AXIAL_LPS_AFFINE, code=2)
    nib.save(img, tmp_path / "s.nii")
    np.testing.assert_allclose(read_nifti(tmp_path / "s.nii").affine, helpers.AXIAL_LPS_AFFINE, atol=1e-5)


def test_singleton_4d_accepted(tmp_path, helpers):
    data = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2, 1)
    nib.save(nib.Nifti1Image(data, helpers.AXIAL_LPS_AFFINE), tmp_path / "v.nii")
    scan = read_nifti(tmp_path / "v.nii")
    np.testing.assert_array_equal(scan.array, data[..., 0].transpose(2, 1, 0))


def test_float_label_values_rounded(tmp_path, helpers):
    data = np.array([0.0, 1.0, 2.0000001, 7.0], dtype=np.float32).reshape(2, 2, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "seg.nii")
    np.testing.assert_array_equal(read_nifti(tmp_path / "seg.nii", kind="label").array.ravel(), [0, 2, 1, 7])


def test_write_is_atomic_and_overwrites(tmp_path, helpers):
    path = tmp_path / "out" / "ct.nii.gz"
    write_nifti(helpers.ct_scan(), path)
    second = helpers.ct_scan(seed=9)
    write_nifti(second, path)
    assert [p.name for p in path.parent.iterdir()] == ["ct.nii.gz"]
    np.testing.assert_array_equal(read_nifti(path).array, second.array)


def test_write_rejects_other_suffix(tmp_path, helpers):
    with pytest.raises(ValueError, match="nii"):
        write_nifti(helpers.ct_scan(), tmp_path / "ct.nrrd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, expected", [
    ("a/label0001.nii.gz", ("label0001", ".nii.gz")),
    ("case_2.NII", ("case_2", ".nii")),
    ("x.y.Nii.Gz", ("x.y", ".nii.gz")),
    ("x.y.nii", ("x.y", ".nii")),
    ("scan.nrrd", None),
    ("nii", None),
])
def test_split_nifti_name(name, expected):
    assert split_nifti_name(name) == expected
    assert nifti_case_id(name) == (expected[0] if expected else name.split("/")[-1])


def test_bool_written_as_uint8(tmp_path, helpers):
    scan = Scan(array=np.ones((2, 3, 4), dtype=bool), affine=np.eye(4))
    assert nib.load(write_nifti(scan, tmp_path / "m.nii")).get_data_dtype() == np.uint8


# --------------------------------------------------------------------------------
# Bad inputs: (builder -> path, word the message must hold, read_nifti kwargs)
# --------------------------------------------------------------------------------


def _nan(tmp_path):
    data = np.ones((3, 3, 3), dtype=np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    return tmp_path / "nan.nii.gz", "contains NaN", {}


def _inf(tmp_path):
    data = np.ones((3, 3, 3), dtype=np.float32)
    data[0, 1, 2] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "inf.nii")
    return tmp_path / "inf.nii", "contains NaN or inf", {}


def _truncated_gz(tmp_path):
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(4000, dtype=np.int16).reshape(10, 20, 20), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "truncated", {}


def _truncated_nii(tmp_path):
    path = tmp_path / "cut.nii"
    nib.save(nib.Nifti1Image(np.arange(4000, dtype=np.int16).reshape(10, 20, 20), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:1000])
    return path, "NIfTI", {}


def _not_nifti(tmp_path):
    path = tmp_path / "text.nii"
    path.write_text("hello, not an image\n" * 30)
    return path, "NIfTI", {}


def _gz_of_garbage(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"\x01" * 500))
    return path, "NIfTI", {}


def _missing(tmp_path):
    return tmp_path / "absent.nii.gz", "does not exist", {}


def _four_volumes(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), dtype=np.int16), np.eye(4)), tmp_path / "4d.nii")
    return tmp_path / "4d.nii", "3D", {}


def _two_d(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3), dtype=np.int16), np.eye(4)), tmp_path / "2d.nii")
    return tmp_path / "2d.nii", "3D", {}


def _label_fraction(tmp_path):
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 1.5, dtype=np.float32), np.eye(4)), tmp_path / "seg.nii")
    return tmp_path / "seg.nii", "non-integer", {"kind": "label"}


def _label_too_big(tmp_path):
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 300, dtype=np.int16), np.eye(4)), tmp_path / "seg.nii")
    return tmp_path / "seg.nii", "outside [0, 255]", {"kind": "label"}


def _label_negative(tmp_path):
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), -1, dtype=np.int16), np.eye(4)), tmp_path / "seg.nii")
    return tmp_path / "seg.nii", "outside [0, 255]", {"kind": "label"}


SROW_OFFSET = {"x": 280, "y": 296, "z": 312}  # bytes: NIfTI-1 header fields srow_x/y/z, 4 float32 each


def _with_srow(tmp_path, axis: str, row: tuple[float, ...]) -> Path:
    """A NIfTI file whose sform (code 1, no qform) has ``row`` as its ``srow_<axis>``, patched in the bytes:
    nibabel itself refuses to build such an image."""
    path = tmp_path / "singular.nii"
    image = nib.Nifti1Image(np.zeros((3, 3, 3), dtype=np.int16), np.eye(4))
    image.set_sform(np.eye(4), code=1)
    image.set_qform(None, code=0)
    nib.save(image, path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<4f", raw, SROW_OFFSET[axis], *row)
    path.write_bytes(bytes(raw))
    return path


def _zero_affine_column(tmp_path):
    return _with_srow(tmp_path, "y", (0.0, 0.0, 0.0, 5.0)), "singular affine", {}


def _non_finite_affine(tmp_path):
    return _with_srow(tmp_path, "x", (float("nan"), 0.0, 0.0, 0.0)), "singular affine with non-finite", {}


BAD_INPUTS = [_zero_affine_column, _non_finite_affine, _nan, _inf, _truncated_gz, _truncated_nii, _not_nifti, _gz_of_garbage, _missing, _four_volumes, _two_d,
              _label_fraction, _label_too_big, _label_negative]


@pytest.mark.parametrize("build", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_raises_input_error_naming_path(tmp_path, build):
    path, word, kwargs = build(tmp_path)
    with pytest.raises(InputError) as info:
        read_nifti(path, **kwargs)
    assert str(path) in str(info.value)
    assert word in str(info.value)


# --------------------------------------------------------------------------------
# reorient_like
# --------------------------------------------------------------------------------


def _flipped(scan: Scan, axis_xyz: int) -> Scan:
    """The same physical volume with NIfTI axis ``axis_xyz`` (0 = x) stored the other way round."""
    n = scan.array.shape[2 - axis_xyz]
    flip = np.eye(4)
    flip[axis_xyz, axis_xyz] = -1
    flip[axis_xyz, 3] = n - 1
    return Scan(array=np.flip(scan.array, axis=2 - axis_xyz).copy(), affine=scan.affine @ flip,
                modality=scan.modality, source={"path": "label.nii.gz"})


def test_reorient_las_label_onto_lps_image(helpers):
    image = helpers.ct_scan()
    label = _label(helpers=helpers)
    las = _flipped(label, axis_xyz=1)
    assert "".join(nib.aff2axcodes(las.affine)) == "LAS"
    moved = reorient_like(las, image.affine, image.shape)
    np.testing.assert_array_equal(moved.array, label.array)
    np.testing.assert_array_equal(moved.affine, image.affine)
    assert moved.array.dtype == np.uint8 and moved.source == las.source


def test_reorient_permuted_and_flipped_axes(helpers):
    image = helpers.ct_scan(shape=(5, 8, 10))
    label = _label(shape=(5, 8, 10), helpers=helpers)
    flipped = _flipped(_flipped(label, 0), 2)
    # swap NIfTI axes x and z: array [Z,Y,X] -> [X,Y,Z], affine columns 0 and 2 swapped
    perm = np.eye(4)[:, [2, 1, 0, 3]]
    swapped = Scan(array=flipped.array.transpose(2, 1, 0).copy(), affine=flipped.affine @ perm, source={"path": "p"})
    moved = reorient_like(swapped, image.affine, image.shape)
    np.testing.assert_array_equal(moved.array, label.array)


def test_reorient_identity(helpers):
    image = helpers.ct_scan()
    moved = reorient_like(image, image.affine, image.shape)
    np.testing.assert_array_equal(moved.array, image.array)


def _shifted(scan, helpers):
    affine = scan.affine.copy()
    affine[2, 3] += 1.0
    return affine, scan.shape, "origin"


def _other_spacing(scan, helpers):
    affine = scan.affine.copy()
    affine[2, 2] = 3.0
    return affine, scan.shape, "spacing"


def _other_shape(scan, helpers):
    return scan.affine, (6, 8, 10), "shape"


def _rotated(scan, helpers):
    return helpers.rotation_affine((2.5, 0.7, 0.9), (10, 20, -30), (0.0, 0.0, 5.0)), scan.shape, "axes"


@pytest.mark.parametrize("mismatch", [_shifted, _other_spacing, _other_shape, _rotated], ids=lambda f: f.__name__)
def test_reorient_refuses_other_physical_grid(helpers, mismatch):
    label = _flipped(_label(helpers=helpers), axis_xyz=1)
    affine, shape, word = mismatch(helpers.ct_scan(), helpers)
    with pytest.raises(InputError) as info:
        reorient_like(label, affine, shape)
    assert "label.nii.gz" in str(info.value) and word in str(info.value)


def test_reorient_tolerates_float32_rounding(helpers):
    image = helpers.ct_scan(affine=helpers.rotation_affine())
    label = _label(affine=image.affine.astype(np.float32).astype(np.float64), helpers=helpers)
    label.source = {"path": "p"}
    assert reorient_like(label, image.affine, image.shape).shape == image.shape


@pytest.mark.parametrize("stored, slope, inter, dtype", [
    (np.int16, 1.0, -1024.0, np.int16),  # the usual CT: HU = stored - 1024
    (np.uint16, 2.0, -1024.0, np.int16),  # stored 0..59 -> -1024..-906
    (np.int16, 0.5, -1024.0, np.float32),  # a fractional slope: not integers
    (np.int16, 1.0, 40000.0, np.float32),  # scaled values beyond int16
], ids=["int16-intercept", "uint16-slope2", "fractional-slope", "beyond-int16"])
def test_scaled_integers_keep_an_integer_type_where_exact(tmp_path, stored, slope, inter, dtype):
    stored_values = np.arange(5 * 4 * 3).reshape(5, 4, 3).astype(stored)  # [X, Y, Z], 0..59
    img = nib.Nifti1Image(stored_values, np.diag([0.8, 0.8, 2.0, 1.0]))
    img.header.set_slope_inter(slope, inter)
    nib.save(img, tmp_path / "scaled.nii.gz")
    back = read_nifti(tmp_path / "scaled.nii.gz")
    assert back.array.dtype == dtype
    expected = stored_values.astype(np.float64).transpose(2, 1, 0) * slope + inter  # [Z, Y, X]
    np.testing.assert_array_equal(back.array, expected.astype(dtype))
    assert back.array.flags.c_contiguous
