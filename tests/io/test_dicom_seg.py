"""DICOM SEG writing and reading: round trip on synthetic series whose file order differs from the slice
order, and compatibility with a SEG made by dcmqi (``../shared/data/real/dcmqi_ct_3slice``)."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage

from pancreas_seg.errors import InputError
from pancreas_seg.io.dicom import read_dicom_series
from pancreas_seg.io.dicom_seg import check_seg_source, read_dicom_seg, source_slices, write_dicom_seg
from pancreas_seg.io.dicom_write import write_dicom_series

DCMQI = "dcmqi_ct_3slice"


def _slice_coded_mask(shape) -> np.ndarray:
    """Slice k holds k + 1 foreground pixels in row 0 (k = 0 empty): the slice order is visible."""
    mask = np.zeros(shape, np.uint8)
    for k in range(shape[0]):
        mask[k, 0, :k] = 1
    mask[:, 3:5, 2:6] = 1
    return mask


@pytest.mark.parametrize("order", ["shuffled", "descending"])
def test_round_trip_follows_slice_positions_not_file_order(tmp_path, helpers, order):
    scan = helpers.ct_scan(shape=(5, 8, 10), affine=helpers.rotation_affine())
    folder = tmp_path / "series"
    write_dicom_series(scan, folder, patient_id="P", instance_number_order=order, seed=3)
    read = read_dicom_series(folder)
    mask = _slice_coded_mask(read.shape)
    path = write_dicom_seg(mask, folder, tmp_path / "out" / "seg.dcm", affine=read.affine)
    np.testing.assert_array_equal(read_dicom_seg(path, folder), mask)

    seg = pydicom.dcmread(path)
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Pancreas"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "15776009"
    assert segment.SegmentAlgorithmName == "pancreas_seg"
    # every frame references the source instance that lies at the frame's position
    by_uid = {ds.SOPInstanceUID: ds for ds in source_slices(folder)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                                   np.asarray(by_uid[uid].ImagePositionPatient, float), atol=1e-3)


def test_writer_refuses_a_mask_of_another_grid(tmp_path, helpers):
    scan = helpers.ct_scan(shape=(3, 8, 10))
    write_dicom_series(scan, tmp_path / "s", patient_id="P")
    with pytest.raises(InputError, match="does not match the source series"):
        write_dicom_seg(np.zeros((4, 8, 10), np.uint8), tmp_path / "s", tmp_path / "seg.dcm")
    shifted = scan.affine.copy()
    shifted[2, 3] += 5.0
    with pytest.raises(InputError, match="does not lie on source slice"):
        write_dicom_seg(np.zeros((3, 8, 10), np.uint8), tmp_path / "s", tmp_path / "seg.dcm", affine=shifted)
    assert not (tmp_path / "seg.dcm").exists()


def test_reader_refuses_a_non_seg_file(tmp_path, helpers):
    files = write_dicom_series(helpers.ct_scan(shape=(2, 4, 4)), tmp_path / "s", patient_id="P")
    with pytest.raises(InputError, match="not a DICOM Segmentation"):
        read_dicom_seg(files[0], tmp_path / "s")


# --- dcmqi ------------------------------------------------------------------------

def _read_nrrd(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """Minimal NRRD reader: gzip or raw encoding, little endian short/uchar, 3D; array ``[k, j, i]``."""
    raw = path.read_bytes()
    head, _, data = raw.partition(b"\n\n")
    fields = dict(re.match(r"([^:]+):\s*(.*)", line).groups()
                  for line in head.decode().splitlines()[1:] if not line.startswith("#") and ":" in line)
    dtype = {"short": "<i2", "uchar": "u1", "unsigned char": "u1", "int16": "<i2"}[fields["type"]]
    if fields["encoding"] == "gzip":
        data = gzip.decompress(data)
    sizes = [int(n) for n in fields["sizes"].split()]
    return np.frombuffer(data, dtype).reshape(sizes[::-1]), fields


@pytest.fixture
def dcmqi(real_data) -> Path:
    folder = real_data / DCMQI
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    return folder


def test_dcmqi_seg_reads_onto_the_source_grid_like_the_nrrd(dcmqi):
    mask = read_dicom_seg(dcmqi / "liver_seg.dcm", dcmqi / "slices")
    nrrd, fields = _read_nrrd(dcmqi / "liver_seg.nrrd")
    scan = read_dicom_series(dcmqi / "slices")
    # the NRRD (LPS) has i along +x, j along +y, k along +z: its k = 0 is our slice 0 when origins agree
    origin_lps = np.array([float(v) for v in re.findall(r"[-\d.eE+]+", fields["space origin"])])
    first_slice_lps = np.diag([-1.0, -1.0, 1.0]) @ scan.affine[:3, 3]
    np.testing.assert_allclose(origin_lps, first_slice_lps, atol=1e-3)
    assert fields["space"] == "left-posterior-superior" and scan.affine[2, 2] > 0
    assert mask.shape == scan.shape == nrrd.shape
    assert mask.sum() > 0
    np.testing.assert_array_equal(mask, (nrrd != 0).astype(np.uint8))


def test_our_seg_round_trips_on_the_dcmqi_series(dcmqi, tmp_path):
    slices = dcmqi / "slices"
    mask = read_dicom_seg(dcmqi / "liver_seg.dcm", slices)
    scan = read_dicom_series(slices)
    path = write_dicom_seg(mask, slices, tmp_path / "seg.dcm", affine=scan.affine)
    np.testing.assert_array_equal(read_dicom_seg(path, slices), mask)
    seg = pydicom.dcmread(path)
    referenced = {item.ReferencedSOPInstanceUID
                  for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sorted(slices.iterdir())}
    assert referenced == sources and len(sources) == 3
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        next(slices.iterdir()), stop_before_pixels=True).SeriesInstanceUID


# --- source preconditions, checked before prediction ---------------------------------


def _series_with(tmp_path: Path, helpers, edit=None, **kwargs) -> Path:
    """A 3-slice series whose headers ``edit(ds)`` changed, file by file."""
    folder = tmp_path / "s"
    for path in write_dicom_series(helpers.ct_scan(shape=(3, 8, 10)), folder, patient_id="P", **kwargs):
        if edit is not None:
            ds = pydicom.dcmread(path)
            edit(ds)
            ds.save_as(path)
    return folder


def _delete(*keywords):
    def edit(ds):
        for keyword in keywords:
            delattr(ds, keyword)
    return edit


def test_absent_type2_attributes_are_written_empty(tmp_path, helpers):
    folder = _series_with(tmp_path, helpers, _delete("PatientName", "PatientID", "StudyDate", "StudyTime"))
    source = check_seg_source(folder)
    mask = _slice_coded_mask((3, 8, 10))
    path = write_dicom_seg(mask, source, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    assert seg.PatientName == "" and seg.PatientID == "" and seg.StudyDate == ""
    np.testing.assert_array_equal(read_dicom_seg(path, folder), mask)
    assert "PatientName" not in pydicom.dcmread(next(folder.iterdir()))  # the source files are untouched


@pytest.mark.parametrize("edit, words", [
    (_delete("FrameOfReferenceUID"), "FrameOfReferenceUID missing or empty"),
    (lambda ds: setattr(ds, "StudyInstanceUID", ""), "StudyInstanceUID missing or empty"),
    (lambda ds: setattr(ds, "PatientName", "A^B\\C^D"), "PatientName 'A^B\\C^D' has 2 values"),
    (lambda ds: setattr(ds, "StudyDate", "2020-13-45"), "StudyDate '2020-13-45' is not a valid DICOM DA value"),
    (lambda ds: setattr(ds, "StudyTime", "25:99"), "StudyTime '25:99' is not a valid DICOM TM value"),
], ids=["no-frame-of-reference", "empty-study-uid", "two-patient-names", "bad-study-date", "bad-study-time"])
def test_unfit_source_is_refused_before_prediction_naming_file_and_attribute(tmp_path, helpers, edit, words):
    folder = _series_with(tmp_path, helpers, edit)
    with pytest.raises(InputError) as info:
        check_seg_source(folder)
    assert words in str(info.value)
    assert info.value.path is not None and Path(info.value.path).parent == folder
    with pytest.raises(InputError, match=re.escape(words)):  # the writer checks the same
        write_dicom_seg(np.zeros((3, 8, 10), np.uint8), folder, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_series_prefix_resolves_to_the_exact_uid(tmp_path, helpers):
    folder = tmp_path / "two"
    write_dicom_series(helpers.ct_scan(shape=(3, 8, 10)), folder / "a", patient_id="P", series_uid="1.2.826.0.1.77")
    write_dicom_series(helpers.ct_scan(shape=(2, 8, 10)), folder / "b", patient_id="P", series_uid="1.2.826.0.1.88")
    source = check_seg_source(folder, "1.2.826.0.1.7")
    assert source.series.uid == "1.2.826.0.1.77" and len(source.headers) == 3
    mask = _slice_coded_mask((3, 8, 10))
    path = write_dicom_seg(mask, folder, tmp_path / "seg.dcm", series="1.2.826.0.1.7")
    assert pydicom.dcmread(path).ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.77"
    np.testing.assert_array_equal(read_dicom_seg(path, folder, series="1.2.826.0.1.7"), mask)
    with pytest.raises(InputError, match="matches several series"):
        check_seg_source(folder, "1.2.826")


def test_empty_frames_are_omitted_and_an_empty_mask_keeps_every_frame(tmp_path, helpers):
    folder = _series_with(tmp_path, helpers)
    partial = np.zeros((3, 8, 10), np.uint8)
    partial[1, 2:4, 3:5] = 1
    path = write_dicom_seg(partial, folder, tmp_path / "partial.dcm")
    assert int(pydicom.dcmread(path).NumberOfFrames) == 1
    np.testing.assert_array_equal(read_dicom_seg(path, folder), partial)
    empty = np.zeros((3, 8, 10), np.uint8)
    path = write_dicom_seg(empty, folder, tmp_path / "empty.dcm")
    assert int(pydicom.dcmread(path).NumberOfFrames) == 3  # DICOM needs a frame; all reference the series
    np.testing.assert_array_equal(read_dicom_seg(path, folder), empty)


# --- SEGs of other shapes, read through highdicom ------------------------------------

def _other_tool_seg(folder: Path, segments: np.ndarray, path: Path, fractional: bool = False) -> Path:
    """A SEG of ``segments`` ``[Z, Y, X, S]`` (Scan slice order) on the series in ``folder``, one
    segment per channel, as another tool might write it (empty frames kept)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="other", family=codes.cid7162.ArtificialIntelligence,
                                                   version="1")
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=f"organ {number}", segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for number in range(1, segments.shape[-1] + 1)]
    kind = hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(
        source_images=source_slices(folder), pixel_array=segments, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="other", manufacturer_model_name="other",
        software_versions="1", device_serial_number="1", omit_empty_frames=False)
    seg.save_as(path)
    return path


def _two_segments(overlap: bool) -> np.ndarray:
    """``[3, 8, 10, 2]``: segment 1 in rows 1..3, segment 2 in rows 3..5 (sharing row 3 when ``overlap``)."""
    segments = np.zeros((3, 8, 10, 2), np.uint8)
    segments[:, 1:4, 2:6, 0] = 1
    segments[:, 3 if overlap else 4:6, 2:6, 1] = 1
    return segments


def test_overlapping_segments_are_refused_naming_the_file(tmp_path, helpers):
    folder = _series_with(tmp_path, helpers)
    path = _other_tool_seg(folder, _two_segments(overlap=True), tmp_path / "overlap.dcm")
    with pytest.raises(InputError, match="segments 1, 2 overlap") as info:
        read_dicom_seg(path, folder)
    assert info.value.path == str(path)
    # one segment at a time is a label map
    np.testing.assert_array_equal(read_dicom_seg(path, folder, segment=2), _two_segments(True)[..., 1])


def test_segments_that_do_not_overlap_are_one_label_map(tmp_path, helpers):
    folder = _series_with(tmp_path, helpers)
    segments = _two_segments(overlap=False)
    path = _other_tool_seg(folder, segments, tmp_path / "two.dcm")
    np.testing.assert_array_equal(read_dicom_seg(path, folder), segments[..., 0] + 2 * segments[..., 1])
    with pytest.raises(InputError, match="has no segment 3 \\(segments 1, 2\\)"):
        read_dicom_seg(path, folder, segment=3)


def test_fractional_seg_is_cut_at_half_and_overlaps_refused(tmp_path, helpers):
    folder = _series_with(tmp_path, helpers)
    fractions = np.zeros((3, 8, 10, 1), np.float32)
    fractions[1, 2, 2:6, 0] = [0.2, 0.5, 0.6, 1.0]  # stored as 51, 128, 153, 255 of 255: 128 > 127.5
    path = _other_tool_seg(folder, fractions, tmp_path / "fractional.dcm", fractional=True)
    expected = np.zeros((3, 8, 10), np.uint8)
    expected[1, 2, 3:6] = 1
    np.testing.assert_array_equal(read_dicom_seg(path, folder), expected)
    overlapping = np.concatenate([fractions, fractions], axis=-1)
    path = _other_tool_seg(folder, overlapping, tmp_path / "fractional_overlap.dcm", fractional=True)
    with pytest.raises(InputError, match="segment 2 overlaps another segment"):
        read_dicom_seg(path, folder)


def test_frames_without_source_references_are_placed_by_position(tmp_path, helpers):
    scan = helpers.ct_scan(shape=(4, 8, 10), affine=helpers.rotation_affine())
    folder = tmp_path / "series"
    write_dicom_series(scan, folder, patient_id="P", instance_number_order="shuffled", seed=1)
    mask = _slice_coded_mask((4, 8, 10))
    mask[1] = 0  # an omitted frame: the frames' volume has a gap
    path = write_dicom_seg(mask, folder, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    seg.save_as(path)
    np.testing.assert_array_equal(read_dicom_seg(path, folder), mask)
    np.testing.assert_array_equal(read_dicom_seg(path, folder, segment=1), mask)
