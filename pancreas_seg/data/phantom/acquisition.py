"""Acquisition: the scanned grid (whole-abdomen CT, multi-breath-hold MRI) and the random fields
of image formation (3D tissue texture, per-slice noise)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pancreas_seg.data.phantom.anatomy import build_anatomy
from pancreas_seg.data.phantom.canvas import Anatomy
from pancreas_seg.data.phantom.config import MODALITY_CODES, NOISE_TILES, REFERENCE_MATRIX, PhantomConfig

IN_PLANE_OFFSET_SD_MM = (8.0, 6.0)  # mm, sd of the patient's offset from the field-of-view centre (left, posterior)
TABLE_Z_MM = (-300.0, 0.0)  # mm, range of the world z of w = 0 (couch position)
TEXTURE_BURN_IN = 4.0  # correlation lengths run before the first slice's texture
CT_THIN_SLICE_SKEW = 2.0  # CT slice thickness drawn as low + (high - low) * U ** skew: mostly thin slices
CT_BELOW_PANCREAS_MM = 60.0  # mm, least CT coverage below the pancreas
FIRST_HOLD_SD_MM = 1.5  # mm, sd of the viscera offset during the first MRI breath hold
HOLD_SHIFT_WEIGHTS = (0.4, 0.6, 1.0)  # relative sd of a breath-hold shift direction (left, posterior, superior)


@dataclass(frozen=True)
class AcquisitionPlan:
    """Where a scan's slices lie and how the viscera move between them.

    ``shifts[z]`` is the viscera displacement (u, v, w mm) while slice ``z`` was acquired: zero for
    CT; for MRI constant within a breath hold, jumping between holds (``block_starts``).
    """

    modality: str
    matrix: int  # px
    fov: float  # mm, in-plane field of view
    dz: float  # mm, slice thickness = spacing
    w0: float  # mm, patient-frame w of the first (most inferior) slice centre
    slices: int
    off_u: float  # mm, patient-frame u of the field-of-view centre
    off_v: float  # mm, patient-frame v of the field-of-view centre
    table_z: float  # mm, world z of w = 0
    shifts: np.ndarray  # [Z, 3] float64 mm
    block_starts: list  # first slice of each breath hold ([0] for CT)

    @property
    def dx(self) -> float:
        """In-plane pixel size (mm)."""
        return self.fov / self.matrix

    @property
    def w_slices(self) -> np.ndarray:
        """Patient-frame w of every slice centre (mm), ascending."""
        return self.w0 + self.dz * np.arange(self.slices)

    def in_plane(self) -> tuple[np.ndarray, np.ndarray]:
        """Patient-frame u (columns) and v (rows) of the pixel centres, float32 mm."""
        grid = (np.arange(self.matrix) - (self.matrix - 1) / 2) * self.dx
        return (grid + self.off_u).astype(np.float32), (grid + self.off_v).astype(np.float32)


def case_rngs(case_number: int, modality: str, seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for anatomy, tissue values + acquisition, and noise."""
    ss = np.random.SeedSequence([int(seed), int(case_number), 0])
    anatomy, _ = ss.spawn(2)
    ss_mod = np.random.SeedSequence([int(seed), int(case_number), MODALITY_CODES[modality]])
    values, noise = ss_mod.spawn(2)
    return np.random.default_rng(anatomy), np.random.default_rng(values), np.random.default_rng(noise)


def _ct_range(anat: Anatomy, cfg: PhantomConfig, rng: np.random.Generator) -> tuple[float, float, int]:
    """CT: whole abdomen from just above the liver dome down towards the pelvis. (dz, w0, slices)."""
    lo, hi = cfg.ct_slice_mm
    dz = lo + (hi - lo) * rng.uniform() ** CT_THIN_SLICE_SKEW
    length = rng.uniform(*cfg.ct_length_mm)
    slices = int(np.clip(round(length / dz), *cfg.ct_slices))
    top = anat.dome_w + rng.uniform(*cfg.ct_above_dome_mm)
    w0 = min(top - (slices - 1) * dz, anat.pancreas_w[0] - CT_BELOW_PANCREAS_MM)
    p0, p1 = anat.pancreas_w
    if (slices - 1) * dz < p1 - p0 + 2 * CT_BELOW_PANCREAS_MM:  # a short scan (custom config) is centred on the pancreas
        w0 = (p0 + p1) / 2 - (slices - 1) * dz / 2
    return dz, w0, slices


def _mri_holds(anat: Anatomy, cfg: PhantomConfig, rng: np.random.Generator) -> tuple[float, float, list, np.ndarray]:
    """MRI: 2-4 breath holds of consecutive slices covering the pancreas. (dz, w0, block sizes, block shifts)."""
    dz = rng.uniform(*cfg.mri_slice_mm)
    p0, p1 = anat.pancreas_w
    sizes = list(rng.integers(cfg.mri_block_slices[0], cfg.mri_block_slices[1] + 1,
                              size=int(rng.integers(cfg.mri_blocks[0], cfg.mri_blocks[1] + 1))))
    need = math.ceil((p1 - p0 + 2 * cfg.mri_margin_mm) / dz) + 1
    while sum(sizes) < need:  # grow the smallest hold, then add holds, until the pancreas fits
        if min(sizes) < cfg.mri_block_slices[1]:
            sizes[int(np.argmin(sizes))] += 1
        elif len(sizes) < cfg.mri_blocks[1]:
            sizes.append(cfg.mri_block_slices[0])
        else:
            break
    slack = max((sum(sizes) - 1) * dz - (p1 - p0) - 2 * cfg.mri_margin_mm, 0.0)
    w0 = p0 - cfg.mri_margin_mm - rng.uniform(0, slack)
    shift = rng.normal(0, FIRST_HOLD_SD_MM, 3)
    shifts = [shift.copy()]
    for _ in sizes[1:]:
        direction = rng.normal(size=3) * np.asarray(HOLD_SHIFT_WEIGHTS)
        shift = shift + direction / np.linalg.norm(direction) * rng.uniform(*cfg.mri_block_shift_mm)
        shifts.append(shift.copy())
    return dz, w0, [int(s) for s in sizes], np.array(shifts)


def plan_acquisition(anat: Anatomy, cfg: PhantomConfig, modality: str, fov: float, offset: tuple[float, float],
                     rng: np.random.Generator) -> AcquisitionPlan:
    """Draw the scanned grid of one case (``rng``: the case's acquisition stream)."""
    if modality == "MRI":
        dz, w0, sizes, hold_shifts = _mri_holds(anat, cfg, rng)
        slices = sum(sizes)
        shifts = np.repeat(hold_shifts, sizes, axis=0)
        starts = [int(s) for s in np.cumsum([0] + sizes[:-1])]
    else:
        dz, w0, slices = _ct_range(anat, cfg, rng)
        shifts, starts = np.zeros((slices, 3)), [0]
    return AcquisitionPlan(modality, cfg.matrix, fov, float(dz), float(w0), slices, offset[0], offset[1],
                           float(rng.uniform(*TABLE_Z_MM)), shifts, starts)


def anatomy_and_plan(case_number: int, modality: str, seed: int,
                     cfg: PhantomConfig) -> tuple[Anatomy, AcquisitionPlan, np.random.Generator, np.random.Generator]:
    """One case's anatomy and scanned grid, and its value and noise generators (in that state)."""
    rng_anat, rng_acq, rng_noise = case_rngs(case_number, modality, seed)
    fov = REFERENCE_MATRIX * rng_anat.uniform(*cfg.pixel_mm)  # same patient size at every matrix
    anat = build_anatomy(rng_anat, fov)
    offset = (rng_anat.normal(0, IN_PLANE_OFFSET_SD_MM[0]), anat.body_center_v + rng_anat.normal(0, IN_PLANE_OFFSET_SD_MM[1]))
    return anat, plan_acquisition(anat, cfg, modality, fov, offset, rng_acq), rng_acq, rng_noise


def acquisition_plan(case_number: int, modality: str | None = None, seed: int = 0,
                     config: PhantomConfig | None = None) -> AcquisitionPlan:
    """The grid and breath holds :func:`~pancreas_seg.data.phantom.generate_case` uses for these arguments."""
    cfg = config if config is not None else PhantomConfig()
    return anatomy_and_plan(case_number, cfg.modality if modality is None else modality, seed, cfg)[1]


class NoiseTiles:
    """A few Gaussian-filtered white-noise tiles (periodic, unit sd); each draw is one of them,
    randomly rolled and flipped, so slices get independent-looking noise at a fraction of the cost."""

    def __init__(self, rng: np.random.Generator, size: int, sigma_px: float, count: int = NOISE_TILES):
        tiles = rng.standard_normal((count, size, size), dtype=np.float32)
        if sigma_px > 0:
            tiles = ndimage.gaussian_filter(tiles, (0, sigma_px, sigma_px), mode="wrap")
        tiles /= tiles.std(axis=(1, 2), keepdims=True)
        self.tiles, self.rng = tiles, rng

    def draw(self) -> np.ndarray:
        """``[size, size]`` float32, unit sd."""
        k, dy, dx, flip = self.rng.integers(0, (len(self.tiles), *self.tiles.shape[1:], 4))
        tile = np.roll(self.tiles[k], (int(dy), int(dx)), axis=(0, 1))
        return tile[::-1] if flip & 1 else tile


class TextureField:
    """Tissue texture as a 3D field sampled slice by slice: two components (fine, coarse), each
    Gaussian-correlated in-plane and, through the slices, a cascade of two AR(1) filters (a
    second-order process: correlation ``(1 + d / l) exp(-d / l)``, smooth at zero lag like the
    in-plane one)."""

    def __init__(self, rng: np.random.Generator, size: int, dx: float, dz: float, cfg: PhantomConfig):
        self.tiles = (NoiseTiles(rng, size, cfg.texture_mm / dx), NoiseTiles(rng, size, cfg.coarse_texture_mm / dx))
        lengths = (cfg.texture_z_mm, cfg.coarse_texture_z_mm)
        self.rho = [math.exp(-dz / length) for length in lengths]
        self.gain = [math.sqrt((1 - r * r) / (1 + r * r)) for r in self.rho]  # unit variance after the cascade
        self.weights = (math.sqrt(1 - cfg.coarse_texture_share), math.sqrt(cfg.coarse_texture_share))
        self.state = [[tiles.draw().copy(), np.zeros((size, size), np.float32)] for tiles in self.tiles]
        for _ in range(math.ceil(TEXTURE_BURN_IN * max(lengths) / dz)):  # reach the stationary state
            self._step()

    def _step(self) -> None:
        for (first, second), tiles, rho in zip(self.state, self.tiles, self.rho):
            keep, new = np.float32(rho), np.float32(math.sqrt(1 - rho * rho))
            first *= keep
            first += new * tiles.draw()
            second *= keep
            second += new * first

    def next(self) -> np.ndarray:
        """The texture of the next slice: ``[size, size]`` float32, unit sd."""
        self._step()
        (_, fine), (_, coarse) = self.state
        return (np.float32(self.weights[0] * self.gain[0]) * fine
                + np.float32(self.weights[1] * self.gain[1]) * coarse)


def bias_field(coef: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray, fov: float, w_mid: float) -> np.ndarray:
    """Smooth multiplicative MRI bias ``exp(poly)`` on ``[Z, Y, X]`` (second order in-plane, linear in
    z about ``w_mid``, the scan's centre)."""
    x = (u / (fov / 2)).astype(np.float32)[None, None, :]
    y = (v / (fov / 2)).astype(np.float32)[None, :, None]
    z = ((w - w_mid) / (fov / 2)).astype(np.float32)[:, None, None]
    c = coef.astype(np.float32)
    return np.exp(c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y + c[5] * z)
