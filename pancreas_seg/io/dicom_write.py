"""Writing a :class:`~pancreas_seg.io.scan.Scan` as a DICOM CT or MR image series, one file per slice.

The inverse of :func:`~pancreas_seg.io.dicom.read_dicom_series`, with the geometry conventions
of :mod:`pancreas_seg.io.dicom_geometry`. The series is written into a hidden folder and swapped
into place when complete (:func:`~pancreas_seg.io.atomic.atomic_folder`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.affines import voxel_sizes
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_folder
from pancreas_seg.io.dicom import SCAN_MODALITY_TO_DICOM
from pancreas_seg.io.dicom_geometry import swap_lps_ras
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)

UINT16 = np.iinfo(np.uint16)
INT16 = np.iinfo(np.int16)
ROUNDING_MARGIN = 0.5  # CT values within this of the int16 range still round into it
TRANSFER_SYNTAXES = {
    "explicit_little": ExplicitVRLittleEndian,
    "implicit_little": ImplicitVRLittleEndian,
    "jpeg2000_lossless": JPEG2000Lossless,
    "rle_lossless": RLELossless,
}
JPEG2000_MIN_SIZE = 32  # openjpeg's encoder uses 6 resolutions: rows and columns must be >= 2**5
INSTANCE_NUMBER_ORDERS = ("ascending", "descending", "shuffled")
STORAGE_CLASS = {"CT": CTImageStorage, "MRI": MRImageStorage}
BITS = 16  # BitsAllocated = BitsStored; HighBit = BITS - 1
FILE_NAME_FORMAT = "{:05d}.dcm"  # files are named after their InstanceNumber


def _ds(value: float) -> str:
    """A float as a DICOM DS string (at most 16 characters)."""
    return format_number_as_ds(float(value) + 0.0)


def _stored_values(scan: Scan) -> tuple[np.ndarray, str, str]:
    """Stored pixel values ``[Z, Y, X]`` (uint16 or int16) and the DS strings of slope and intercept.

    CT: values rounded to integer HU, slope 1, intercept 0, uint16 when no value
    is negative, else int16. MRI: uint16 as is when the values are integers in
    [0, 65535], else scaled linearly onto [0, 65535].
    """
    values = np.asarray(scan.array)
    if not np.all(np.isfinite(values)):
        raise ValueError("scan contains NaN or inf; cannot write it as DICOM")
    if values.size == 0:
        raise ValueError("scan is empty")
    lo, hi = float(values.min()), float(values.max())
    if scan.modality == "CT":
        rounded = np.rint(values)
        if lo >= 0 and hi <= UINT16.max:
            return rounded.astype(np.uint16), "1", "0"
        if lo < INT16.min - ROUNDING_MARGIN or hi > INT16.max + ROUNDING_MARGIN:
            raise ValueError(f"CT values [{lo}, {hi}] do not fit int16 HU")
        return rounded.astype(np.int16), "1", "0"
    if lo >= 0 and hi <= UINT16.max and np.array_equal(values, np.rint(values)):
        return values.astype(np.uint16), "1", "0"
    intercept_str = _ds(lo)
    intercept = float(intercept_str)
    slope_str = _ds((hi - intercept) / UINT16.max if hi > intercept else 1.0)
    slope = float(slope_str)
    stored = np.clip(np.rint((values.astype(np.float64) - intercept) / slope), 0, UINT16.max)
    return stored.astype(np.uint16), slope_str, intercept_str


def _instance_numbers(n: int, order: str, seed: int) -> np.ndarray:
    if order == "ascending":
        return np.arange(1, n + 1)
    if order == "descending":
        return np.arange(n, 0, -1)
    if order == "shuffled":
        return np.random.default_rng(seed).permutation(n) + 1
    raise ValueError(f"instance_number_order must be one of {INSTANCE_NUMBER_ORDERS}, got {order!r}")


def _check_target(folder: Path) -> None:
    """Refuse to replace an existing folder that holds anything but .dcm files."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(folder, "exists and is not a folder")
    others = [p for p in folder.iterdir() if not (p.is_file() and p.suffix.lower() == ".dcm")]
    if others:
        raise InputError(folder, f"exists and holds other things than .dcm files (e.g. {others[0].name}); not replacing it")


@dataclass(frozen=True)
class _Plane:
    """Slice geometry of a Scan in LPS: (column, row, slice) -> LPS affine, unit cosines, spacings."""

    affine_lps: np.ndarray
    row_cos: np.ndarray  # along increasing column index
    col_cos: np.ndarray  # along increasing row index
    dr: float  # row spacing, mm
    dc: float  # column spacing, mm

    @classmethod
    def of(cls, scan: Scan) -> "_Plane":
        affine_lps = swap_lps_ras(scan.affine)
        dc, dr = (float(v) for v in voxel_sizes(scan.affine)[:2])
        return cls(affine_lps, affine_lps[:3, 0] / dc, affine_lps[:3, 1] / dr, dr, dc)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cos, self.col_cos)

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice ``k``: the affine applied to (0, 0, k)."""
        return self.affine_lps[:3, 3] + k * self.affine_lps[:3, 2]


@dataclass(frozen=True)
class _SeriesIds:
    """Patient, study, series and frame-of-reference identity shared by every slice."""

    patient_id: str
    study_uid: str
    series_uid: str
    frame_uid: str
    description: str
    geometry: str  # text of the affine and shape, entropy of the derived UIDs

    def sop_uid(self, k: int) -> UID:
        return generate_uid(entropy_srcs=[self.study_uid, self.series_uid, self.description, self.geometry, str(k)])


def _series_ids(scan: Scan, patient_id: str, study_uid: str | None, series_uid: str | None,
                description: str) -> _SeriesIds:
    """UIDs not given, derived deterministically from patient, study, description, modality, geometry."""
    geometry = np.array2string(np.round(scan.affine, 6), separator=",") + repr(scan.shape)
    study_uid = study_uid if study_uid is not None else generate_uid(entropy_srcs=[patient_id, "study"])
    if series_uid is None:
        series_uid = generate_uid(entropy_srcs=[patient_id, study_uid, description, scan.modality, geometry])
    frame_uid = generate_uid(entropy_srcs=[study_uid, series_uid or description, geometry, "frame"])
    return _SeriesIds(patient_id, study_uid, series_uid, frame_uid, description, geometry)


def _slice_header(ids: _SeriesIds, plane: _Plane, modality: str, k: int, instance_number: int,
                  stored: np.ndarray, slope: str, intercept: str) -> Dataset:
    """The header of slice ``k`` (no pixel data); ``stored`` is the whole ``[Z, Y, X]`` stored volume."""
    sop_class, sop_uid = STORAGE_CLASS[modality], ids.sop_uid(k)
    ipp = plane.position(k)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = SCAN_MODALITY_TO_DICOM[modality]
    ds.Manufacturer = "pancreas_seg"
    ds.SeriesDescription = ids.description
    ds.PatientName = f"{ids.patient_id}^"  # one-component name, explicitly (family name)
    ds.PatientID = ids.patient_id
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyInstanceUID = ids.study_uid
    ds.SeriesInstanceUID = ids.series_uid
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = ids.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [_ds(v) for v in ipp]
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([plane.row_cos, plane.col_cos])]
    ds.SliceLocation = _ds(ipp @ plane.normal)
    ds.PixelSpacing = [_ds(plane.dr), _ds(plane.dc)]
    ds.SliceThickness = _ds(abs(float(plane.affine_lps[:3, 2] @ plane.normal)))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.BitsAllocated = ds.BitsStored = BITS
    ds.HighBit = BITS - 1
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = ds.AcquisitionNumber = ""
    else:
        ds.ScanningSequence = "RM"  # research mode: the sequence is unknown
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ds.MRAcquisitionType = ""
        ds.RepetitionTime = ds.EchoTime = ds.EchoTrainLength = ""
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray, ts_uid: UID) -> None:
    """Store one slice ``[Y, X]`` in ``ds`` under transfer syntax ``ts_uid`` (compressed if it is)."""
    pixels = np.ascontiguousarray(pixels)
    if ts_uid.is_compressed:
        ds.compress(ts_uid, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = ts_uid


def write_dicom_series(
    scan: Scan,
    folder: str | os.PathLike,
    *,
    patient_id: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_description: str = "",
    instance_number_order: str = "ascending",
    transfer_syntax: str = "explicit_little",
    seed: int = 0,
) -> list[Path]:
    """Write a Scan as a CT or MR Image Storage series, one file per slice.

    Geometry comes from the affine (RAS -> LPS): ImagePositionPatient of slice k
    is the affine applied to (0, 0, k); ImageOrientationPatient the unit first
    two columns; PixelSpacing [row, column] spacing; SliceThickness the slice
    spacing along the normal. A sheared affine (slice axis not along the normal)
    is written as is, giving a gantry-tilted series (which the reader refuses).
    Reading back gives the same array and affine when the affine is
    right-handed (det > 0, e.g. LPS/RAS); for a left-handed one (e.g. LAS) the
    reader returns the slices in the opposite order, on the same physical grid.

    Pixel values: CT rounded to integer HU, RescaleSlope 1, RescaleIntercept 0,
    uint16 (PixelRepresentation 0) when no value is negative, else int16
    (PixelRepresentation 1). MR: uint16; a volume that is not integers in
    [0, 65535] is scaled onto [0, 65535] with RescaleSlope/Intercept so that
    reading gives the values back within 1e-5 of their range.

    UIDs not given are derived deterministically (``generate_uid(entropy_srcs=...)``)
    from patient_id, study UID, description, modality and geometry. The series is
    written to a temporary folder next to ``folder`` and renamed into place; an
    existing ``folder`` holding only .dcm files is replaced.

    Args:
        scan: ``[Z, Y, X]`` volume with modality ``"CT"`` or ``"MRI"``.
        folder: output folder.
        patient_id: PatientID (also PatientName).
        study_uid, series_uid: StudyInstanceUID, SeriesInstanceUID; ``""`` writes
            an empty SeriesInstanceUID (to test readers), None derives one.
        series_description: SeriesDescription.
        instance_number_order: ``"ascending"`` (slice k gets k + 1), ``"descending"``
            or ``"shuffled"`` (seeded by ``seed``); files are named after it.
        transfer_syntax: one of ``TRANSFER_SYNTAXES``: ``"explicit_little"``,
            ``"implicit_little"``, ``"jpeg2000_lossless"`` (rows and columns
            >= 32), ``"rle_lossless"``.
        seed: seed of the ``"shuffled"`` instance numbers.

    Returns:
        the written files, in slice order (k = 0, 1, ...).
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {tuple(TRANSFER_SYNTAXES)}, got {transfer_syntax!r}")
    ts_uid = TRANSFER_SYNTAXES[transfer_syntax]
    folder = Path(folder)
    _check_target(folder)
    stored, slope, intercept = _stored_values(scan)
    n_slices, rows, cols = stored.shape
    if ts_uid == JPEG2000Lossless and min(rows, cols) < JPEG2000_MIN_SIZE:
        raise ValueError(f"jpeg2000_lossless needs rows and columns >= {JPEG2000_MIN_SIZE}, got {rows}x{cols}")
    numbers = _instance_numbers(n_slices, instance_number_order, seed)
    plane = _Plane.of(scan)
    ids = _series_ids(scan, patient_id, study_uid, series_uid, series_description)

    names = [FILE_NAME_FORMAT.format(int(number)) for number in numbers]
    with atomic_folder(folder) as tmp:
        for k in range(n_slices):
            ds = _slice_header(ids, plane, scan.modality, k, int(numbers[k]), stored, slope, intercept)
            _set_pixels(ds, stored[k], ts_uid)
            ds.save_as(tmp / names[k], enforce_file_format=True)
    logger.debug("wrote %d slices to %s", n_slices, folder)
    return [folder / name for name in names]
