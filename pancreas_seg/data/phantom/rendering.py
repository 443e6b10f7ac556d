"""Rendering: the anatomy painted on the scanned grid, then texture, PSF, noise (CT) or blur,
bias and Rician noise (MRI); the label from the pancreas partial-volume map."""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from pancreas_seg.data.phantom.acquisition import (AcquisitionPlan, NoiseTiles, TextureField, anatomy_and_plan,
                                                   bias_field)
from pancreas_seg.data.phantom.canvas import Anatomy
from pancreas_seg.data.phantom.config import (CHUNK_VOXELS, CT_MAX_HU, CT_MIN_HU, MRI_MAX_VALUE, NORMAL, ORGAN,
                                              TISSUE_TABLES, PhantomConfig)
from pancreas_seg.data.phantom.shapes import Shape
from pancreas_seg.io.scan import Scan
from pancreas_seg.masks import largest_component

logger = logging.getLogger(__name__)

PSF_TRUNCATE = 3.0  # sds at which the PSF kernel is cut
PV_LABEL = 0.5
MIN_ISLAND_MM2 = 30.0  # mm^2, smallest island of the label in a slice  # pancreas partial volume at and above which a voxel is labelled
SUB_SLICE_PAD_SLICES = 2  # slices beyond the pancreas also rendered from sub-slices
BIAS_TERMS = 6  # coefficients of the MRI log-bias polynomial


class Canvas:
    """Fine-grid chunk being painted: intensity, texture amplitude, pancreas partial volume."""

    def __init__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, shift: np.ndarray | None, h: float,
                 background: tuple[np.ndarray, np.ndarray] | None = None, fill: float = 0.0):
        self.u, self.v, self.w = u, v, w  # float32 1D, mm
        self.shift = shift  # [Zf, 3] mm or None
        self.inv_h = np.float32(1.0 / h)
        shape = (len(w), len(v), len(u))
        self.img = np.empty(shape, np.float32)
        self.tex = np.empty(shape, np.float32)
        if background is None:
            self.img[...], self.tex[...] = fill, 0.0
        else:
            self.img[...], self.tex[...] = background
        self.pv = np.zeros(shape, np.float32)
        self.has_organ = False
        self.max_shift = np.zeros(3) if shift is None else np.abs(shift).max(axis=0)

    def paint(self, shape: Shape, value: float, tex_amp: float, role: int) -> None:
        """Blend ``value`` (and texture amplitude) into the voxels ``shape`` covers (partial volume in-plane)."""
        lo, hi = shape.bbox()
        pad = np.full(3, 1.0 / self.inv_h)
        if shape.moves:
            pad = pad + self.max_shift
        lo, hi = lo - pad, hi + pad
        idx = []
        for axis, arr in ((0, self.u), (1, self.v), (2, self.w)):
            i0, i1 = np.searchsorted(arr, lo[axis]), np.searchsorted(arr, hi[axis], side="right")
            if i0 >= i1:
                return
            idx.append(slice(int(i0), int(i1)))
        su, sv, sw = idx
        uu = self.u[su][None, None, :]
        vv = self.v[sv][None, :, None]
        ww = self.w[sw][:, None, None]
        if shape.moves and self.shift is not None:
            sh = self.shift[sw]
            uu = uu - sh[:, 0, None, None]
            vv = vv - sh[:, 1, None, None]
            ww = ww - sh[:, 2, None, None]
        f = shape.sdf(uu, vv, ww)
        a = np.clip(np.float32(0.5) - f * self.inv_h, 0, 1).astype(np.float32, copy=False)
        sl = (sw, sv, su)
        view = self.img[sl]
        view += a * (np.float32(value) - view)
        tview = self.tex[sl]
        tview += a * (np.float32(tex_amp) - tview)
        if role == ORGAN:
            pview = self.pv[sl]
            pview += a * (1 - pview)
            self.has_organ = True
        elif role == NORMAL and self.has_organ:
            self.pv[sl] *= 1 - a


def _static_background(anat: Anatomy, u: np.ndarray, v: np.ndarray, dx: float, values: dict) -> tuple[int, tuple]:
    """The leading z-invariant paint operations rendered once: (their count, (image, texture) ``[Y, X]``)."""
    count = 0
    while count < len(anat.ops) and anat.ops[count][1].z_invariant:
        count += 1
    canvas = Canvas(u, v, np.zeros(1, np.float32), None, dx, fill=values["air"][0])
    for tissue, shape, role in anat.ops[:count]:
        canvas.paint(shape, *values[tissue], role)
    return count, (canvas.img[0], canvas.tex[0])


def _zones(plan: AcquisitionPlan, anat: Anatomy, sub_slice_mm: float) -> tuple[list[tuple[int, int, int]], slice]:
    """Slice ranges (first, end, sub-slices per slice), sub-slices only around the pancreas; the
    range that can hold the pancreas."""
    sub = max(1, math.ceil(plan.dz / sub_slice_mm - 1e-6))
    reach = float(np.abs(plan.shifts[:, 2]).max()) + SUB_SLICE_PAD_SLICES * plan.dz
    w = plan.w_slices
    z0 = int(np.searchsorted(w, anat.pancreas_w[0] - reach))
    z1 = int(np.searchsorted(w, anat.pancreas_w[1] + reach, side="right"))
    zones = [(0, z0, 1), (z0, z1, sub), (z1, plan.slices, 1)]
    return [zone for zone in zones if zone[1] > zone[0]], slice(z0, z1)


def _thick_slices(fine: np.ndarray, sub: int) -> np.ndarray:
    """``[Z * sub, Y, X]`` sub-slices averaged into ``[Z, Y, X]`` slices."""
    if sub == 1:
        return fine
    return fine.reshape(-1, sub, *fine.shape[1:]).mean(axis=1)


def _drop_slivers(mask: np.ndarray, pixel_area_mm2: float) -> np.ndarray:
    """Per slice, islands under ``MIN_ISLAND_MM2`` removed (in place): labels are drawn slice by
    slice and nobody outlines a sliver of a few pixels."""
    least = MIN_ISLAND_MM2 / pixel_area_mm2
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        labels, count = ndimage.label(mask[z])
        sizes = np.bincount(labels.ravel())
        small = np.flatnonzero(sizes < least)
        if count and small.size:
            mask[z][np.isin(labels, small[small > 0])] = False
    return mask


def generate_case(case_number: int, modality: str | None = None, seed: int = 0,
                  config: PhantomConfig | None = None) -> tuple[Scan, np.ndarray]:
    """Render one synthetic abdominal scan and its pancreas label.

    Deterministic in ``(case_number, modality, seed, config)``. The anatomy
    depends only on ``(case_number, seed)``, not on the matrix size, so a 64 px
    case is a low-resolution version of the 512 px one.

    Args:
        case_number: patient number (any int; NIH numbering starts at 1).
        modality: ``"CT"`` (portal-venous contrast CT, whole abdomen) or ``"MRI"`` (T1, 2-4
            breath holds); None = ``config.modality`` (CT by default). When given it
            wins over ``config.modality``.
        seed: dataset seed.
        config: sampling ranges; default :class:`PhantomConfig()`.

    Returns:
        ``(scan, mask)``: ``scan.array`` is ``[Z, Y, X]`` int16 HU (CT) or float32
        arbitrary units (MRI), ``scan.affine`` maps (col, row, slice) to RAS mm
        (``diag(-dx, -dy, dz)`` plus origin, slices ascending to the head);
        ``mask`` is ``[Z, Y, X]`` uint8, 1 = pancreas (one 26-connected component), on the same grid.
    """
    cfg = config if config is not None else PhantomConfig()
    modality = cfg.modality if modality is None else modality
    if modality not in TISSUE_TABLES:
        raise ValueError(f"modality must be one of {tuple(TISSUE_TABLES)}, got {modality!r}")
    anat, plan, rng_acq, rng_noise = anatomy_and_plan(case_number, modality, seed, cfg)
    values = {k: (rng_acq.uniform(lo, hi), t) for k, (lo, hi, t) in TISSUE_TABLES[modality].items()}
    is_mri = modality == "MRI"
    n, dx = plan.matrix, plan.dx
    if is_mri:
        psf_mm = rng_acq.uniform(*cfg.mri_psf_mm)
        noise_sd = rng_acq.uniform(*cfg.mri_noise_fraction) * values["fat"][0]
        bias = rng_acq.normal(0, cfg.mri_bias_strength, size=BIAS_TERMS)
    else:
        psf_mm = rng_acq.uniform(*cfg.ct_psf_mm)
        noise_sd = rng_acq.uniform(*cfg.ct_noise_hu)
    psf_px = psf_mm / dx
    u, v = plan.in_plane()
    w_slices = plan.w_slices
    texture = TextureField(rng_noise, n, dx, plan.dz, cfg)
    noise = NoiseTiles(rng_noise, n, 0.0 if is_mri else psf_px)
    static, background = _static_background(anat, u, v, dx, values)
    ops = anat.ops[static:]

    array = np.empty((plan.slices, n, n), np.float32 if is_mri else np.int16)
    mask = np.zeros((plan.slices, n, n), bool)
    zones, organ = _zones(plan, anat, cfg.sub_slice_mm)
    for first, end, sub in zones:
        sub_off = ((np.arange(sub) + 0.5) / sub - 0.5) * plan.dz
        per_chunk = max(1, CHUNK_VOXELS // (sub * n * n))
        for z0 in range(first, end, per_chunk):
            z1 = min(end, z0 + per_chunk)
            wf = (w_slices[z0:z1, None] + sub_off[None, :]).reshape(-1).astype(np.float32)
            shift = np.repeat(plan.shifts[z0:z1], sub, axis=0) if is_mri else None
            canvas = Canvas(u, v, wf, shift, dx, background)
            for tissue, shape, role in ops:
                canvas.paint(shape, *values[tissue], role)
            img, tex_amp, pv = (_thick_slices(x, sub) for x in (canvas.img, canvas.tex, canvas.pv))
            mask[z0:z1] = pv >= PV_LABEL
            del canvas
            for k in range(z1 - z0):
                img[k] += tex_amp[k] * texture.next()
            img = ndimage.gaussian_filter(img, (0, psf_px, psf_px), truncate=PSF_TRUNCATE)
            if is_mri:
                img *= bias_field(bias, u, v, w_slices[z0:z1], plan.fov, float(w_slices.mean()))
                for k in range(z1 - z0):
                    img[k] = np.hypot(img[k] + np.float32(noise_sd) * noise.draw(), np.float32(noise_sd) * noise.draw())
                array[z0:z1] = np.clip(img, 0, MRI_MAX_VALUE)
            else:
                for k in range(z1 - z0):
                    img[k] += np.float32(noise_sd) * noise.draw()
                array[z0:z1] = np.clip(np.rint(img), CT_MIN_HU, CT_MAX_HU)

    mask[organ] = largest_component(_drop_slivers(mask[organ], dx * dx))
    mask = mask.view(np.uint8)
    affine = np.array([[-dx, 0, 0, -float(u[0])],
                       [0, -dx, 0, -float(v[0])],
                       [0, 0, plan.dz, float(w_slices[0]) + plan.table_z],
                       [0, 0, 0, 1.0]])
    source = {"generator": "pancreas_seg.data.phantom", "case_number": str(case_number),
              "seed": str(seed), "modality": modality}
    logger.debug("phantom case %d %s: %s voxels, spacing (%.2f, %.3f, %.3f) mm, pancreas %.1f mL",
                 case_number, modality, array.shape, plan.dz, dx, dx, mask.sum() * dx * dx * plan.dz / 1000)
    return Scan(array, affine, modality, source), mask
