"""DICOM series reading/writing: round trips, geometry by hand, slice order, every bad input."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

from pancreas_seg.errors import InputError
from pancreas_seg.io.dicom import list_series, read_dicom_series
from pancreas_seg.io.dicom_write import TRANSFER_SYNTAXES, write_dicom_series



def _edit(path: Path, **tags) -> None:
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path)


def _write_non_image(path: Path) -> None:
    """A Basic Text SR object: DICOM, but no pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("transfer_syntax", sorted(TRANSFER_SYNTAXES))
def test_ct_round_trip_is_exact(tmp_path, helpers, transfer_syntax):
    scan = helpers.ct_scan(shape=(3, 32, 40))  # JPEG 2000 encoding needs >= 32 pixels
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1", transfer_syntax=transfer_syntax)
    back = read_dicom_series(tmp_path / "ct")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, scan.array)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)
    assert back.modality == "CT"
    ds = pydicom.dcmread(next((tmp_path / "ct").iterdir()))
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[transfer_syntax]


def test_jpeg2000_refuses_tiny_images(tmp_path, helpers):
    with pytest.raises(ValueError, match="jpeg2000"):
        write_dicom_series(helpers.ct_scan(), tmp_path / "ct", patient_id="p1", transfer_syntax="jpeg2000_lossless")


def test_ct_round_trip_oblique(tmp_path, helpers):
    scan = helpers.ct_scan(shape=(4, 6, 9), affine=helpers.rotation_affine())
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    back = read_dicom_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, scan.array)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)
    np.testing.assert_allclose(back.spacing, (2.0, 0.8, 0.6), atol=1e-6)


def test_ct_without_negative_values_is_unsigned_and_reads_as_int16(tmp_path, helpers):
    scan = helpers.ct_scan()
    scan.array = scan.array + 1000  # all >= 0
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    assert pydicom.dcmread(next((tmp_path / "ct").iterdir())).PixelRepresentation == 0
    back = read_dicom_series(tmp_path / "ct")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, scan.array)


def test_negative_ct_is_signed(tmp_path, helpers):
    write_dicom_series(helpers.ct_scan(), tmp_path / "ct", patient_id="p1")
    ds = pydicom.dcmread(next((tmp_path / "ct").iterdir()))
    assert (ds.PixelRepresentation, float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1, 1.0, 0.0)


def test_mri_float_round_trip_within_1e3_relative(tmp_path, helpers):
    scan = helpers.mri_scan()
    write_dicom_series(scan, tmp_path / "mr", patient_id="p1")
    ds = pydicom.dcmread(next((tmp_path / "mr").iterdir()))
    assert (ds.Modality, ds.PixelRepresentation, ds.BitsStored) == ("MR", 0, 16)
    back = read_dicom_series(tmp_path / "mr")
    assert back.modality == "MRI" and back.array.dtype == np.float32
    value_range = float(scan.array.max() - scan.array.min())
    np.testing.assert_allclose(back.array, scan.array, rtol=0, atol=1e-3 * value_range)
    np.testing.assert_allclose(back.array, scan.array, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)


def test_mri_integer_values_are_exact(tmp_path, helpers):
    scan = helpers.mri_scan()
    scan.array = np.rint(np.abs(scan.array)).astype(np.float32)
    write_dicom_series(scan, tmp_path / "mr", patient_id="p1")
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "mr").array, scan.array)


def test_modality_argument_overrides_tag(tmp_path, helpers):
    write_dicom_series(helpers.mri_scan(), tmp_path / "mr", patient_id="p1")
    assert read_dicom_series(tmp_path / "mr", modality="CT").modality == "CT"


def test_source_identifiers(tmp_path, helpers):
    write_dicom_series(helpers.ct_scan(), tmp_path / "ct", patient_id="p7", study_uid="1.2.3", series_uid="1.2.3.4",
                       series_description="venous")
    source = read_dicom_series(tmp_path / "ct").source
    assert source == {"path": str(tmp_path / "ct"), "PatientID": "p7", "StudyInstanceUID": "1.2.3",
                      "SeriesInstanceUID": "1.2.3.4", "SeriesDescription": "venous",
                      "SliceThickness": str(source["SliceThickness"])}
    assert float(source["SliceThickness"]) > 0


def test_uids_are_deterministic_from_patient_id(tmp_path, helpers):
    scan = helpers.ct_scan()
    a = write_dicom_series(scan, tmp_path / "a", patient_id="p1")
    b = write_dicom_series(scan, tmp_path / "b", patient_id="p1")
    c = write_dicom_series(scan, tmp_path / "c", patient_id="p2")
    uids = [pydicom.dcmread(files[0]).SeriesInstanceUID for files in (a, b, c)]
    assert uids[0] == uids[1] != uids[2]
    assert pydicom.dcmread(a[0]).SOPInstanceUID != pydicom.dcmread(a[1]).SOPInstanceUID


def test_geometry_written_by_hand(tmp_path, helpers):
    """RAS affine [[-0.9,0,0,10],[0,-0.7,0,20],[0,0,2.5,-30]] is LPS diag(0.9, 0.7, 2.5) + (-10, -20, -30):
    columns run along +L (row cosine 1,0,0), rows along +P, PixelSpacing = [row 0.7, column 0.9]."""
    files = write_dicom_series(helpers.ct_scan(), tmp_path / "ct", patient_id="p1")
    first, second = pydicom.dcmread(files[0]), pydicom.dcmread(files[1])
    np.testing.assert_allclose([float(v) for v in first.ImagePositionPatient], [-10, -20, -30])
    np.testing.assert_allclose([float(v) for v in second.ImagePositionPatient], [-10, -20, -27.5])
    np.testing.assert_allclose([float(v) for v in first.ImageOrientationPatient], [1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose([float(v) for v in first.PixelSpacing], [0.7, 0.9])
    assert float(first.SliceThickness) == pytest.approx(2.5)
    assert (first.Rows, first.Columns) == (8, 10)


def test_reader_geometry_by_hand(tmp_path, helpers):
    """Voxel (c, r, k) -> LPS = IPP_k + c*dc*rowcos + r*dr*colcos; an oblique IOP set by hand."""
    files = write_dicom_series(helpers.ct_scan(shape=(3, 8, 10)), tmp_path / "ct", patient_id="p1")
    row_cos, col_cos = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])  # sagittal: normal = (-1, 0, 0)
    for k, path in enumerate(files):
        _edit(path, ImageOrientationPatient=[0, 1, 0, 0, 0, -1], ImagePositionPatient=[5.0 - 3.0 * k, -7.0, 11.0],
              PixelSpacing=[0.5, 0.25])
    scan = read_dicom_series(tmp_path / "ct")
    c, r, k = 4, 6, 2
    lps = np.array([5.0 - 3.0 * k, -7.0, 11.0]) + c * 0.25 * row_cos + r * 0.5 * col_cos
    ras = lps * [-1, -1, 1]
    np.testing.assert_allclose((scan.affine @ [c, r, k, 1])[:3], ras, atol=1e-9)
    np.testing.assert_allclose(scan.spacing, (3.0, 0.5, 0.25))


def test_left_handed_affine_reads_back_on_same_grid_with_slices_reversed(tmp_path, helpers):
    affine = helpers.AXIAL_LPS_AFFINE @ np.diag([1.0, -1.0, 1.0, 1.0])  # LAS-like: det < 0
    scan = helpers.ct_scan(affine=affine)
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    back = read_dicom_series(tmp_path / "ct")
    n = scan.shape[0]
    for k in (0, n - 1):
        index = np.array([3, 2, k, 1.0])
        np.testing.assert_allclose(back.affine @ [3, 2, n - 1 - k, 1], scan.affine @ index, atol=1e-4)
        np.testing.assert_array_equal(back.array[n - 1 - k], scan.array[k])


# --------------------------------------------------------------------------------
# Slice order
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["descending", "shuffled"])
def test_slices_sorted_by_position_not_instance_number_or_file_name(tmp_path, helpers, order):
    scan = helpers.ct_scan(shape=(7, 8, 10))
    files = write_dicom_series(scan, tmp_path / "ct", patient_id="p1", instance_number_order=order, seed=3)
    numbers = [int(pydicom.dcmread(p).InstanceNumber) for p in files]
    assert numbers != sorted(numbers)
    rng = np.random.default_rng(1)
    for path, name in zip(files, rng.permutation(len(files))):
        os.rename(path, path.with_name(f"x{name:03d}"))  # file names shuffled too
    back = read_dicom_series(tmp_path / "ct")
    np.testing.assert_array_equal(helpers.slice_markers(back.array), np.arange(7))
    np.testing.assert_array_equal(back.array, scan.array)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)


def test_descending_positions_give_ascending_slice_axis(tmp_path, helpers):
    """A stack written with z decreasing (as GE does) reads back bottom-up with a +normal slice axis."""
    affine = helpers.AXIAL_LPS_AFFINE.copy()
    affine[:3, 2] *= -1
    affine[:3, 0] *= -1  # keep det > 0 so the reader's order is predictable: x and z flipped
    scan = helpers.ct_scan(affine=affine)
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    back = read_dicom_series(tmp_path / "ct")
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)
    assert back.affine[2, 2] < 0


def test_files_without_preamble_are_read(tmp_path, helpers):
    """Old files: a bare implicit-VR dataset, no 128-byte preamble, no 'DICM', no file meta."""
    scan = helpers.ct_scan()
    files = write_dicom_series(scan, tmp_path / "ct", patient_id="p1", transfer_syntax="implicit_little")
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(path, implicit_vr=True, little_endian=True)
        assert path.read_bytes()[:2] == b"\x08\x00"
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "ct").array, scan.array)


# --------------------------------------------------------------------------------
# Series discovery and selection
# --------------------------------------------------------------------------------


def _two_series(tmp_path, helpers) -> Path:
    folder = tmp_path / "study"
    write_dicom_series(helpers.ct_scan(), folder / "a", patient_id="p1", series_uid="1.2.840.99.1",
                       series_description="arterial")
    write_dicom_series(helpers.ct_scan(seed=1), folder / "b", patient_id="p1", series_uid="1.2.840.99.27",
                       series_description="venous")
    (folder / "README").write_text("not dicom")
    (folder / ".unfinished").mkdir()  # e.g. the temporary folder of an interrupted write
    write_dicom_series(helpers.ct_scan(), folder / ".unfinished" / "c", patient_id="p1", series_uid="1.2.840.99.3")
    return folder


def test_list_series_finds_both_and_skips_other_files(tmp_path, helpers):
    folder = _two_series(tmp_path, helpers)
    _write_non_image(folder / "report.dcm")
    infos = list_series(folder)
    assert [(i.uid, i.description, i.modality, i.n_files) for i in infos] == [
        ("1.2.840.99.1", "arterial", "CT", 5),
        ("1.2.840.99.27", "venous", "CT", 5),
    ]
    assert all(len(i.paths) == 5 for i in infos)


def test_series_selected_by_uid_and_unique_prefix(tmp_path, helpers):
    folder = _two_series(tmp_path, helpers)
    assert read_dicom_series(folder, series="1.2.840.99.1").source["SeriesDescription"] == "arterial"
    assert read_dicom_series(folder, series="1.2.840.99.2").source["SeriesDescription"] == "venous"


def test_empty_series_uid_grouped_by_geometry(tmp_path, helpers):
    folder = tmp_path / "study"
    write_dicom_series(helpers.ct_scan(), folder / "a", patient_id="p1", series_uid="", study_uid="1.2.3")
    write_dicom_series(helpers.ct_scan(shape=(5, 8, 12)), folder / "b", patient_id="p1", series_uid="",
                       study_uid="1.2.3")
    infos = list_series(folder)
    assert len(infos) == 2 and all(i.uid == "" and i.key.startswith("group-") for i in infos)
    chosen = read_dicom_series(folder, series=infos[1].key)
    assert chosen.shape == (5, 8, int(pydicom.dcmread(infos[1].paths[0]).Columns))
    assert chosen.source["SeriesInstanceUID"] == ""


# --------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------


def test_write_is_atomic_and_overwrites(tmp_path, helpers):
    target = tmp_path / "ct"
    write_dicom_series(helpers.ct_scan(), target, patient_id="p1")
    second = helpers.ct_scan(seed=5)
    write_dicom_series(second, target, patient_id="p1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct"]
    assert len(list(target.iterdir())) == 5
    np.testing.assert_array_equal(read_dicom_series(target).array, second.array)


def test_failed_write_leaves_nothing(tmp_path, helpers):
    scan = helpers.ct_scan()
    scan.array = scan.array.astype(np.float32)
    scan.array[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_replace_folder_with_other_files(tmp_path, helpers):
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="notes.txt"):
        write_dicom_series(helpers.ct_scan(), tmp_path / "ct", patient_id="p1")
    assert (tmp_path / "ct" / "notes.txt").exists()


# --------------------------------------------------------------------------------
# Bad inputs: each builder returns (folder to read, path the message must name, word it must hold)
# --------------------------------------------------------------------------------


def _written(tmp_path, helpers, **kwargs) -> tuple[Path, list[Path]]:
    folder = tmp_path / "ct"
    return folder, write_dicom_series(helpers.ct_scan(shape=(6, 8, 10), **kwargs), folder, patient_id="p1")


def _missing_slice(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    files[3].unlink()
    return folder, folder, "missing"


def _uneven_gap(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    _edit(files[3], ImagePositionPatient=[-10.0, -20.0, -30.0 + 3 * 2.5 + 0.3])
    return folder, folder, "gap"


def _duplicate_position(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    shutil.copy(files[2], folder / "copy.dcm")
    return folder, folder, "duplicate"


def _gantry_tilt(tmp_path, helpers):
    affine = helpers.AXIAL_LPS_AFFINE.copy()
    affine[1, 2] = 2.5 * np.tan(np.radians(15))  # each slice shifted in-plane (y) by 0.67 mm: 15 degrees
    folder, _ = _written(tmp_path, helpers, affine=affine)
    return folder, folder, "gantry tilt of 15.00 degrees"


def _differing_orientation(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    _edit(files[2], ImageOrientationPatient=[1, 0, 0, 0, 0.99, 0.141067])
    return folder, folder, "ImageOrientationPatient differs"


def _differing_size(tmp_path, helpers):
    folder = tmp_path / "ct"
    write_dicom_series(helpers.ct_scan(shape=(3, 8, 10)), folder / "a", patient_id="p1", series_uid="1.2.3")
    affine = helpers.AXIAL_LPS_AFFINE.copy()
    affine[2, 3] += 3 * 2.5
    write_dicom_series(helpers.ct_scan(shape=(3, 8, 12), affine=affine), folder / "b", patient_id="p1",
                       series_uid="1.2.3")
    return folder, folder, "Rows/Columns differ"


def _truncated_pixels(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    data = files[4].read_bytes()
    files[4].write_bytes(data[:-40])
    return folder, files[4], "truncated"


def _truncated_header(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    files[1].write_bytes(files[1].read_bytes()[:400])
    return folder, files[1], "truncated"


def _no_image(tmp_path, helpers):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "README.md").write_text("# nothing here")
    _write_non_image(folder / "sr.dcm")
    return folder, folder, "no DICOM image series found"


def _not_a_folder(tmp_path, helpers):
    return tmp_path / "nowhere", tmp_path / "nowhere", "does not exist"


def _two_series_none_chosen(tmp_path, helpers):
    folder = _two_series(tmp_path, helpers)
    return folder, folder, "--series"


def _unknown_modality(tmp_path, helpers):
    folder, files = _written(tmp_path, helpers)
    for path in files:
        _edit(path, Modality="PT")
    return folder, folder, "neither CT nor MR"


BAD_INPUTS = [
    _missing_slice,
    _uneven_gap,
    _duplicate_position,
    _gantry_tilt,
    _differing_orientation,
    _differing_size,
    _truncated_pixels,
    _truncated_header,
    _no_image,
    _not_a_folder,
    _two_series_none_chosen,
    _unknown_modality,
]


@pytest.mark.parametrize("build", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_raises_input_error_naming_path(tmp_path, helpers, build):
    folder, named, word = build(tmp_path, helpers)
    with pytest.raises(InputError) as info:
        read_dicom_series(folder)
    message = str(info.value)
    assert str(named) in message
    assert word in message


def test_two_series_message_lists_both(tmp_path, helpers):
    folder = _two_series(tmp_path, helpers)
    with pytest.raises(InputError) as info:
        read_dicom_series(folder)
    assert "1.2.840.99.1" in str(info.value) and "venous" in str(info.value) and "5 files" in str(info.value)
    with pytest.raises(InputError, match="matches no series"):
        read_dicom_series(folder, series="9.9")
    with pytest.raises(InputError, match="matches several series"):
        read_dicom_series(folder, series="1.2.840.99")


def test_small_tilt_within_tolerance_is_accepted(tmp_path, helpers):
    affine = helpers.AXIAL_LPS_AFFINE.copy()
    affine[1, 2] = 1e-3  # 0.005 mm drift over the stack, far below 0.1 pixel
    scan = helpers.ct_scan(affine=affine)
    write_dicom_series(scan, tmp_path / "ct", patient_id="p1")
    assert read_dicom_series(tmp_path / "ct").shape == scan.shape

