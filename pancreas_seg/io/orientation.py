"""One canonical storage orientation, so the 2D networks always see axial slices.

A NIfTI file may store its voxels in any axis order: dicom2nifti writes LAS, other tools RAS, a
sagittal acquisition puts left-right on the third axis. The networks run on ``array[z]`` slices,
so a scan whose third storage axis is not superior-inferior would be segmented on sagittal or
coronal planes. :func:`to_canonical` flips and permutes the voxel axes (no interpolation) to
:data:`CANONICAL_AXCODES`, DICOM's axial convention that the converted training store uses too;
:meth:`Reorientation.restore` puts a result computed on that grid back on the scan's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from pancreas_seg.io.scan import Scan

# voxel (column, row, slice) axes point to the patient's left, posterior and superior: an axial
# DICOM series with ImageOrientationPatient (1, 0, 0, 0, 1, 0), slices ordered feet to head
CANONICAL_AXCODES = ("L", "P", "S")
_IDENTITY = np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)  # nibabel's "keep every axis as it is"


@dataclass(frozen=True)
class Reorientation:
    """How a scan's storage maps to the canonical one; :meth:`restore` undoes it on any
    ``[Z, Y, X]`` array of the canonical grid (probabilities, masks)."""

    to_original: np.ndarray  # nibabel orientation transform, canonical (x, y, z) axes -> original

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.to_original, _IDENTITY))

    def restore(self, array: np.ndarray) -> np.ndarray:
        """``[Z, Y, X]`` on the canonical grid -> ``[Z, Y, X]`` on the scan's own grid (a view when possible)."""
        if self.is_identity:
            return array
        moved = apply_orientation(array.transpose(2, 1, 0), self.to_original)
        return np.ascontiguousarray(moved.transpose(2, 1, 0))


def storage_axcodes(scan: Scan) -> tuple[str, str, str]:
    """Where the voxel axes (column, row, slice) point, e.g. ``("L", "A", "S")``."""
    return tuple(nib.aff2axcodes(scan.affine))


def to_canonical(scan: Scan) -> tuple[Scan, Reorientation]:
    """``scan`` with its voxel axes flipped and permuted to :data:`CANONICAL_AXCODES` (same voxels,
    same world positions), and the :class:`Reorientation` that brings results back.

    An oblique grid is matched to the nearest anatomical axes (``nibabel.orientations.io_orientation``).
    """
    original = io_orientation(scan.affine)
    canonical = axcodes2ornt(CANONICAL_AXCODES)
    forward = ornt_transform(original, canonical)
    data_xyz = np.asarray(scan.array).transpose(2, 1, 0)
    moved = apply_orientation(data_xyz, forward)
    affine = scan.affine @ inv_ornt_aff(forward, data_xyz.shape)
    array = np.ascontiguousarray(moved.transpose(2, 1, 0))
    return Scan(array, affine, scan.modality, dict(scan.source)), Reorientation(ornt_transform(canonical, original))
