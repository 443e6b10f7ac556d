"""NIfTI reading and writing, and putting a volume onto another grid's axis order.

NIfTI stores the array ``[X, Y, Z]`` (column, row, slice) with an affine mapping
``(i, j, k, 1)`` to RAS+ mm; a :class:`~pancreas_seg.io.scan.Scan` holds the same
affine with the array transposed to ``[Z, Y, X]``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
KINDS = ("image", "label")
XFORM_SCANNER = 1  # NIfTI qform/sform code "scanner anatomical"
XFORM_CODE_FIELDS = ("sform_code", "qform_code")
LABEL_INTEGRAL_TOL = 1e-3  # label values stored as floats may be this far from an integer
LABEL_MAX = 255  # labels are read as uint8
INT16 = np.iinfo(np.int16)  # integral CT values fitting it are read as int16
MAX_AFFINE_CONDITION = 1e6  # a voxel-axes matrix worse conditioned than this has a zero or duplicate axis
REORIENT_TOL_VOXELS = 1e-3  # grids agree when their corners are this close, in units of the smallest voxel


def split_nifti_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(stem, suffix)`` of a NIfTI file name: ``"a.b.NII.GZ"`` -> ``("a.b", ".nii.gz")`` (suffix
    matched in any letter case, returned in lower case); None when it ends in neither suffix."""
    name = Path(path).name
    suffix = next((s for s in sorted(NIFTI_SUFFIXES, key=len, reverse=True) if name.lower().endswith(s)), None)
    return None if suffix is None else (name[: -len(suffix)], suffix)


def nifti_case_id(path: str | os.PathLike) -> str:
    """File name without ``.nii`` / ``.nii.gz`` (any letter case); other names are returned whole."""
    parts = split_nifti_name(path)
    return Path(path).name if parts is None else parts[0]


def read_nifti(path: str | os.PathLike, modality: str = "CT", kind: str = "image") -> Scan:
    """Read a 3D NIfTI file (a 4D one with one volume is accepted).

    The affine is the header's best affine (sform when its code is set, else
    qform), kept exactly; the array is transposed from ``[X, Y, Z]`` to ``[Z, Y, X]``.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        modality: ``"CT"`` or ``"MRI"``.
        kind: ``"image"``: CT integer data fitting int16 becomes int16 (also stored integers
            whose integral scl_slope/scl_inter keep them integers fitting int16, HU), other CT
            data and all MRI data float32; ``"label"``: values rounded to uint8.

    Returns:
        Scan with ``source = {"path": ..., "kind": kind, "sform_code": ..., "qform_code": ...}``
        (the header's codes, so outputs on its grid can say the same of their coordinates).

    Raises:
        InputError: missing, not a regular file, unreadable, truncated or not NIfTI; not 3D or
            a dimension of length 0; a singular or non-finite affine; NaN or inf values; for a
            label, values that are not integers in [0, 255].
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist" + (" (a broken symbolic link or a symlink loop)"
                                                        if path.is_symlink() else ""))
    if not path.is_file():
        raise InputError(path, "not a regular file (a folder, FIFO, socket or device cannot be read as NIfTI)")
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise InputError(path, f"not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI file (nibabel reads it as {type(img).__name__})")
    shape = img.shape
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise InputError(path, f"expected a 3D volume (or 4D with one volume), got shape {shape}")
    if 0 in shape[:3]:
        raise InputError(path, f"empty volume: a dimension has length 0 (shape {shape})")
    header = img.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        logger.warning("%s: neither sform nor qform is set; using the voxel sizes only", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    _check_affine(path, affine)
    try:
        array = _scaled_int16(img) if modality == "CT" and kind == "image" else None
        data = np.asanyarray(img.dataobj) if array is None else None
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError, ValueError
        raise InputError(path, f"truncated or corrupt NIfTI file ({exc})") from exc
    if array is None:
        data = data.reshape(shape[:3])
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise InputError(path, f"contains NaN or inf values ({int(np.sum(~np.isfinite(data)))} voxels)")
        array = np.ascontiguousarray(data.transpose(2, 1, 0))

    if kind == "label":
        array = _to_label(path, array)
    elif modality == "CT" and array.dtype.kind in "iub" and (
        array.size == 0 or (array.min() >= INT16.min and array.max() <= INT16.max)
    ):
        array = array.astype(np.int16, copy=False)
    elif array.dtype != np.float32:
        array = array.astype(np.float32)
    codes = {name: str(int(header[name])) for name in XFORM_CODE_FIELDS}
    return Scan(array=array, affine=affine, modality=modality, source={"path": str(path), "kind": kind, **codes})


def _scaled_int16(img: nib.Nifti1Image) -> np.ndarray | None:
    """``[Z, Y, X]`` int16 of integers stored with an integral scl_slope/scl_inter (a CT's
    ``scl_inter -1024``) when every scaled value fits int16; None otherwise (no scaling, float data
    or a fractional scale: nibabel's float path).

    Scales the stored integers slice by slice into the result instead of through nibabel's
    float64 volume: the transient is the stored array, not four times it.
    """
    proxy = img.dataobj
    slope, inter = float(proxy.slope), float(proxy.inter)
    if (slope, inter) == (1.0, 0.0) or not np.isfinite([slope, inter]).all() \
            or not (slope.is_integer() and inter.is_integer()) or proxy.dtype.kind not in "iu":
        return None
    raw = np.asanyarray(proxy.get_unscaled()).reshape(img.shape[:3])
    if raw.size == 0:
        return None
    ends = [float(raw.min()) * slope + inter, float(raw.max()) * slope + inter]
    if min(ends) < INT16.min or max(ends) > INT16.max:
        return None
    array = np.empty(raw.shape[::-1], np.int16)  # [Z, Y, X]
    for k in range(raw.shape[2]):
        array[k] = (raw[:, :, k].astype(np.int64) * int(slope) + int(inter)).T
    return array


def _check_affine(path: Path, affine: np.ndarray) -> None:
    """Refuse an affine whose voxel axes do not span space: no grid, no orientation, no NIfTI to write."""
    axes = affine[:3, :3]
    finite = bool(np.all(np.isfinite(affine)))
    if not finite or np.linalg.cond(axes) > MAX_AFFINE_CONDITION:
        problem = "non-finite values" if not finite else "voxel axes (columns) that are zero or not independent"
        raise InputError(path, f"singular affine with {problem}: {np.round(affine[:3], 4).tolist()} "
                               "(check the sform/qform and pixdim of the header)")


def _to_label(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    rounded = np.rint(array)
    if array.dtype.kind == "f" and array.size and np.max(np.abs(array - rounded)) > LABEL_INTEGRAL_TOL:
        raise InputError(path, "label map has non-integer values")
    if array.size and (rounded.min() < 0 or rounded.max() > LABEL_MAX):
        raise InputError(path, f"label values [{rounded.min():g}, {rounded.max():g}] outside [0, {LABEL_MAX}]")
    return rounded.astype(np.uint8)


def _storable(array: np.ndarray, dtype) -> np.ndarray:
    """``[X, Y, Z]`` data in a dtype NIfTI stores without scaling."""
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"int64 values [{array.min()}, {array.max()}] do not fit int32; give a dtype")
        return array.astype(np.int32)
    return array


def write_nifti(scan: Scan, path: str | os.PathLike, dtype=None) -> Path:
    """Write a Scan as NIfTI-1, atomically (temporary file in the same folder, then ``os.replace``).

    Both sform and qform are set from ``scan.affine`` with the codes in ``scan.source``
    (``sform_code``, ``qform_code``: a volume on a NIfTI input's grid keeps that input's), code 1
    (scanner) when absent; the array ``[Z, Y, X]`` is stored ``[X, Y, Z]`` without intensity scaling.

    Args:
        scan: the volume.
        path: ``.nii`` or ``.nii.gz`` (compressed); parent folders are created.
        dtype: stored data type; default the array's (bool -> uint8, int64 -> int32).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if split_nifti_name(path) is None:
        raise ValueError(f"{path}: NIfTI file name must end with {' or '.join(NIFTI_SUFFIXES)}")
    data = _storable(np.asarray(scan.array).transpose(2, 1, 0), dtype)
    img = nib.Nifti1Image(data, scan.affine)
    img.set_sform(scan.affine, code=int(scan.source.get("sform_code", XFORM_SCANNER)))
    img.set_qform(scan.affine, code=int(scan.source.get("qform_code", XFORM_SCANNER)))
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units(xyz="mm")
    return atomic_write(path, lambda tmp: nib.save(img, tmp))


def _corners(affine: np.ndarray, shape_xyz: tuple[int, ...]) -> np.ndarray:
    """World positions ``[8, 3]`` mm of the corner voxel centres of a grid."""
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape_xyz], indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).T


def _describe(affine: np.ndarray, shape_zyx: tuple[int, ...]) -> str:
    spacing = voxel_sizes(affine)[::-1]
    codes = "".join(nib.aff2axcodes(affine))
    return (
        f"shape [Z,Y,X] {tuple(shape_zyx)}, spacing (z,y,x) {tuple(np.round(spacing, 4).tolist())} mm, "
        f"origin {tuple(np.round(affine[:3, 3], 3).tolist())} mm, axes {codes}"
    )


def reorient_like(
    scan: Scan,
    reference_affine: np.ndarray,
    reference_shape: tuple[int, int, int],
    *,
    tol_voxels: float = REORIENT_TOL_VOXELS,
) -> Scan:
    """Put ``scan`` on a reference grid that differs from its own only by axis flips/permutations.

    Used e.g. to bring an LAS label map onto the LPS grid of its DICOM image:
    the array is flipped/transposed (no interpolation) and the reference affine
    is returned with it.

    Args:
        scan: the volume to move, ``[Z, Y, X]``.
        reference_affine: 4×4 (column, row, slice) -> RAS mm affine of the target grid.
        reference_shape: target shape ``[Z, Y, X]`` (as ``Scan.shape``).
        tol_voxels: the grids agree when the affine columns (voxel steps and
            origin) and every corner voxel centre lie within this many
            (smallest) voxels of the reference ones.

    Returns:
        Scan on the reference grid (``affine`` = ``reference_affine``), same
        dtype, modality and source.

    Raises:
        InputError: the physical grids differ (shape, spacing, origin or
            direction), naming ``scan.source["path"]``.
    """
    reference_affine = np.asarray(reference_affine, dtype=np.float64)
    data_xyz = np.asarray(scan.array).transpose(2, 1, 0)
    transform = ornt_transform(io_orientation(scan.affine), io_orientation(reference_affine))
    moved = apply_orientation(data_xyz, transform)
    moved_affine = scan.affine @ inv_ornt_aff(transform, data_xyz.shape)
    ref_xyz = tuple(int(n) for n in reference_shape)[::-1]
    tol = tol_voxels * float(np.min(voxel_sizes(reference_affine)))
    same = (
        moved.shape == ref_xyz
        and np.max(np.linalg.norm(moved_affine[:3] - reference_affine[:3], axis=0)) <= tol
        and np.max(np.linalg.norm(_corners(moved_affine, moved.shape) - _corners(reference_affine, ref_xyz), axis=1)) <= tol
    )
    if not same:
        raise InputError(
            scan.source.get("path"),
            "grid differs from the reference beyond axis flips/permutations: "
            f"this volume {_describe(scan.affine, scan.shape)}; reference {_describe(reference_affine, tuple(reference_shape))}",
        )
    array = np.ascontiguousarray(moved.transpose(2, 1, 0))
    return Scan(array=array, affine=reference_affine.copy(), modality=scan.modality, source=dict(scan.source))
