"""DICOM image series: finding the series in a folder and reading one, with the geometry checks
a CT/MRI volume needs.

A series is read into a :class:`~pancreas_seg.io.scan.Scan` whose array is
``[Z, Y, X]`` = (slice, row, column) and whose affine maps the voxel index
``(column, row, slice, 1)`` to RAS+ mm, exactly like a NIfTI affine of the array
stored ``[X, Y, Z]``. The geometry conventions (slice order along the normal,
LPS -> RAS) are those of :mod:`pancreas_seg.io.dicom_geometry`; writing a series
is :mod:`pancreas_seg.io.dicom_write`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from tqdm import tqdm

from pancreas_seg.errors import InputError
from pancreas_seg.io.dicom_geometry import image_positions, slice_order, swap_lps_ras
from pancreas_seg.io.dicom_pixels import decode_pixels
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)

# --- reading tolerances ---------------------------------------------------------
GAP_REL_TOL = 0.10  # a slice gap deviating from the median gap by more than this fraction ...
GAP_ABS_TOL_MM = 0.1  # ... or by more than this many mm is a missing slice / uneven spacing
DUPLICATE_TOL_MM = 1e-3  # two slices closer than this along the normal share a position
TILT_TOL_PIXELS = 0.1  # in-plane drift of slice origins allowed, in units of the smallest pixel
IOP_TOL = 1e-4  # direction cosines of one series must agree within this
ORTHONORMAL_TOL = 1e-3  # the two IOP vectors must be unit and orthogonal within this
HEADER_DEFER_SIZE = "1 KB"  # values larger than this (pixel data) are not read when listing series
PIXEL_SPACING_TOL_MM = 1e-4  # pixel spacings of one series must agree within this
IOP_GROUP_DECIMALS = 4  # rounding of IOP in the grouping key of series without a SeriesInstanceUID
MAX_GAPS_REPORTED = 5  # at most this many gaps are listed in an error message

DICOM_MODALITY_TO_SCAN = {"CT": "CT", "MR": "MRI"}
SCAN_MODALITY_TO_DICOM = {"CT": "CT", "MRI": "MR"}
PLANE_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "SR", "PR", "KO", "RTPLAN", "RTDOSE", "REG"})

INT16 = np.iinfo(np.int16)  # integral CT values fitting it are returned as int16


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder.

    Attributes:
        key: what selects this series in :func:`read_dicom_series`: the
            SeriesInstanceUID, or ``"group-<hash>"`` when that UID is empty
            (files then grouped by study, frame of reference, orientation, size).
        uid: SeriesInstanceUID, ``""`` when the files have none.
        description: SeriesDescription (may be ``""``).
        modality: the DICOM Modality tag (``"CT"``, ``"MR"``, ...).
        n_files: number of image files with plane geometry.
        paths: those files, sorted by path.
        incomplete: ``(file, what it lacks)`` for the series' images without plane geometry
            (no ImagePositionPatient, say): the series cannot be stacked while they are in it.
    """

    key: str
    uid: str
    description: str
    modality: str
    n_files: int
    paths: tuple[Path, ...]
    incomplete: tuple[tuple[Path, str], ...] = ()

    def summary(self) -> str:
        """One line for error messages and listings."""
        uid = self.uid or f"(no SeriesInstanceUID; key {self.key})"
        return f"{uid}  {self.modality}  {self.n_files} files  {self.description!r}"


def _read_header(path: Path) -> Dataset | None:
    """The dataset of ``path`` with large values (pixel data) deferred, or None if not DICOM.

    Raises:
        InputError: the file is DICOM (has the ``DICM`` prefix or starts like a
            raw dataset) but is truncated or corrupt.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=HEADER_DEFER_SIZE)
    except InvalidDicomError:
        # A raw dataset without preamble (old files) starts with a group 0008 tag.
        try:
            with open(path, "rb") as f:
                head = f.read(2)
        except OSError as exc:
            raise InputError(path, f"cannot read file ({exc})") from exc
        if head != b"\x08\x00":
            return None
        try:
            ds = pydicom.dcmread(path, defer_size=HEADER_DEFER_SIZE, force=True)
        except Exception:  # noqa: BLE001 - not DICOM after all
            return None
        if "SOPClassUID" not in ds:
            return None
    except Exception as exc:  # noqa: BLE001 - a DICM file pydicom cannot parse is corrupt
        raise InputError(path, f"truncated or corrupt DICOM file ({exc})") from exc
    file_meta = getattr(ds, "file_meta", None) or Dataset()
    sop_class = ds.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    if not sop_class and "PixelData" not in ds:
        return None  # a dataset that names no object and holds no image (private data, a fragment)
    if sop_class and "Image Storage" in UID(str(sop_class)).name and "PixelData" not in ds:
        # pydicom stops quietly at the end of a cut file: an image without pixels is truncated.
        raise InputError(path, "truncated or corrupt DICOM file (image without pixel data)")
    return ds


def _is_single_frame_image(ds: Dataset) -> bool:
    """True for a single-frame image (CT/MR slice, with or without plane geometry), False for SEG, SR,
    multi-frame."""
    if "PixelData" not in ds or str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES:
        return False
    return int(ds.get("NumberOfFrames", 1) or 1) <= 1


def _missing_geometry(ds: Dataset) -> str:
    """What an image lacks to be placed in a stack (``""`` when nothing): the plane geometry tags."""
    missing = [tag for tag in PLANE_GEOMETRY_TAGS if not ds.get(tag)]
    if not missing:
        return ""
    note = " (it has ImagerPixelSpacing only: a projection image, not a slice?)" \
        if "PixelSpacing" in missing and ds.get("ImagerPixelSpacing") else ""
    return f"lacks {', '.join(missing)}{note}"


def _group_key(ds: Dataset) -> str:
    """Grouping key of an image file: its SeriesInstanceUID, or a hash of what defines a stack."""
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid
    orientation = ds.get("ImageOrientationPatient") or [np.nan] * 6
    iop = tuple(np.round(np.asarray(orientation, dtype=float), IOP_GROUP_DECIMALS) + 0.0)
    parts = (
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("FrameOfReferenceUID", "")),
        repr(iop),
        str(ds.get("Rows", "")),
        str(ds.get("Columns", "")),
    )
    return "group-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def _walk_files(folder: Path) -> list[Path]:
    """The regular files under ``folder``. Others are skipped with a warning: opening a FIFO would
    block for ever, a symlink loop or broken link cannot be read."""
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # hidden: .git, unfinished writes
        for path in (Path(root) / name for name in sorted(files)):
            if path.is_file():
                paths.append(path)
            else:
                logger.warning("%s: skipped: not a regular file (FIFO, socket, device, broken link or symlink loop)",
                               path)
    return paths


def _check_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "folder does not exist")
    if not folder.is_dir():
        raise InputError(folder, "not a folder (give the folder holding the DICOM series)")
    return folder


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Find the image series under ``folder`` (searched recursively).

    Hidden folders (``.git``, the temporary folder of an unfinished write) are
    not searched. Files that are not DICOM (README, DICOMDIR is DICOM but has no pixels, ...)
    and DICOM objects that are not single-frame images (SEG, SR, RTSTRUCT, multi-frame) are
    skipped silently. Image files are grouped by SeriesInstanceUID; files with an empty
    SeriesInstanceUID by (StudyInstanceUID, FrameOfReferenceUID, rounded
    ImageOrientationPatient, Rows, Columns). Images without plane geometry are kept apart in
    their series' ``incomplete``.

    Returns:
        the series with at least one image with plane geometry, sorted by (description, uid/key).

    Raises:
        InputError: ``folder`` is missing, or a DICOM file in it is truncated/corrupt.
    """
    return [info for info in _find_series(_check_folder(folder)) if info.n_files]


def _find_series(folder: Path) -> list[SeriesInfo]:
    """Every series of single-frame images under ``folder``, with or without plane geometry."""
    groups: dict[str, list[tuple[Path, Dataset, str]]] = {}
    for path in _walk_files(folder):
        ds = _read_header(path)
        if ds is not None and _is_single_frame_image(ds):
            groups.setdefault(_group_key(ds), []).append((path, ds, _missing_geometry(ds)))
    infos = []
    for key, files in groups.items():
        members = [(path, ds) for path, ds, missing in files if not missing]
        first = files[0][1]
        infos.append(
            SeriesInfo(
                key=key,
                uid=str(first.get("SeriesInstanceUID", "") or "").strip(),
                description=str(first.get("SeriesDescription", "") or ""),
                modality=str(first.get("Modality", "") or ""),
                n_files=len(members),
                paths=tuple(path for path, _ in members),
                incomplete=tuple((path, missing) for path, _, missing in files if missing),
            )
        )
    return sorted(infos, key=lambda info: (info.description, info.key))


def _without_geometry(folder: Path, images: Sequence[tuple[Path, str]]) -> str:
    """``"3 image(s) without plane geometry, e.g. a.dcm lacks PixelSpacing"``."""
    path, missing = images[0]
    return f"{len(images)} image(s) without plane geometry, e.g. {_rel(folder, path)} {missing}"


def _select_series(folder: Path, found: list[SeriesInfo], series: str | None) -> SeriesInfo:
    infos = [info for info in found if info.n_files]
    if not infos:
        skipped = [image for info in found for image in info.incomplete]
        reason = f"; skipped {_without_geometry(folder, skipped)}" if skipped else ""
        raise InputError(folder, f"no DICOM image series found (single-frame CT/MR images with plane geometry){reason}")
    listing = "\n  ".join(info.summary() for info in infos)
    if series is None:
        if len(infos) == 1:
            return infos[0]
        raise InputError(
            folder,
            f"{len(infos)} image series found; choose one with --series <SeriesInstanceUID or key>:\n  {listing}",
        )
    exact = [info for info in infos if series in (info.uid, info.key)]
    if len(exact) == 1:
        return exact[0]
    matches = [info for info in infos if info.key.startswith(series) or (info.uid and info.uid.startswith(series))]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several series" if matches else "matches no series"
    raise InputError(folder, f"--series {series!r} {problem}; series found:\n  {listing}")


def resolve_series(folder: str | os.PathLike, series: str | None = None) -> SeriesInfo:
    """The image series that ``series`` selects in ``folder``, with its exact SeriesInstanceUID.

    Args:
        folder: searched recursively (see :func:`list_series`).
        series: SeriesInstanceUID, a unique prefix of it, or the ``group-...`` key; None when the
            folder holds a single series.

    Raises:
        InputError: no series; several and none chosen; ``series`` matching none or several
            (the message lists the series found).
    """
    folder = _check_folder(folder)
    info = _select_series(folder, _find_series(folder), series)
    if info.incomplete:
        raise InputError(folder, f"series {info.uid or info.key} has {_without_geometry(folder, info.incomplete)}: "
                                 "its slices cannot be placed in a stack; remove or repair them")
    return info


def _set_transfer_syntax(ds: Dataset) -> None:
    """Give a dataset read without file meta the (uncompressed) transfer syntax it was parsed with."""
    if "TransferSyntaxUID" in getattr(ds, "file_meta", Dataset()):
        return
    implicit, little = ds.original_encoding
    if not little:
        raise ValueError("big endian dataset without file meta is not supported")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _read_slices(paths: Sequence[Path]) -> list[tuple[Path, Dataset]]:
    slices = []
    for path in paths:
        try:
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:  # a bare dataset without preamble, accepted by list_series
                ds = pydicom.dcmread(path, force=True)
                _set_transfer_syntax(ds)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise InputError(path, f"truncated or corrupt DICOM file ({exc})") from exc
        slices.append((path, ds))
    return slices


def _rel(folder: Path, path: Path) -> str:
    """``path`` relative to ``folder`` for messages that already name the folder."""
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _geometry(folder: Path, slices: list[tuple[Path, Dataset]]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Check that all slices share orientation, size and pixel spacing.

    Returns:
        row cosine (along columns), column cosine (along rows), both unit LPS
        vectors, row spacing ``dr`` and column spacing ``dc`` in mm.
    """
    path0, ds0 = slices[0]
    iop0 = np.asarray(ds0.ImageOrientationPatient, dtype=float)
    ps0 = np.asarray(ds0.PixelSpacing, dtype=float)
    size0 = (int(ds0.Rows), int(ds0.Columns))
    for path, ds in slices[1:]:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        if not np.allclose(iop, iop0, atol=IOP_TOL):
            raise InputError(
                folder, f"ImageOrientationPatient differs inside the series: {iop0.tolist()} in {_rel(folder, path0)}, "
                f"{iop.tolist()} in {_rel(folder, path)}"
            )
        size = (int(ds.Rows), int(ds.Columns))
        if size != size0:
            raise InputError(folder, f"Rows/Columns differ inside the series: {size0} in {_rel(folder, path0)}, {size} in {_rel(folder, path)}")
        ps = np.asarray(ds.PixelSpacing, dtype=float)
        if not np.allclose(ps, ps0, atol=PIXEL_SPACING_TOL_MM):
            raise InputError(
                folder, f"PixelSpacing differs inside the series: {ps0.tolist()} in {_rel(folder, path0)}, {ps.tolist()} in {_rel(folder, path)}"
            )
    row_cos, col_cos = iop0[:3], iop0[3:]
    unit = np.allclose(np.linalg.norm([row_cos, col_cos], axis=1), 1.0, atol=ORTHONORMAL_TOL)
    if not (unit and abs(row_cos @ col_cos) < ORTHONORMAL_TOL):
        raise InputError(path0, f"ImageOrientationPatient {iop0.tolist()} is not two orthonormal vectors")
    row_cos, col_cos = row_cos / np.linalg.norm(row_cos), col_cos / np.linalg.norm(col_cos)
    if np.any(ps0 <= 0):
        raise InputError(path0, f"PixelSpacing {ps0.tolist()} is not positive")
    return row_cos, col_cos, float(ps0[0]), float(ps0[1])


def _check_stack(folder: Path, paths: list[Path], positions: np.ndarray, normal: np.ndarray, min_pixel: float) -> float:
    """Check sorted slice positions for duplicates, gantry tilt and gaps (tilt first: the slices of
    a tilted series rounded to the header's precision can look unevenly spaced).

    Args:
        paths: the slice files, sorted along the normal.
        positions: ``[Z, 3]`` ImagePositionPatient (LPS mm), same order.
        normal: unit slice normal (LPS).
        min_pixel: smallest pixel spacing, mm.

    Returns:
        slice spacing in mm (median gap along the normal).
    """
    along = positions @ normal
    gaps = np.diff(along)
    dup = np.flatnonzero(gaps < DUPLICATE_TOL_MM)
    if dup.size:
        i = int(dup[0])
        raise InputError(
            folder, f"duplicate slice position {along[i]:.3f} mm along the normal in {_rel(folder, paths[i])} and "
            f"{_rel(folder, paths[i + 1])} ({dup.size} duplicate(s)); the folder may hold two series or repeated files"
        )
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    if drift.max() > TILT_TOL_PIXELS * min_pixel:
        angle = float(np.degrees(np.max(np.arctan2(drift[1:], np.abs(along[1:] - along[0])))))
        raise InputError(
            folder, f"gantry tilt of {angle:.2f} degrees (slice origins drift {drift.max():.2f} mm in-plane); "
            "resample the series first"
        )
    median = float(np.median(gaps))
    tol = min(GAP_REL_TOL * median, GAP_ABS_TOL_MM)
    bad = np.flatnonzero(np.abs(gaps - median) > tol)
    if bad.size:
        shown = ", ".join(
            f"{gaps[i]:.3f} mm between {along[i]:.3f} and {along[i + 1]:.3f}" for i in bad[:MAX_GAPS_REPORTED]
        )
        more = f" and {bad.size - MAX_GAPS_REPORTED} more" if bad.size > MAX_GAPS_REPORTED else ""
        raise InputError(
            folder, f"missing slice(s) or uneven slice gap: median gap {median:.3f} mm, but gap of {shown}{more} "
            "(positions along the slice normal, mm)"
        )
    return median


def _is_integral(x: float) -> bool:
    return float(x).is_integer()


def read_dicom_series(folder: str | os.PathLike, series: str | None = None, modality: str | None = None) -> Scan:
    """Read one DICOM image series into a Scan.

    Slices are sorted by ImagePositionPatient projected on the slice normal
    (never by InstanceNumber); the slice spacing comes from those positions, not
    from SliceThickness. A series acquired with gantry tilt (slice origins drift
    in-plane) is refused rather than resampled: resample it with another tool first.

    Args:
        folder: folder searched recursively (see :func:`list_series`).
        series: SeriesInstanceUID, a unique prefix of it, or the ``group-...`` key
            of a series without UID; required when the folder holds several series.
        modality: ``"CT"`` or ``"MRI"``; default from the Modality tag (CT, MR).

    Returns:
        Scan with array ``[Z, Y, X]``: CT in HU, int16 when RescaleSlope and
        RescaleIntercept are integral and the values fit, else float32; MRI
        float32 (stored values × slope + intercept). Affine (column, row, slice)
        -> RAS mm. source: path, PatientID, StudyInstanceUID, SeriesInstanceUID
        (may be empty), SeriesDescription.

    Raises:
        InputError: no or several series, missing slices / uneven gaps, duplicate
            positions, gantry tilt, orientation or size differing inside the
            series, truncated/corrupt or undecodable file, unknown modality.
    """
    if modality is not None and modality not in SCAN_MODALITY_TO_DICOM:
        raise ValueError(f"modality must be one of {tuple(SCAN_MODALITY_TO_DICOM)}, got {modality!r}")
    folder = _check_folder(folder)
    info = resolve_series(folder, series)
    slices = _read_slices(info.paths)
    ds0 = slices[0][1]

    if modality is None:
        tag = str(ds0.get("Modality", "")).upper()
        if tag not in DICOM_MODALITY_TO_SCAN:
            raise InputError(folder, f"Modality {tag!r} is neither CT nor MR; give the modality explicitly")
        modality = DICOM_MODALITY_TO_SCAN[tag]

    row_cos, col_cos, dr, dc = _geometry(folder, slices)
    normal = np.cross(row_cos, col_cos)
    slices = [slices[i] for i in slice_order([ds for _, ds in slices])]
    positions = image_positions([ds for _, ds in slices])
    if len(slices) > 1:
        dz = _check_stack(folder, [p for p, _ in slices], positions, normal, min(dr, dc))
    else:
        dz = float(ds0.get("SpacingBetweenSlices", 0) or ds0.get("SliceThickness", 0) or 1.0)
        logger.warning("%s: single slice; slice spacing %.3f mm taken from the header", folder, dz)

    slopes = [float(ds.get("RescaleSlope", 1) or 1) for _, ds in slices]
    intercepts = [float(ds.get("RescaleIntercept", 0) or 0) for _, ds in slices]
    integral = modality == "CT" and all(map(_is_integral, slopes + intercepts))
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    array = np.empty((len(slices), rows, cols), dtype=np.int32 if integral else np.float32)
    for k, (path, ds) in enumerate(tqdm(slices, desc="decoding DICOM slices", unit="slice", leave=False, disable=None)):
        raw = decode_pixels(path, ds)
        if raw.shape != (rows, cols):
            raise InputError(path, f"pixel array of shape {raw.shape}, expected {(rows, cols)}")
        if integral:
            array[k] = raw.astype(np.int32) * int(slopes[k]) + int(intercepts[k])
        else:
            array[k] = raw.astype(np.float64) * slopes[k] + intercepts[k]
    if integral:
        fits = array.size == 0 or (array.min() >= INT16.min and array.max() <= INT16.max)
        array = array.astype(np.int16 if fits else np.float32)

    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * dc
    affine_lps[:3, 1] = col_cos * dr
    affine_lps[:3, 2] = normal * dz
    affine_lps[:3, 3] = positions[0]
    affine = swap_lps_ras(affine_lps)

    source = {
        "path": str(folder),
        "PatientID": str(ds0.get("PatientID", "") or ""),
        "StudyInstanceUID": str(ds0.get("StudyInstanceUID", "") or ""),
        "SeriesInstanceUID": info.uid,
        "SeriesDescription": info.description,
        "SliceThickness": str(ds0.get("SliceThickness", "") or ""),
    }
    return Scan(array=array, affine=affine, modality=modality, source=source)
