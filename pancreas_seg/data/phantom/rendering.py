"""Rendering and image formation: painting on the slice grid, texture, noise, PSF, MRI bias."""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from pancreas_seg.data.phantom.anatomy import build_anatomy
from pancreas_seg.data.phantom.config import (CHUNK_VOXELS, CT_MAX_HU, CT_MIN_HU, MODALITY_CODES, MRI_MAX_VALUE, NORMAL,
                                              ORGAN, REFERENCE_MATRIX, TISSUE_TABLES, PhantomConfig)
from pancreas_seg.data.phantom.shapes import Shape
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)


class _Canvas:
    """Fine-grid chunk being painted: intensity, texture amplitude, pancreas partial volume."""

    def __init__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, shift: np.ndarray | None, h: float):
        self.u, self.v, self.w = u, v, w  # float32 1D, mm
        self.shift = shift  # [Zf, 3] mm or None
        self.inv_h = np.float32(1.0 / h)
        shape = (len(w), len(v), len(u))
        self.img = np.zeros(shape, np.float32)
        self.tex = np.zeros(shape, np.float32)
        self.pv = np.zeros(shape, np.float32)
        self.has_organ = False
        self.max_shift = np.zeros(3) if shift is None else np.abs(shift).max(axis=0)

    def paint(self, shape: Shape, value: float, tex_amp: float, role: int) -> None:
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


def _filter_gain(sigma_px: float) -> float:
    """Sum of squared weights of a 1D Gaussian filter (noise variance gain)."""
    n = 2 * int(4 * sigma_px + 1) + 1
    delta = np.zeros(n)
    delta[n // 2] = 1.0
    return float(np.sum(ndimage.gaussian_filter1d(delta, sigma_px) ** 2))


def _case_rngs(case_number: int, modality: str, seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for anatomy, tissue values + acquisition, and noise."""
    ss = np.random.SeedSequence([int(seed), int(case_number), 0])
    anatomy, _ = ss.spawn(2)
    ss_mod = np.random.SeedSequence([int(seed), int(case_number), MODALITY_CODES[modality]])
    values, noise = ss_mod.spawn(2)
    return np.random.default_rng(anatomy), np.random.default_rng(values), np.random.default_rng(noise)


def generate_case(case_number: int, modality: str | None = None, seed: int = 0,
                  config: PhantomConfig | None = None) -> tuple[Scan, np.ndarray]:
    """Render one synthetic abdominal scan and its pancreas label.

    Deterministic in ``(case_number, modality, seed, config)``. The anatomy
    depends only on ``(case_number, seed)``, not on the matrix size, so a 64 px
    case is a low-resolution version of the 512 px one.

    Args:
        case_number: patient number (any int; NIH numbering starts at 1).
        modality: ``"CT"`` (portal-venous contrast CT) or ``"MRI"`` (T1, multi
            breath-hold); None = ``config.modality`` (CT by default). When given it
            wins over ``config.modality``.
        seed: dataset seed.
        config: sampling ranges; default :class:`PhantomConfig()`.

    Returns:
        ``(scan, mask)``: ``scan.array`` is ``[Z, Y, X]`` int16 HU (CT) or float32
        arbitrary units (MRI), ``scan.affine`` maps (col, row, slice) to RAS mm
        (``diag(-dx, -dy, dz)`` plus origin, slices ascending to the head);
        ``mask`` is ``[Z, Y, X]`` uint8, 1 = pancreas, on the same grid.
    """
    cfg = config if config is not None else PhantomConfig()
    modality = cfg.modality if modality is None else modality
    if modality not in TISSUE_TABLES:
        raise ValueError(f"modality must be one of {tuple(TISSUE_TABLES)}, got {modality!r}")
    rng_anat, rng_acq, rng_noise = _case_rngs(case_number, modality, seed)

    # acquisition geometry (in-plane drawn from the anatomy stream: same patient size at every matrix)
    dx512 = rng_anat.uniform(*cfg.pixel_mm)
    fov = REFERENCE_MATRIX * dx512
    anat = build_anatomy(rng_anat, fov)
    n = cfg.matrix
    dx = fov / n
    off_u = rng_anat.normal(0, 8)
    off_v = anat.body_center_v + rng_anat.normal(0, 6)
    is_mri = modality == "MRI"
    dz = rng_acq.uniform(*(cfg.mri_slice_mm if is_mri else cfg.ct_slice_mm))
    nmin, nmax = cfg.mri_slices if is_mri else cfg.ct_slices
    p0, p1 = anat.pancreas_w
    m_lo, m_hi = rng_acq.uniform(*cfg.margin_mm, size=2)
    nz = int(round((p1 - p0 + m_lo + m_hi) / dz))
    nz_clipped = int(np.clip(nz, max(nmin, math.ceil((p1 - p0) / dz) + 2), max(nmax, math.ceil((p1 - p0) / dz) + 2)))
    w0 = p0 - m_lo - (nz_clipped - nz) * dz * (m_lo / (m_lo + m_hi))
    nz = nz_clipped
    w_slices = w0 + dz * np.arange(nz)
    table_z = rng_acq.uniform(-300.0, 0.0)  # mm, world z of w = 0 (couch position)

    u = ((np.arange(n) - (n - 1) / 2) * dx + off_u).astype(np.float32)
    v = ((np.arange(n) - (n - 1) / 2) * dx + off_v).astype(np.float32)
    sub = max(1, math.ceil(dz / cfg.sub_slice_mm - 1e-6))
    sub_off = ((np.arange(sub) + 0.5) / sub - 0.5) * dz

    table = TISSUE_TABLES[modality]
    values = {k: (rng_acq.uniform(lo, hi), t) for k, (lo, hi, t) in table.items()}
    if is_mri:
        shifts = rng_acq.normal(0, 1, size=(nz, 3)) * np.asarray(cfg.mri_breath_shift_mm)
        psf_mm = rng_acq.uniform(*cfg.mri_psf_mm)
        noise_sigma = rng_acq.uniform(*cfg.mri_noise_fraction) * values["fat"][0]
        bias = rng_acq.normal(0, cfg.mri_bias_strength, size=6)
    else:
        shifts = None
        psf_mm = rng_acq.uniform(*cfg.ct_psf_mm)
        noise_sd = rng_acq.uniform(*cfg.ct_noise_hu)
    psf_px = psf_mm / dx
    tex_px = cfg.texture_mm / dx
    tex_norm = np.float32(1.0 / _filter_gain(tex_px))  # 2D sd gain = sqrt(gain_1d ** 2)

    image = np.empty((nz, n, n), np.float32)
    pv = np.empty((nz, n, n), np.float32)
    per_chunk = max(1, CHUNK_VOXELS // (sub * n * n))
    for z0 in range(0, nz, per_chunk):
        z1 = min(nz, z0 + per_chunk)
        wf = (w_slices[z0:z1, None] + sub_off[None, :]).reshape(-1).astype(np.float32)
        sh = None if shifts is None else np.repeat(shifts[z0:z1], sub, axis=0)
        canvas = _Canvas(u, v, wf, sh, dx)
        canvas.img[...] = values["air"][0]
        for tissue, shape, role in anat.ops:
            val, tex = values[tissue]
            canvas.paint(shape, val, tex, role)
        shape3 = (z1 - z0, sub, n, n)
        img = canvas.img.reshape(shape3).mean(axis=1)
        tex_amp = canvas.tex.reshape(shape3).mean(axis=1)
        pv[z0:z1] = canvas.pv.reshape(shape3).mean(axis=1)
        del canvas
        white = rng_noise.standard_normal(img.shape, dtype=np.float32)
        img += tex_amp * ndimage.gaussian_filter(white, (0, tex_px, tex_px)) * tex_norm
        if is_mri:
            img = ndimage.gaussian_filter(img, (0, psf_px, psf_px))
            img *= _bias_field(bias, u, v, w_slices[z0:z1], fov)
            n1 = rng_noise.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
            n2 = rng_noise.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
            image[z0:z1] = np.sqrt((img + n1) ** 2 + n2 ** 2)
        else:
            # noise added before the PSF so it has CT's correlated texture; scaled to the target sd after filtering
            white = rng_noise.standard_normal(img.shape, dtype=np.float32)
            img += white * np.float32(noise_sd / _filter_gain(psf_px))
            image[z0:z1] = ndimage.gaussian_filter(img, (0, psf_px, psf_px))

    mask = (pv >= 0.5).astype(np.uint8)
    if is_mri:
        array = np.clip(image, 0, MRI_MAX_VALUE).astype(np.float32)
    else:
        array = np.clip(np.rint(image), CT_MIN_HU, CT_MAX_HU).astype(np.int16)
    affine = np.array([[-dx, 0, 0, -float(u[0])],
                       [0, -dx, 0, -float(v[0])],
                       [0, 0, dz, float(w_slices[0]) + table_z],
                       [0, 0, 0, 1.0]])
    source = {"generator": "pancreas_seg.data.phantom", "case_number": str(case_number),
              "seed": str(seed), "modality": modality}
    logger.debug("phantom case %d %s: %s voxels, spacing (%.2f, %.3f, %.3f) mm, pancreas %.1f mL",
                 case_number, modality, array.shape, dz, dx, dx, mask.sum() * dx * dx * dz / 1000)
    return Scan(array, affine, modality, source), mask


def _bias_field(coef: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray, fov: float) -> np.ndarray:
    """Smooth multiplicative MRI bias ``exp(poly)`` on ``[Z, Y, X]`` (second order in-plane, linear in z)."""
    x = (u / (fov / 2)).astype(np.float32)[None, None, :]
    y = (v / (fov / 2)).astype(np.float32)[None, :, None]
    z = ((w - w.mean()) / (fov / 2)).astype(np.float32)[:, None, None]
    c = coef.astype(np.float32)
    return np.exp(c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y + c[5] * z)

