"""DICOM slice geometry shared by the series reader, the series writer and DICOM SEG.

DICOM geometry (PS3.3 C.7.6.2.1.1), in the patient LPS frame::

    P(c, r, k) = IPP_k + c * dc * IOP[:3] + r * dr * IOP[3:]

where ``IOP[:3]`` (the "row cosine") points along increasing column index ``c``,
``IOP[3:]`` along increasing row index ``r``, and ``PixelSpacing = [dr, dc]``
(row spacing first). Slices are ordered by ``IPP_k`` projected on the slice
normal ``IOP[:3] x IOP[3:]`` (never by InstanceNumber or file name), so the slice
axis of a Scan's affine always points along the normal. RAS = diag(-1, -1, 1) · LPS.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse


def swap_lps_ras(affine: np.ndarray) -> np.ndarray:
    """A 4×4 affine's world frame switched between RAS and LPS (the flip is its own inverse)."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3] = LPS_TO_RAS @ out[:3]
    return out


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Unit slice normal ``row_cos x col_cos`` (LPS) of an ImageOrientationPatient (6 values)."""
    iop = np.asarray(iop, dtype=float)
    row_cos, col_cos = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    return np.cross(row_cos, col_cos)


def image_positions(datasets: Sequence[Dataset]) -> np.ndarray:
    """ImagePositionPatient of each dataset, ``[N, 3]`` LPS mm."""
    return np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in datasets]).reshape(-1, 3)


def along_normal(datasets: Sequence[Dataset]) -> np.ndarray:
    """Position of each slice along the first slice's normal, ``[N]`` mm."""
    return image_positions(datasets) @ slice_normal(datasets[0].ImageOrientationPatient)


def slice_order(datasets: Sequence[Dataset]) -> np.ndarray:
    """Indices sorting the slices along the normal, ascending (stable): Scan slice order."""
    return np.argsort(along_normal(datasets), kind="stable")
