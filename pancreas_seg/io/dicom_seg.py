"""DICOM Segmentation objects (binary SEG) of a predicted pancreas mask, written with highdicom.

A mask ``[Z, Y, X]`` is in the slice order of :func:`~pancreas_seg.io.dicom.read_dicom_series`:
slices sorted by ImagePositionPatient projected on the slice normal (never by file name or
InstanceNumber), rows and columns as the DICOM pixel array. :func:`source_slices` gives the
source series' headers in that same order, so frame ``k`` of the mask references the SOP
instance lying at slice position ``k``.

:func:`read_dicom_seg` goes the other way for any binary or fractional SEG (ours or another
tool's, e.g. dcmqi): each frame is placed on the source grid by the SOP instance it references,
or, when it references none, by its ImagePositionPatient.
"""
from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage

from pancreas_seg import __version__
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write
from pancreas_seg.io.dicom import list_series
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
DEFAULT_CHARACTER_SET = "ISO_IR 100"  # given to source headers whose SpecificCharacterSet is empty


def source_slices(folder: str | os.PathLike, series: str | None = None) -> list[Dataset]:
    """Headers (no pixel data) of the image series in ``folder``, in :class:`Scan` slice order.

    Args:
        folder: folder of one DICOM image series (searched recursively, as the series reader).
        series: SeriesInstanceUID (or the ``group-`` key) when the folder holds several.

    Returns:
        one dataset per slice, sorted by ImagePositionPatient along the slice normal (ascending),
        i.e. index ``k`` is slice ``k`` of the Scan that ``read_dicom_series`` returns.

    Raises:
        InputError: no series, several series and none chosen, or unreadable files.
    """
    folder = Path(folder)
    infos = list_series(folder)
    if series is not None:
        infos = [info for info in infos if series in (info.uid, info.key)]
    if len(infos) != 1:
        found = "no DICOM image series" if not infos else f"{len(infos)} image series"
        raise InputError(folder, f"{found} found; the DICOM SEG needs exactly one source series")
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in infos[0].paths]
    return [headers[i] for i in slice_order(headers)]


def _tidy(ds: Dataset) -> Dataset:
    """A copy of a source header that highdicom accepts (an empty SpecificCharacterSet is refused)."""
    ds = copy.copy(ds)
    if not ds.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = DEFAULT_CHARACTER_SET
    return ds


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


def write_dicom_seg(mask: np.ndarray, source: str | os.PathLike | Sequence[Dataset], path: str | os.PathLike, *,
                    series: str | None = None, affine: np.ndarray | None = None,
                    series_description: str = "pancreas_seg segmentation") -> Path:
    """Write a binary DICOM SEG with one segment "Pancreas" (SCT 15776009), atomically.

    Args:
        mask: ``[Z, Y, X]`` uint8/bool, nonzero = pancreas, in Scan slice order (module docstring).
        source: the source series' folder, or its datasets (any order; they are sorted here).
        path: output ``.dcm`` file; parent folders are created.
        series: SeriesInstanceUID when ``source`` is a folder holding several series.
        affine: the Scan's (column, row, slice) -> RAS affine; when given, every source slice
            position is checked against it.
        series_description: SeriesDescription of the SEG.

    Returns:
        ``path``. Frame ``k`` references the source instance at slice position ``k``; empty frames
        are omitted (a reader fills them with 0).

    Raises:
        InputError: the source series is missing or does not match the mask's shape or grid.
    """
    path = Path(path)
    if isinstance(source, (str, os.PathLike)):
        sources = source_slices(source, series)
        where = os.fspath(source)
    else:
        sources = [source[i] for i in slice_order(source)]
        where = str(path)
    mask = np.asarray(mask)
    _check_geometry(mask, sources, affine, where)
    sources = [_tidy(ds) for ds in sources]
    algorithm = hd.AlgorithmIdentificationSequence(name=PACKAGE_NAME, family=ALGORITHM_FAMILY, version=__version__)
    description = hd.seg.SegmentDescription(
        segment_number=SEGMENT_NUMBER, segment_label=SEGMENT_LABEL, segmented_property_category=CATEGORY_CODE,
        segmented_property_type=PANCREAS_CODE, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    with warnings.catch_warnings():
        # highdicom warns about source attributes it copies as they are (e.g. one-component names)
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=(mask != 0).astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
            series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=INSTANCE_NUMBER, manufacturer=PACKAGE_NAME, manufacturer_model_name=PACKAGE_NAME,
            software_versions=__version__, device_serial_number="0", series_description=series_description)
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


def read_dicom_seg(path: str | os.PathLike, source_folder: str | os.PathLike, *, series: str | None = None,
                   segment: int | None = None) -> np.ndarray:
    """A DICOM SEG as a label map ``[Z, Y, X]`` uint8 on its source series' grid (Scan slice order).

    Args:
        path: the SEG file (binary or fractional; fractional frames are cut at half the maximum).
        source_folder: folder of the source image series.
        series: SeriesInstanceUID when ``source_folder`` holds several series.
        segment: keep only this segment number, as 1; ``None`` = every segment, voxel value =
            segment number (a later segment overwrites an earlier one where they overlap).

    Raises:
        InputError: not a SEG, a size different from the source, or a frame that neither references
            a source instance nor lies at a source slice position.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        seg = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(path, f"not a readable DICOM file ({exc})") from exc
    if str(seg.get("SOPClassUID", "")) != SegmentationStorage:
        raise InputError(path, f"not a DICOM Segmentation object (SOP class {seg.get('SOPClassUID', 'missing')})")
    sources = source_slices(source_folder, series)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if (int(seg.Rows), int(seg.Columns)) != (rows, cols):
        raise InputError(path, f"frame size {seg.Rows}x{seg.Columns} differs from the source series' {rows}x{cols}")
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(sources)}
    normal = slice_normal(sources[0].ImageOrientationPatient)
    along = along_normal(sources)
    frames = seg.pixel_array.reshape(-1, rows, cols)
    fractional = str(seg.get("SegmentationType", "BINARY")) == "FRACTIONAL"
    cut = int(seg.get("MaximumFractionalValue", 1)) / 2 if fractional else 0
    out = np.zeros((len(sources), rows, cols), np.uint8)
    for index, frame in enumerate(frames):
        ident = _frame_item(seg, index, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None else SEGMENT_NUMBER
        if segment is not None and number != segment:
            continue
        k = by_uid.get(_referenced_uid(seg, index) or "")
        if k is None:
            position = _frame_item(seg, index, "PlanePositionSequence")
            if position is None:
                raise InputError(path, f"frame {index + 1} references no source instance and has no position")
            offset = np.abs(along - np.asarray(position.ImagePositionPatient, dtype=float) @ normal)
            if offset.min() > POSITION_TOL_MM:
                raise InputError(path, f"frame {index + 1} lies on no slice of the source series {source_folder}")
            k = int(np.argmin(offset))
        out[k][frame > cut] = 1 if segment is not None else number
    return out
