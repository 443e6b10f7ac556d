"""The one in-memory type for a scan, whatever file it came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel.affines import voxel_sizes

from pancreas_seg.vocabulary import MODALITIES


@dataclass
class Scan:
    """A 3D scan (or label map) on a physical grid.

    Attributes:
        array: voxel values, ``[Z, Y, X]`` = (slice, row, column). CT images are
            HU (int16 or float), label maps uint8.
        affine: 4×4 matrix mapping the voxel index ``(x, y, z, 1)`` =
            (column, row, slice) to RAS+ world coordinates in mm, exactly as a
            NIfTI affine does for an array stored ``[X, Y, Z]``. DICOM's LPS
            positions are converted to RAS when a series is read.
        modality: ``"CT"`` or ``"MRI"``.
        source: identifiers of where it came from (path, PatientID,
            StudyInstanceUID, SeriesInstanceUID, ...), all strings.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str = "CT"
    source: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise ValueError(f"Scan array must be [Z, Y, X], got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Scan affine must be 4x4, got {self.affine.shape}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(z, y, x)`` in mm, derived from the affine's columns."""
        x, y, z = voxel_sizes(self.affine)
        return float(z), float(y), float(x)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def same_grid(self, other: "Scan", atol_mm: float = 1e-3) -> bool:
        """True when both scans have the same shape and (within ``atol_mm``) affine."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol_mm)
