"""DICOM Segmentation objects (binary SEG) of a predicted pancreas mask, written with highdicom.

A mask ``[Z, Y, X]`` is in the slice order of :func:`~pancreas_seg.io.dicom.read_dicom_series`:
slices sorted by ImagePositionPatient projected on the slice normal (never by file name or
InstanceNumber), rows and columns as the DICOM pixel array. :func:`source_slices` gives the
source series' headers in that same order, so frame ``k`` of the mask references the SOP
instance lying at slice position ``k``.

:func:`check_seg_source` reads and checks the source headers before anything expensive runs
(prediction): the UIDs a SEG must reference are present, the patient and study attributes
highdicom copies are valid, and the exact SeriesInstanceUID of a ``--series`` prefix is known.
Type 2 attributes (may be empty, must be present) that a source header lacks are given empty,
on copies.

:func:`read_dicom_seg` goes the other way for any binary or fractional SEG (ours or another
tool's, e.g. dcmqi), with highdicom's reader: frames are placed on the source grid by the SOP
instances they reference, or, when they do not all reference one, by their ImagePositionPatient;
segments that overlap are refused (a label map holds one segment per voxel).
"""
from __future__ import annotations

import copy
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage
from pydicom.valuerep import DA, TM

from pancreas_seg import __version__
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write
from pancreas_seg.io.dicom import SeriesInfo, resolve_series
from pancreas_seg.io.dicom_geometry import along_normal, slice_normal, slice_order, swap_lps_ras

logger = logging.getLogger(__name__)

PACKAGE_NAME = "pancreas_seg"
SEGMENT_LABEL = "Pancreas"
SEGMENT_NUMBER = 1
PANCREAS_CODE = codes.SCT.Pancreas  # SCT 15776009
CATEGORY_CODE = codes.SCT.AnatomicalStructure  # SCT 91723000
ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence  # DCM 123110
SERIES_NUMBER = 900  # SEG series number; any value not used by the source study's usual numbering
INSTANCE_NUMBER = 1
POSITION_TOL_MM = 0.01  # a frame lies on source slice k when its position is this close along the normal
GRID_TOL_MM = 0.1  # source slice k must lie this close to the Scan affine's slice k
FRACTIONAL_CUT = 0.5  # a fractional SEG's voxel is inside where its value exceeds this share of the maximum
DEFAULT_CHARACTER_SET = "ISO_IR 100"  # given to source headers whose SpecificCharacterSet is empty
# Type 1 (present and not empty) in every source header: what the SEG references or copies.
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
SHARED_UIDS = ("StudyInstanceUID", "FrameOfReferenceUID")  # one study and one frame of reference per series
# Type 2 patient/study attributes highdicom copies from the first source header: given empty when absent.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                "AccessionNumber", "ReferringPhysicianName")
SINGLE_VALUED = ("PatientName", "PatientID", "ReferringPhysicianName", "StudyID", "AccessionNumber")
PARSED = {"StudyDate": DA, "PatientBirthDate": DA, "StudyTime": TM}  # values highdicom parses


@dataclass(frozen=True)
class SegSource:
    """A source series checked for a DICOM SEG (:func:`check_seg_source`).

    Attributes:
        series: the series, with its exact SeriesInstanceUID (``series.uid``) even when it was
            selected by a prefix.
        headers: checked copies of its headers (no pixel data) in Scan slice order, type 2 gaps filled.
    """

    series: SeriesInfo
    headers: tuple[Dataset, ...]


def _sorted_headers(info: SeriesInfo) -> list[tuple[Path, Dataset]]:
    """``(path, header)`` of a series' files in Scan slice order."""
    try:
        pairs = [(path, pydicom.dcmread(path, stop_before_pixels=True)) for path in info.paths]
    except Exception as exc:  # noqa: BLE001 - list_series read them; a file changed since
        raise InputError(info.paths[0].parent, f"cannot read the series' headers again ({exc})") from exc
    return [pairs[i] for i in slice_order([ds for _, ds in pairs])]


def source_slices(folder: str | os.PathLike, series: str | None = None) -> list[Dataset]:
    """Headers (no pixel data) of the image series in ``folder``, in :class:`Scan` slice order.

    Args:
        folder: folder of one DICOM image series (searched recursively, as the series reader).
        series: SeriesInstanceUID, a unique prefix of it, or the ``group-`` key, when the folder
            holds several.

    Returns:
        one dataset per slice, sorted by ImagePositionPatient along the slice normal (ascending),
        i.e. index ``k`` is slice ``k`` of the Scan that ``read_dicom_series`` returns.

    Raises:
        InputError: no series, several series and none chosen, or unreadable files.
    """
    return [ds for _, ds in _sorted_headers(resolve_series(folder, series))]


def _tidy(ds: Dataset) -> Dataset:
    """A copy of a source header that highdicom accepts: an empty SpecificCharacterSet is refused,
    and the type 2 attributes it copies must be present (empty is fine)."""
    ds = copy.copy(ds)
    if not ds.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = DEFAULT_CHARACTER_SET
    for keyword in COPIED_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _check_value(path: str, ds: Dataset, keyword: str) -> None:
    element = ds[keyword]
    shown = "\\".join(map(str, element.value)) if element.VM > 1 else str(element.value)  # as stored
    if keyword in SINGLE_VALUED and element.VM > 1:
        raise InputError(path, f"{keyword} '{shown}' has {element.VM} values; a DICOM SEG copies it and allows one")
    if keyword in PARSED and element.value not in (None, ""):
        try:
            PARSED[keyword](shown)
        except ValueError as exc:
            raise InputError(path, f"{keyword} '{shown}' is not a valid DICOM {element.VR} value ({exc})") from None


def _checked(pairs: Sequence[tuple[str, Dataset]]) -> list[Dataset]:
    """Check source headers (Scan slice order) for a SEG; returns tidy copies highdicom accepts.

    Raises:
        InputError: naming the file and the attribute: a UID of ``REQUIRED_UIDS`` missing or empty,
            a study or frame of reference differing inside the series, a multi-valued or invalid
            attribute of ``COPIED_TYPE2`` in the first header (the one highdicom copies).
    """
    first_path, first = pairs[0]
    for path, ds in pairs:
        missing = [keyword for keyword in REQUIRED_UIDS if not str(ds.get(keyword, "") or "").strip()]
        if missing:
            raise InputError(path, f"{', '.join(missing)} missing or empty; a DICOM SEG must reference it")
        for keyword in SHARED_UIDS:
            if ds.get(keyword) != first.get(keyword):
                raise InputError(path, f"{keyword} differs from {first_path}'s inside one series")
    for keyword in COPIED_TYPE2:
        if keyword in first:
            _check_value(first_path, first, keyword)
    return [_tidy(ds) for _, ds in pairs]


def _build_seg(mask: np.ndarray, sources: Sequence[Dataset], series_description: str) -> hd.seg.Segmentation:
    """The highdicom SEG of ``mask`` ``[Z, Y, X]`` (Z = len(sources)), empty frames omitted."""
    algorithm = hd.AlgorithmIdentificationSequence(name=PACKAGE_NAME, family=ALGORITHM_FAMILY, version=__version__)
    description = hd.seg.SegmentDescription(
        segment_number=SEGMENT_NUMBER, segment_label=SEGMENT_LABEL, segmented_property_category=CATEGORY_CODE,
        segmented_property_type=PANCREAS_CODE, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    with warnings.catch_warnings():
        # highdicom warns about source attributes it copies as they are (e.g. one-component names)
        warnings.simplefilter("ignore", UserWarning)
        return hd.seg.Segmentation(
            source_images=list(sources), pixel_array=(mask != 0).astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
            series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=INSTANCE_NUMBER, manufacturer=PACKAGE_NAME, manufacturer_model_name=PACKAGE_NAME,
            software_versions=__version__, device_serial_number="0", series_description=series_description,
            omit_empty_frames=bool(mask.any()))


def check_seg_source(folder: str | os.PathLike, series: str | None = None) -> SegSource:
    """Check, before predicting, that a DICOM SEG can be derived from the series in ``folder``.

    Reads the headers only, checks them (see :func:`write_dicom_seg`'s Raises) and builds a
    one-frame SEG of the first slice as the writer will, so that nothing fails after prediction.

    Args:
        folder: folder of the source series (searched recursively).
        series: SeriesInstanceUID, unique prefix or ``group-`` key; None for a single series.

    Returns:
        the series (exact UID in ``.series.uid``) and its checked headers; pass it to
        :func:`write_dicom_seg` as ``source`` to write without reading the headers again.

    Raises:
        InputError: series not found or ambiguous; a header unfit for a SEG (file and attribute named).
    """
    info = resolve_series(folder, series)
    pairs = _sorted_headers(info)
    headers = _checked([(str(path), ds) for path, ds in pairs])
    first = headers[0]
    try:
        _build_seg(np.zeros((1, int(first.Rows), int(first.Columns)), np.uint8), headers[:1], "check")
    except Exception as exc:  # noqa: BLE001 - whatever else highdicom refuses in the source header
        raise InputError(pairs[0][0], f"cannot derive a DICOM SEG from this series ({exc})") from exc
    return SegSource(series=info, headers=tuple(headers))


def _check_geometry(mask: np.ndarray, sources: Sequence[Dataset], affine: np.ndarray | None, where: str) -> None:
    if mask.ndim != 3:
        raise ValueError(f"mask must be [Z, Y, X], got shape {mask.shape}")
    first = sources[0]
    expected = (len(sources), int(first.Rows), int(first.Columns))
    if mask.shape != expected:
        raise InputError(where, f"mask shape [Z,Y,X] {mask.shape} does not match the source series {expected}")
    if affine is None:
        return
    lps = swap_lps_ras(affine)[:3]
    for k, ds in enumerate(sources):
        expected_ipp = lps[:, 3] + k * lps[:, 2]
        if np.linalg.norm(np.asarray(ds.ImagePositionPatient, dtype=float) - expected_ipp) > GRID_TOL_MM:
            raise InputError(where, f"slice {k} of the mask's grid does not lie on source slice "
                                    f"{ds.SOPInstanceUID} (ImagePositionPatient differs)")


def write_dicom_seg(mask: np.ndarray, source: str | os.PathLike | SegSource | Sequence[Dataset],
                    path: str | os.PathLike, *, series: str | None = None, affine: np.ndarray | None = None,
                    series_description: str = "pancreas_seg segmentation") -> Path:
    """Write a binary DICOM SEG with one segment "Pancreas" (SCT 15776009), atomically.

    Args:
        mask: ``[Z, Y, X]`` uint8/bool, nonzero = pancreas, in Scan slice order (module docstring).
        source: the source series' folder, its :func:`check_seg_source` result, or its datasets
            (any order; they are sorted here).
        path: output ``.dcm`` file; parent folders are created.
        series: SeriesInstanceUID (or unique prefix) when ``source`` is a folder holding several series.
        affine: the Scan's (column, row, slice) -> RAS affine; when given, every source slice
            position is checked against it.
        series_description: SeriesDescription of the SEG.

    Returns:
        ``path``. Frame ``k`` references the source instance at slice position ``k``; empty frames
        are omitted (a reader fills them with 0). An all-empty mask is written with every frame
        (empty): DICOM needs at least one frame, and a SEG referencing the whole series keeps
        saying which slices were looked at.

    Raises:
        InputError: the source series is missing or does not match the mask's shape or grid; a
            source header lacks a UID the SEG must reference (SOP class and instance, study,
            series, FrameOfReferenceUID), or its PatientName, PatientID, ReferringPhysicianName,
            StudyID or AccessionNumber has several values, or its StudyDate, StudyTime or
            PatientBirthDate is invalid (the file and the attribute are named).
    """
    path = Path(path)
    if isinstance(source, SegSource):
        sources, where = list(source.headers), str(source.series.paths[0].parent)
    elif isinstance(source, (str, os.PathLike)):
        sources, where = list(check_seg_source(source, series).headers), os.fspath(source)
    else:
        ordered = [source[i] for i in slice_order(source)]
        sources = _checked([(str(getattr(ds, "filename", None) or path), ds) for ds in ordered])
        where = str(path)
    mask = np.asarray(mask)
    _check_geometry(mask, sources, affine, where)
    if not mask.any():
        logger.info("%s: the mask is empty; the DICOM SEG holds %d empty frames", path, len(sources))
    seg = _build_seg(mask, sources, series_description)
    atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    logger.debug("wrote DICOM SEG %s (%d frames)", path, int(seg.NumberOfFrames))
    return path


def _frame_item(seg: Dataset, index: int, keyword: str) -> Dataset | None:
    """The functional group ``keyword`` of frame ``index``: per-frame first, then shared."""
    for groups in (seg.get("PerFrameFunctionalGroupsSequence"), seg.get("SharedFunctionalGroupsSequence")):
        if not groups:
            continue
        group = groups[index] if groups is seg.get("PerFrameFunctionalGroupsSequence") else groups[0]
        if keyword in group:
            return group[keyword].value[0]
    return None


def _referenced_uid(seg: Dataset, index: int) -> str | None:
    derivation = _frame_item(seg, index, "DerivationImageSequence")
    if derivation is None or not derivation.get("SourceImageSequence"):
        return None
    return str(derivation.SourceImageSequence[0].ReferencedSOPInstanceUID)


def _read_frames(pixels: Callable[..., np.ndarray], path: Path, **options) -> np.ndarray:
    """``pixels(**options)``, highdicom's refusals (overlapping segments, frames it cannot place) as InputError."""
    try:
        return pixels(**options)
    except (RuntimeError, ValueError, KeyError) as exc:
        if "overlap" in str(exc):
            numbers = ", ".join(map(str, options["segment_numbers"]))
            raise InputError(path, f"segments {numbers} overlap; a label map holds one segment per voxel "
                                   f"(read one segment at a time)") from None
        raise InputError(path, f"cannot read the SEG's frames ({exc})") from exc


def _label_map(seg: hd.seg.Segmentation, pixels: Callable[..., np.ndarray], numbers: Sequence[int],
               relabel: bool, path: Path) -> np.ndarray:
    """``[N, Y, X]`` uint8 label map of segments ``numbers`` from highdicom's stack reader
    ``pixels(**options)`` (by source instance or by volume position); overlapping segments refused.

    Binary SEGs are combined by highdicom, which refuses overlaps; fractional ones are read one
    segment at a time, cut at :data:`FRACTIONAL_CUT` of the maximum, and checked here.
    """
    if seg.segmentation_type != hd.seg.SegmentationTypeValues.FRACTIONAL:
        return _read_frames(pixels, path, segment_numbers=list(numbers), combine_segments=True, relabel=relabel,
                            dtype=np.uint8)
    out: np.ndarray | None = None
    for index, number in enumerate(numbers):
        fraction = _read_frames(pixels, path, segment_numbers=[number], combine_segments=False,
                                rescale_fractional=True)
        inside = fraction[..., 0] > FRACTIONAL_CUT
        if out is None:
            out = np.zeros(inside.shape, np.uint8)
        if np.any(inside & (out > 0)):
            raise InputError(path, f"segment {number} overlaps another segment; a label map holds one segment "
                                   f"per voxel (read one segment at a time)")
        out[inside] = index + 1 if relabel else number
    return out


def _on_source_slices(seg: hd.seg.Segmentation, sources: Sequence[Dataset], numbers: Sequence[int], relabel: bool,
                      path: Path, source_folder: str | os.PathLike) -> np.ndarray:
    """The label map ``[Z, Y, X]`` of a SEG whose frames do not all reference a source instance:
    highdicom's volume of the frames, each of its slices placed at the source slice it lies on."""
    geometry = seg.get_volume_geometry(allow_missing_positions=True)
    if geometry is None:
        raise InputError(path, "its frames reference no instance of the source series and do not form "
                               "a regularly spaced volume")
    volume = _label_map(seg, lambda **options: seg.get_volume(allow_missing_positions=True, **options).array,
                        numbers, relabel, path)
    normal = slice_normal(sources[0].ImageOrientationPatient)
    along = along_normal(sources)
    affine = np.asarray(geometry.affine, dtype=float)  # (slice, row, column) index -> LPS mm
    out = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), np.uint8)
    for index, frame in enumerate(volume):
        if not frame.any():
            continue
        offset = np.abs(along - (affine[:3, 3] + index * affine[:3, 0]) @ normal)
        if offset.min() > POSITION_TOL_MM:
            raise InputError(path, f"slice {index + 1} of its volume lies on no slice of the source series "
                                   f"{source_folder}")
        out[int(np.argmin(offset))] = frame
    return out


def read_dicom_seg(path: str | os.PathLike, source_folder: str | os.PathLike, *, series: str | None = None,
                   segment: int | None = None) -> np.ndarray:
    """A DICOM SEG as a label map ``[Z, Y, X]`` uint8 on its source series' grid (Scan slice order).

    Read with highdicom: frames that all reference instances of the source series are placed by
    the instance they reference, others by their ImagePositionPatient.

    Args:
        path: the SEG file (binary or fractional; fractional frames are cut at half the maximum).
        source_folder: folder of the source image series.
        series: SeriesInstanceUID when ``source_folder`` holds several series.
        segment: keep only this segment number, as 1; ``None`` = every segment, voxel value =
            segment number.

    Raises:
        InputError: not a SEG, a size different from the source, no such segment, segments that
            overlap (a label map holds one per voxel), or frames that neither reference a source
            instance nor lie at a source slice position.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(path, f"not a readable DICOM file ({exc})") from exc
    if str(header.get("SOPClassUID", "")) != SegmentationStorage:
        raise InputError(path, f"not a DICOM Segmentation object (SOP class {header.get('SOPClassUID', 'missing')})")
    sources = source_slices(source_folder, series)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if (int(header.Rows), int(header.Columns)) != (rows, cols):
        raise InputError(path, f"frame size {header.Rows}x{header.Columns} differs from the source series' "
                               f"{rows}x{cols}")
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001 - whatever highdicom refuses in another tool's SEG
        raise InputError(path, f"not a readable DICOM SEG ({exc})") from exc
    present = list(seg.segment_numbers)
    if segment is not None and segment not in present:
        raise InputError(path, f"has no segment {segment} (segments {', '.join(map(str, present))})")
    numbers = present if segment is None else [segment]
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    known = set(uids)
    if all(_referenced_uid(seg, index) in known for index in range(int(seg.NumberOfFrames))):
        return _label_map(seg, lambda **options: seg.get_pixels_by_source_instance(
            uids, ignore_spatial_locations=True, assert_missing_frames_are_empty=True, **options),
            numbers, segment is not None, path)
    return _on_source_slices(seg, sources, numbers, segment is not None, path, source_folder)
