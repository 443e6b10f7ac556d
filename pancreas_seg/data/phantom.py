"""Synthetic abdominal CT / T1 MRI phantoms with a pancreas label, in real file formats.

No real scans can be downloaded in this project, so the pipeline (conversion,
training, evaluation) is exercised on phantoms that imitate the two datasets of
the paper (Sec. IV-A): the NIH Pancreas-CT set (portal-venous contrast CT,
512x512 slices, 1-2.5 mm thick) and a T1-weighted MRI set acquired over
several breath holds (5-8 mm slices). The pancreas is meant to be *hard* to
tell from its neighbours, as in Fig. 2 of the paper: its intensity is close to
bowel wall, duodenum, stomach wall, collapsed jejunum and veins that touch it.

Geometry. Anatomy is built in a patient frame in mm: ``u`` towards the
patient's left, ``v`` posterior, ``w`` superior, origin at the centre of the
abdominal cavity at the level of the pancreatic head. Every structure is an
implicit shape (a smooth approximate signed distance ``F``, negative inside)
evaluated only in its bounding box. Partial volume: in-plane by a one-pixel
linear ramp of ``F`` (anti-aliasing), through-plane by rendering each slice as
the mean of thin sub-slices (``PhantomConfig.sub_slice_mm``). Structures are
composited back to front (painter's algorithm); the pancreas partial-volume
map is reduced by anything painted over it, and the label is that map
thresholded at 0.5 on the final grid.

Image formation: per-slice texture, then noise shaped by the in-plane
point-spread function (CT), or blur, a smooth multiplicative bias field and
Rician noise (MRI). MRI slices are each acquired in a separate breath hold:
the viscera get a random per-slice shift, which gives the much larger
inter-slice shape change the paper measured (AVD 2.69 mm MRI vs 0.35 mm CT,
Sec. IV-D).

Orientation: axial slices in the usual DICOM patient orientation
(ImageOrientationPatient 1\\0\\0\\0\\1\\0: image right = patient left, image
top = anterior), slices ascending towards the head. The affine (voxel ``(col, row, slice)`` -> RAS mm)
is ``diag(-dx, -dy, dz)`` with a scanner-like origin, like a CT read from DICOM.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage
from pydicom.uid import generate_uid
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation

from pancreas_seg.data.parallel import pending, run_cases
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)

REFERENCE_MATRIX = 512  # px, matrix at which ``pixel_mm`` is specified
CT_MIN_HU = -1024  # HU, smallest value stored in CT images
CT_MAX_HU = 3071  # HU, largest value stored in CT images
MRI_MAX_VALUE = 4095.0  # arbitrary units, MRI values are clipped here
CHUNK_VOXELS = 6_000_000  # fine voxels rendered at once (memory vs speed)
NIH_PATIENT_FMT = "PANCREAS_{:04d}"  # PatientID and folder of NIH Pancreas-CT
NIH_IMAGE_DIR = "Pancreas-CT"  # top folder of the NIH images as TCIA ships them
NIH_LABEL_DIR = "TCIA_pancreas_labels-02-05-2017"  # label folder of the NIH set
NIH_LABEL_FMT = "label{:04d}.nii.gz"  # label file name of the NIH set
NIH_FILE_FMT = "1-{:03d}.dcm"  # DICOM file name from the InstanceNumber, as in the TCIA download
NIH_DESCENDING_EVERY = 3  # every 3rd case has InstanceNumber descending (sorting test)
NIH_FLIP_LABEL_EVERY = 2  # every 2nd case stores its label with the row axis flipped
MODALITY_CODES = {"CT": 1, "MRI": 2}  # mixed into the seed so CT and MRI differ


@dataclass(frozen=True)
class PhantomConfig:
    """How phantoms are sampled. One config serves both modalities; the
    modality is chosen per call of :func:`generate_case`."""

    modality: str = "CT"  # "CT" | "MRI", used when generate_case gets no modality (write_phantom_set, make_phantoms)
    matrix: int = 512  # px, rows = columns of each axial slice (NIH: 512, Sec. IV-A)
    pixel_mm: tuple[float, float] = (0.6, 0.9)  # mm, in-plane pixel range at 512 px; scaled by 512/matrix so the field of view stays anatomical
    ct_slice_mm: tuple[float, float] = (1.0, 2.5)  # mm, CT slice thickness = spacing range (NIH Pancreas-CT)
    mri_slice_mm: tuple[float, float] = (5.0, 8.0)  # mm, MRI slice thickness range (paper: 7 mm on average, Sec. IV-D)
    margin_mm: tuple[float, float] = (15.0, 45.0)  # mm, extent above and below the pancreas covered by the scan
    ct_slices: tuple[int, int] = (60, 160)  # slices, CT slice count kept in this range by trimming/extending the margins
    mri_slices: tuple[int, int] = (16, 48)  # slices, same for MRI
    sub_slice_mm: float = 1.25  # mm, thickest sub-slice averaged into a slice (through-plane partial volume)
    ct_noise_hu: tuple[float, float] = (10.0, 20.0)  # HU, standard deviation of CT noise in a uniform region
    ct_psf_mm: tuple[float, float] = (0.5, 0.8)  # mm, sigma of the in-plane Gaussian PSF of CT
    mri_psf_mm: tuple[float, float] = (0.9, 1.4)  # mm, sigma of the in-plane PSF of MRI (acquired ~256 px, shown at 512)
    mri_noise_fraction: tuple[float, float] = (0.015, 0.035)  # sigma of the Rician noise as a fraction of the fat signal
    mri_bias_strength: float = 0.25  # sd of the log-bias polynomial coefficients (multiplicative bias field)
    mri_breath_shift_mm: tuple[float, float, float] = (1.5, 1.5, 2.5)  # mm, sd of per-slice viscera shift (left, posterior, superior) between breath holds
    texture_mm: float = 1.5  # mm, correlation length of tissue texture

    def __post_init__(self) -> None:
        if self.modality not in MODALITY_CODES:
            raise ValueError(f"modality must be one of {tuple(MODALITY_CODES)}, got {self.modality!r}")
        if self.matrix < 32:
            raise ValueError(f"matrix must be at least 32 px, got {self.matrix}")
        for name in ("pixel_mm", "ct_slice_mm", "mri_slice_mm", "margin_mm", "ct_noise_hu",
                     "ct_psf_mm", "mri_psf_mm", "mri_noise_fraction", "ct_slices", "mri_slices"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if self.pixel_mm[0] <= 0 or self.ct_slice_mm[0] <= 0 or self.mri_slice_mm[0] <= 0:
            raise ValueError("pixel and slice sizes must be positive")
        if self.sub_slice_mm <= 0:
            raise ValueError(f"sub_slice_mm must be positive, got {self.sub_slice_mm}")


# --- tissue tables --------------------------------------------------------------
# name: (low, high, texture sd). CT in HU for portal-venous contrast CT; MRI in
# arbitrary units of a non-fat-suppressed T1 gradient echo (fat bright, pancreas
# brighter than liver, fluid dark, vessels flow voids). A case draws each value
# uniformly from its range; texture sd is in the same unit.
CT_TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (-1000, -1000, 0), "table": (-450, -300, 30), "skin": (10, 40, 5),
    "fat": (-115, -90, 8), "visceral_fat": (-105, -70, 14), "muscle": (45, 65, 6),
    "bone_cortex": (700, 1100, 60), "bone_marrow": (180, 320, 40), "disc": (70, 100, 6),
    "rib": (350, 550, 60), "csf": (5, 20, 3), "liver": (95, 125, 6), "spleen": (100, 130, 5),
    "kidney_cortex": (150, 200, 6), "kidney_medulla": (100, 140, 6), "bile": (0, 20, 3),
    "bowel_wall": (75, 110, 8), "bowel_fluid": (5, 30, 4), "gas": (-1000, -1000, 0),
    "stool": (-160, -60, 120), "food": (20, 60, 25), "artery": (150, 210, 5),
    "ivc": (100, 140, 6), "portal": (130, 180, 5), "pancreas": (85, 115, 10),
    "duct": (5, 25, 3), "oral_contrast": (200, 400, 20),
}
MRI_TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (5, 5, 0), "table": (5, 10, 0), "skin": (500, 650, 20),
    "fat": (1050, 1200, 30), "visceral_fat": (950, 1150, 45), "muscle": (330, 430, 15),
    "bone_cortex": (30, 60, 5), "bone_marrow": (600, 780, 40), "disc": (250, 330, 15),
    "rib": (250, 400, 30), "csf": (120, 180, 8), "liver": (520, 640, 18), "spleen": (380, 460, 15),
    "kidney_cortex": (430, 500, 15), "kidney_medulla": (300, 360, 12), "bile": (130, 200, 8),
    "bowel_wall": (480, 600, 25), "bowel_fluid": (120, 220, 10), "gas": (5, 5, 0),
    "stool": (250, 450, 120), "food": (300, 420, 40), "artery": (40, 90, 10),
    "ivc": (60, 140, 15), "portal": (60, 140, 15), "pancreas": (600, 720, 30),
    "duct": (150, 220, 8), "oral_contrast": (120, 220, 10),
}
TISSUE_TABLES = {"CT": CT_TISSUES, "MRI": MRI_TISSUES}

# roles of a paint operation
NORMAL, ORGAN, ORGAN_PART = 0, 1, 2  # ORGAN sets the label, ORGAN_PART leaves it alone


# --- implicit shapes (private) ----------------------------------------------------
class _Shape:
    """A smooth approximate signed distance ``F`` (mm, < 0 inside) in the patient frame."""

    moves = True  # follows the viscera's breathing shift (MRI)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corner in (u, v, w) mm."""
        raise NotImplementedError

    def sdf(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``F`` at broadcastable coordinate arrays (mm)."""
        raise NotImplementedError


def _ellipse_sdf(*d_over: tuple[np.ndarray, float]) -> np.ndarray:
    """Approximate distance to an ellipse/ellipsoid boundary from axis offsets and radii."""
    k0 = None
    k1 = None
    for d, r in d_over:
        a = (d / r) ** 2
        b = (d / (r * r)) ** 2
        k0 = a if k0 is None else k0 + a
        k1 = b if k1 is None else k1 + b
    k0 = np.sqrt(k0)
    k1 = np.sqrt(k1) + np.float32(1e-6)
    return k0 * (k0 - 1.0) / k1


@dataclass
class _Ellipsoid(_Shape):
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation: np.ndarray | None = None  # 3x3, frame -> ellipsoid axes
    moves: bool = True

    def bbox(self):
        c = np.asarray(self.center)
        r = np.full(3, max(self.radii)) if self.rotation is not None else np.asarray(self.radii)
        return c - r, c + r

    def sdf(self, u, v, w):
        du, dv, dw = u - self.center[0], v - self.center[1], w - self.center[2]
        if self.rotation is not None:
            m = self.rotation.astype(np.float32)
            du, dv, dw = (m[0, 0] * du + m[0, 1] * dv + m[0, 2] * dw,
                          m[1, 0] * du + m[1, 1] * dv + m[1, 2] * dw,
                          m[2, 0] * du + m[2, 1] * dv + m[2, 2] * dw)
        return _ellipse_sdf((du, self.radii[0]), (dv, self.radii[1]), (dw, self.radii[2]))


@dataclass
class _Prism(_Shape):
    """Elliptic cylinder along ``w``; different anterior/posterior half-depths."""

    center: tuple[float, float]
    radius_u: float
    radius_ant: float
    radius_post: float
    w_range: tuple[float, float] | None = None
    moves: bool = False

    def bbox(self):
        w0, w1 = self.w_range if self.w_range else (-1e4, 1e4)
        lo = np.array([self.center[0] - self.radius_u, self.center[1] - self.radius_ant, w0])
        hi = np.array([self.center[0] + self.radius_u, self.center[1] + self.radius_post, w1])
        return lo, hi

    def sdf(self, u, v, w):
        dv = v - self.center[1]
        rv = np.where(dv < 0, np.float32(self.radius_ant), np.float32(self.radius_post))
        du = u - self.center[0]
        k0 = np.sqrt((du / self.radius_u) ** 2 + (dv / rv) ** 2)
        k1 = np.sqrt((du / self.radius_u ** 2) ** 2 + (dv / rv ** 2) ** 2) + np.float32(1e-6)
        f = k0 * (k0 - 1.0) / k1
        if self.w_range is not None:
            mid, half = (self.w_range[0] + self.w_range[1]) / 2, (self.w_range[1] - self.w_range[0]) / 2
            f = np.maximum(f, np.abs(w - mid) - half)
        return f


_AXES = {"u": (0, 1, 2), "w": (2, 0, 1), "v": (1, 0, 2)}  # axis -> (s, a, b) coordinate indices


@dataclass
class _Tube(_Shape):
    """Tube along a principal axis ``s``: centre ``(a(s), b(s))``, radius ``r(s)``,
    cross-section stretched by ``k_b`` along ``b``; rounded caps."""

    axis: str
    s: np.ndarray
    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    k_b: float = 1.0
    moves: bool = True

    def __post_init__(self) -> None:
        order = np.argsort(self.s)
        self.s, self.a, self.b, self.r = (np.asarray(x, dtype=np.float64)[order] for x in (self.s, self.a, self.b, self.r))
        self._a = PchipInterpolator(self.s, self.a)
        self._b = PchipInterpolator(self.s, self.b)
        self._r = PchipInterpolator(self.s, self.r)
        self._da = self._a.derivative()
        self._db = self._b.derivative()

    def centre(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre line ``a(s), b(s)`` and radius ``r(s)`` (s clipped to the tube)."""
        s = np.clip(s, self.s[0], self.s[-1])
        return self._a(s), self._b(s), self._r(s)

    def bbox(self):
        ss = np.linspace(self.s[0], self.s[-1], 64)
        a, b, r = self.centre(ss)
        rmax = float(r.max())
        lo, hi = np.zeros(3), np.zeros(3)
        ids = _AXES[self.axis]
        lo[ids[0]], hi[ids[0]] = self.s[0] - rmax, self.s[-1] + rmax
        lo[ids[1]], hi[ids[1]] = a.min() - rmax, a.max() + rmax
        lo[ids[2]], hi[ids[2]] = b.min() - rmax * self.k_b, b.max() + rmax * self.k_b
        return lo, hi

    def sdf(self, u, v, w):
        coords = (u, v, w)
        ids = _AXES[self.axis]
        s, pa, pb = coords[ids[0]], coords[ids[1]], coords[ids[2]]
        sc = np.clip(s, self.s[0], self.s[-1])
        a = self._a(sc).astype(np.float32)
        b = self._b(sc).astype(np.float32)
        r = self._r(sc).astype(np.float32)
        ca = (1.0 / np.sqrt(1.0 + self._da(sc) ** 2)).astype(np.float32)  # slope correction
        cb = (1.0 / np.sqrt(1.0 + self._db(sc) ** 2)).astype(np.float32)
        d2 = ((pa - a) * ca) ** 2 + ((pb - b) * (cb / np.float32(self.k_b))) ** 2
        ds = (s - sc).astype(np.float32)
        return np.sqrt(d2 + ds * ds) - r


@dataclass
class _Offset(_Shape):
    """``shape`` grown by ``d`` mm (shrunk when ``d < 0``)."""

    shape: _Shape
    d: float

    @property
    def moves(self):
        return self.shape.moves

    def bbox(self):
        lo, hi = self.shape.bbox()
        return lo - max(self.d, 0), hi + max(self.d, 0)

    def sdf(self, u, v, w):
        return self.shape.sdf(u, v, w) - np.float32(self.d)


@dataclass
class _Union(_Shape):
    """Smooth union (soft minimum with blend width ``k`` mm)."""

    shapes: list
    k: float = 3.0

    @property
    def moves(self):
        return self.shapes[0].moves

    def bbox(self):
        los, his = zip(*(s.bbox() for s in self.shapes))
        return np.min(los, axis=0), np.max(his, axis=0)

    def sdf(self, u, v, w):
        fs = [s.sdf(u, v, w) for s in self.shapes]
        m = fs[0]
        for f in fs[1:]:
            m = np.minimum(m, f)
        acc = sum(np.exp(-(f - m) / np.float32(self.k)) for f in fs)
        return m - np.float32(self.k) * np.log(acc)


@dataclass
class _Intersect(_Shape):
    """Points inside ``shape`` and inside ``limit`` (bbox of ``shape``)."""

    shape: _Shape
    limit: _Shape

    @property
    def moves(self):
        return self.shape.moves

    def bbox(self):
        return self.shape.bbox()

    def sdf(self, u, v, w):
        return np.maximum(self.shape.sdf(u, v, w), self.limit.sdf(u, v, w))


@dataclass
class _Anterior(_Shape):
    """Half-space ``v < level`` (anterior of a gas-fluid level, patient supine)."""

    level: float

    def bbox(self):
        return np.full(3, -1e4), np.array([1e4, self.level, 1e4])

    def sdf(self, u, v, w):
        return v - np.float32(self.level)


@dataclass
class _Bumpy(_Shape):
    """``shape`` with its surface displaced by a sum of random plane waves (sd ``amp`` mm)."""

    shape: _Shape
    amp: float
    waves: np.ndarray  # [n, 4]: unit direction * 2 pi / wavelength (3), phase

    @property
    def moves(self):
        return self.shape.moves

    def bbox(self):
        lo, hi = self.shape.bbox()
        return lo - 3 * self.amp, hi + 3 * self.amp

    def sdf(self, u, v, w):
        f = self.shape.sdf(u, v, w)
        scale = np.float32(self.amp * math.sqrt(2.0 / len(self.waves)))
        for ku, kv, kw, ph in self.waves.astype(np.float32):
            f = f + scale * np.sin(ku * u + kv * v + kw * w + ph)
        return f


def _waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float]) -> np.ndarray:
    """``n`` random plane waves: [n, 4] = direction * 2 pi / wavelength, phase."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*wavelength, size=(n, 1))
    return np.concatenate([d * k, rng.uniform(0, 2 * np.pi, size=(n, 1))], axis=1)


# Frame axis -> (scipy axis, sign of the angle). A positive angle turns the first of the two other
# axes towards the second (about w: u -> v, about v: u -> w, about u: v -> w); about v that is
# scipy's negative angle.
ROTATION_AXES = {"u": ("x", 1.0), "v": ("y", -1.0), "w": ("z", 1.0)}


def _rot(axis: str, deg: float) -> np.ndarray:
    """3x3 rotation about the frame axis ``axis`` (u, v, w) by ``deg`` degrees (see ``ROTATION_AXES``)."""
    name, sign = ROTATION_AXES[axis]
    return Rotation.from_euler(name, sign * deg, degrees=True).as_matrix()


# --- anatomy ----------------------------------------------------------------------
@dataclass
class _Anatomy:
    """Paint operations, back to front, and the extents the grid must cover."""

    ops: list = field(default_factory=list)  # (tissue, shape, role)
    pancreas_w: tuple[float, float] = (0.0, 0.0)  # mm, superior extent of the pancreas (with margin for bumps)
    body_center_v: float = 0.0  # mm, centre of the body outline along v
    body_half_width: float = 0.0  # mm
    oral_contrast: bool = False
    cavity: _Shape | None = None  # abdominal cavity; viscera are kept inside it

    def add(self, tissue: str, shape: _Shape, role: int = NORMAL) -> None:
        if shape.moves and self.cavity is not None:
            shape = _Intersect(shape, self.cavity)
        self.ops.append((tissue, shape, role))


def _bowel(anat: _Anatomy, tubes: list, wall: float, content: str, lumen_frac: float,
           gas_level: float | None = None) -> None:
    """Paint bowel: all walls first, then all lumens (so junctions stay open)."""
    for t in tubes:
        anat.add("bowel_wall", t)
    radii = [float(t.r.min()) if isinstance(t, _Tube) else min(t.radii) for t in tubes]
    lumen_d = [-(wall + (1 - lumen_frac) * max(r - wall, 0.0)) for r in radii]
    for t, d in zip(tubes, lumen_d):
        anat.add(content, _Offset(t, d))
    if gas_level is not None:
        for t, d in zip(tubes, lumen_d):
            anat.add("gas", _Intersect(_Offset(t, d), _Anterior(gas_level)))


def _build_anatomy(rng: np.random.Generator, fov: float) -> _Anatomy:
    """Sample one patient's abdomen. All lengths in mm in the (u, v, w) frame."""
    U = rng.uniform
    anat = _Anatomy()

    # body outline: cavity, abdominal wall muscle, subcutaneous fat, skin
    # the field of view is chosen to fit the patient: the body fills 72-92 % of its width
    half_width = fov / 2 * U(0.72, 0.92)
    t_mus = U(8, 14)
    skin = 2.0
    t_fat_lat = U(6, 40)
    ac = float(np.clip(half_width - t_mus - skin - t_fat_lat, 112, 160))  # cavity half-width
    t_fat_lat = max(half_width - t_mus - skin - ac, 4.0)
    t_fat = t_fat_lat * U(0.9, 1.6)  # anterior subcutaneous fat
    t_fat_post = t_fat_lat * U(0.4, 0.8)
    bca, bcp = ac * U(0.62, 0.75), ac * U(0.55, 0.65)  # cavity anterior / posterior half-depth
    org = float(np.clip(1 + 0.5 * (ac / 130 - 1), 0.85, 1.15))  # organ position scale
    bw = (ac + t_mus + t_fat_lat + skin, bca + t_mus + t_fat + skin, bcp + t_mus + t_fat_post + skin)
    anat.body_half_width = bw[0]
    anat.body_center_v = (bw[2] - bw[1]) / 2
    table_top = bw[2] + U(1, 4)
    anat.add("table", _Prism((0.0, table_top + 40), 220.0, 40.0, 8.0))
    anat.add("skin", _Prism((0.0, 0.0), *bw))
    anat.add("fat", _Prism((0.0, 0.0), bw[0] - skin, bw[1] - skin, bw[2] - skin))
    anat.add("muscle", _Prism((0.0, 0.0), ac + t_mus, bca + t_mus, bcp + t_mus))
    cavity = _Prism((0.0, 0.0), ac, bca, bcp)
    anat.add("visceral_fat", cavity)
    anat.cavity = _Offset(cavity, -1.0)

    # spine and back muscles (do not move with breathing)
    v_vb = bcp - U(38, 48)
    r_vb = (U(20, 26), U(15, 19))
    canal_v = v_vb + r_vb[1] + U(9, 11)
    canal_r = U(8, 10)
    for side in (-1, 1):
        anat.add("muscle", _Prism((side * U(28, 36), canal_v + U(12, 20)), U(22, 30), U(20, 26), U(20, 26)))
        psoas = _Tube("w", np.array([-250, -60, 0, 60, 250]), side * (r_vb[0] + U(8, 14)) * np.ones(5),
                      (v_vb - 2) * np.ones(5), np.array([22, 20, U(10, 15), 5, 3]) * U(0.8, 1.2), moves=False)
        anat.add("muscle", psoas)
    anat.add("bone_cortex", _Prism((0.0, canal_v), canal_r + 5, canal_r + 5, canal_r + 5))
    anat.add("bone_cortex", _Prism((0.0, canal_v + canal_r + 14), 4.0, 12.0, 12.0))
    anat.add("csf", _Prism((0.0, canal_v), canal_r, canal_r, canal_r))
    anat.add("bone_cortex", _Prism((0.0, v_vb), r_vb[0], r_vb[1], r_vb[1]))
    anat.add("bone_marrow", _Prism((0.0, v_vb), r_vb[0] - 2, r_vb[1] - 2, r_vb[1] - 2))
    period, disc_h, phase = U(30, 36), U(7, 10), U(0, 36)
    for n in range(-8, 9):
        wc = phase + n * period
        anat.add("disc", _Prism((0.0, v_vb), r_vb[0] + 1, r_vb[1] + 1, r_vb[1] + 1, (wc - disc_h / 2, wc + disc_h / 2)))

    # great vessels
    ao_u, r_ao = U(8, 20), U(9, 13)
    v_ao = v_vb - r_vb[1] - r_ao - U(1, 4)
    ws = np.array([-250.0, -80, 0, 80, 250])
    anat.add("artery", _Tube("w", ws, ao_u + rng.normal(0, 2, 5), v_ao + rng.normal(0, 1.5, 5), r_ao * np.array([0.85, 0.9, 1, 1.05, 1.1])))
    ivc_u, r_ivc, k_ivc = -U(20, 30), U(9, 13), U(0.6, 0.9)
    v_ivc = v_ao - U(0, 6)
    anat.add("ivc", _Tube("w", ws, ivc_u + rng.normal(0, 2, 5), v_ivc + rng.normal(0, 1.5, 5), r_ivc * np.ones(5), k_b=k_ivc))
    ivc_front = v_ivc - r_ivc * k_ivc

    # pancreas geometry (drawn now, painted later)
    size = U(0.85, 1.12)
    rh_u, rh_v, rh_w = size * U(14, 19), size * U(12, 16), size * U(20, 28)
    u_h = -U(30, 42) * org
    v_h = ivc_front - U(0, 3) - rh_v
    w_h = -U(3, 10)
    r_sma, r_smv = U(3, 4.5), U(5, 7)
    u_sma = ao_u - U(2, 6)
    w_sma0 = U(5, 15)
    r_lrv = U(4, 6)
    w_lrv = w_sma0 - U(12, 20)
    r_duo = U(9, 13)
    w_d3 = w_h - rh_w - U(5, 12)
    gap_w = np.array([-250, w_d3 - 15, w_d3, w_lrv, w_sma0 - 6, w_sma0])
    gap = np.array([2 * r_duo + 5, 2 * r_duo + 5, 2 * r_duo + 4, 2 * r_lrv + 3, 4.0, -r_ao * 0.5])
    v_sma = v_ao - r_ao - gap - r_sma
    u_smv = u_sma - U(10, 14)
    v_smv = v_sma - U(0, 4)
    w_conf = U(-2, 6)
    v_smv_conf = float(np.interp(w_conf, gap_w, v_smv))
    r_neck = size * U(6, 9)
    u_n = u_smv + U(-2, 6)
    w_n = max(w_conf, w_h) + U(2, 8)
    v_n = float(np.interp(w_n, gap_w, v_smv)) - r_smv - U(1, 4) - r_neck
    r_body = size * U(8, 12)
    u_b = ao_u + U(15, 35)
    v_b = v_ao - r_ao - U(10, 16) - r_body
    w_b = w_n + U(4, 14)
    r_tail = size * U(7, 11)
    u_t = max(U(75, 100) * org, u_b + 35)
    v_t = v_ao + U(5, 25)
    w_t = w_b + U(0, 25)
    u_m = (u_b + u_t) / 2
    v_m = (v_b + v_t) / 2 - U(0, 12)
    w_m = (w_b + w_t) / 2 + rng.normal(0, 4)
    k_p = U(1.2, 1.6)
    p_s = np.array([u_h, u_n, u_b, u_m, u_t])
    p_v = np.array([v_h, v_n, v_b, v_m, v_t])
    p_w = np.array([w_h, w_n, w_b, w_m, w_t])
    p_r = np.array([rh_v * 0.85, r_neck, r_body, (r_body + r_tail) / 2, r_tail * 0.8])
    panc_tube = _Tube("u", p_s, p_v, p_w, p_r, k_b=k_p)
    head = _Ellipsoid((u_h, v_h, w_h - U(3, 8)), (rh_u, rh_v, rh_w))
    unc = _Ellipsoid((u_h + U(10, 18), v_h + U(3, 8), w_h - rh_w * U(0.6, 0.85)),
                     (size * U(10, 14), size * U(6, 9), size * U(8, 12)))
    pancreas = _Bumpy(_Union([panc_tube, head, unc], k=4.0), size * U(0.8, 1.8), _waves(rng, 6, (8, 16)))
    lo, hi = pancreas.bbox()
    anat.pancreas_w = (float(lo[2]), float(hi[2]))

    def panc_at(u: float) -> tuple[float, float, float]:
        a, b, r = panc_tube.centre(np.asarray(u))
        return float(a), float(b), float(r)

    # kidneys
    for side in (1, -1):
        c = (side * U(65, 85) * org, v_vb + U(0, 15), w_b - U(5, 25) - (U(10, 25) if side < 0 else 0))
        rad = (U(22, 28), U(22, 28), U(45, 60))
        rot = _rot("w", side * U(20, 40)) @ _rot("v", side * U(8, 18))
        anat.add("kidney_cortex", _Ellipsoid(c, rad, rot))
        anat.add("kidney_medulla", _Ellipsoid(c, tuple(r - U(5, 8) for r in rad), rot))
        anat.add("visceral_fat", _Ellipsoid((c[0] - side * rad[0] * 0.75, c[1] - 4, c[2]), (U(8, 12), U(7, 10), U(15, 22))))
        if side > 0:
            kid_l = c
    # left renal vein between aorta and SMA into the IVC
    lrv = _Tube("u", np.array([ivc_u, ao_u - 8, ao_u + 8, kid_l[0] - 20]),
                np.array([v_ivc, v_ao - r_ao - r_lrv - 1, v_ao - r_ao - r_lrv, kid_l[1] - 8]),
                np.full(4, w_lrv) + rng.normal(0, 2, 4), np.full(4, r_lrv))
    anat.add("portal", lrv)

    # liver, gallbladder, spleen
    w_top = max(w_t, w_b) + U(50, 75)
    liver = _Union([_Ellipsoid((-U(60, 80) * org, U(-10, 10), w_top), (U(65, 85), U(80, 100), U(85, 110))),
                    _Ellipsoid((U(-5, 20), -bca * U(0.5, 0.65), w_top + U(5, 30)), (U(45, 70), U(25, 40), U(40, 60)))], k=8.0)
    liver = _Bumpy(liver, U(2, 4), _waves(rng, 5, (40, 90)))
    anat.add("liver", liver)
    anat.add("portal", _Tube("w", np.array([w_conf - 5, w_conf + 20, w_conf + U(40, 55)]),
                             np.array([u_smv, u_smv - 15, u_smv - U(25, 40)]),
                             np.array([v_smv_conf, v_smv_conf + 3, v_smv_conf + U(0, 12)]), np.full(3, U(6, 8))))
    if rng.uniform() < 0.85:
        anat.add("bile", _Ellipsoid((u_h - U(25, 40), -bca * U(0.35, 0.55), w_h + U(15, 35)), (U(12, 18), U(12, 18), U(25, 40)), _rot("u", U(-20, 20))))
    spleen = _Ellipsoid((U(85, 105) * org, U(25, 50), w_t + U(15, 35)), (U(18, 28), U(40, 60), U(45, 65)), _rot("w", U(30, 60)))
    anat.add("spleen", spleen)

    # colon: ascending, descending, transverse (haustral bumps, stool or gas)
    stool_frac = U(0.4, 0.9)
    w_tc = w_h + U(-35, 25)
    r_c = U(15, 26)
    asc = _Tube("w", np.array([-250, w_tc - 40, w_tc]), -(ac - U(25, 40)) * np.ones(3), U(-25, 15) + rng.normal(0, 5, 3), np.full(3, r_c))
    desc = _Tube("w", np.array([-250, w_tc, w_tc + U(30, 70)]), (ac - U(20, 35)) * np.ones(3), U(0, 30) + rng.normal(0, 5, 3), np.full(3, r_c * 0.85))
    us = np.linspace(-(ac - 35), ac - 30, 5)
    trans = _Tube("u", us, -bca + U(25, 45) + rng.normal(0, 6, 5), w_tc + np.array([0, -20, -30, -15, 10]) * U(0.3, 1.2), np.full(5, r_c))
    for t in (asc, desc, trans):
        wall = U(2, 3)
        bumpy = _Bumpy(t, 2.5, _waves(rng, 4, (20, 35)))
        anat.add("bowel_wall", bumpy)
        content = "stool" if rng.uniform() < stool_frac else "bowel_fluid"
        anat.add(content, _Offset(bumpy, -wall))
        lvl_v = float(np.mean(t.b if t.axis == "w" else t.a)) - r_c * U(0.0, 0.6)
        anat.add("gas", _Intersect(_Offset(bumpy, -wall), _Anterior(lvl_v)))

    # small bowel loops (jejunum / ileum), in front of the vessels, mostly below the pancreas body
    anat.oral_contrast = bool(rng.uniform() < 0.3)
    fluid = "oral_contrast" if anat.oral_contrast else "bowel_fluid"
    for _ in range(int(rng.integers(16, 28))):
        axis = "w" if rng.uniform() < 0.6 else "u"
        r = U(9, 16)
        cu, cv, cw = U(-ac + 40, ac - 35), U(-bca + 20, v_ao - r_ao - 15), U(w_h - 80, w_b + 15)
        n = 4
        length = U(30, 90)
        s = np.linspace(-length / 2, length / 2, n) + (cw if axis == "w" else cu)
        a = (cu if axis == "w" else cv) + rng.normal(0, 12, n)
        b = (cv if axis == "w" else cw) + rng.normal(0, 12, n)
        loop = _Tube(axis, s, a, b, r * U(0.85, 1.15, n))
        state = rng.uniform()
        if state < 0.35:  # collapsed: soft tissue throughout, like the pancreas
            _bowel(anat, [loop], U(2, 3), fluid, U(0.05, 0.3))
        elif state < 0.8:
            _bowel(anat, [loop], U(1.5, 2.5), fluid, 1.0)
        else:
            _bowel(anat, [loop], U(1.5, 2.5), fluid, 1.0, gas_level=cv - U(-2, 6))

    # stomach in front of the pancreas body / tail, antrum towards the pylorus
    rs = (U(35, 55), U(25, 40), U(45, 70))
    st_v = v_b - r_body - U(3, 10) - rs[1]
    stomach = _Ellipsoid((U(35, 60) * org, st_v, w_t + U(10, 30)), rs, _rot("w", U(-25, 5)))
    r_an = U(12, 20)
    u_pyl = u_n + U(-5, 10)
    antrum = _Tube("u", np.array([u_pyl, (u_pyl + u_b) / 2, u_b + 15]),
                   np.array([v_n - r_neck - r_an - U(2, 8), v_b - r_body - r_an - U(3, 8), st_v]),
                   np.array([w_b + U(0, 8), w_b + U(5, 15), w_t + U(5, 20)]), np.array([r_an * 0.8, r_an, r_an * 1.3]))
    st_content = ["bowel_fluid", "food", fluid][int(rng.integers(0, 3))]
    _bowel(anat, [stomach, antrum], U(3, 6), st_content, 1.0, gas_level=st_v - rs[1] * U(0.2, 0.8))

    # small mesenteric vessels and the tortuous splenic artery above the pancreas
    for _ in range(10):
        uu, vv = u_sma + rng.normal(0, 25), float(np.interp(w_lrv, gap_w, v_sma)) - U(10, 50)
        anat.add("portal" if rng.uniform() < 0.5 else "artery",
                 _Tube("w", np.array([-250, w_h - 60, w_conf - 10]), uu + rng.normal(0, 6, 3), vv + rng.normal(0, 6, 3), np.full(3, U(1.0, 2.5))))
    sa_u = np.linspace(ao_u, u_t + 10, 7)
    pv_, pw_, pr_ = zip(*(panc_at(x) for x in sa_u))
    sa_v = np.array(pv_) + rng.normal(0, 4, 7)
    sa_w = np.array(pw_) + np.array(pr_) * k_p + U(1, 6) + rng.normal(0, 4, 7)
    sa_v[0], sa_w[0] = v_ao - r_ao + 2, max(w_b, w_sma0) + U(8, 15)
    anat.add("artery", _Tube("u", sa_u, sa_v, sa_w, np.full(7, U(2.0, 3.0))))

    # the pancreas, its duct (labelled), then what is painted over it
    anat.add("pancreas", pancreas, ORGAN)
    du_ = np.linspace(u_h + 5, u_t - 10, 6)
    dv_, dw_, _ = zip(*(panc_at(x) for x in du_))
    anat.add("duct", _Tube("u", du_, np.array(dv_), np.array(dw_), np.full(6, U(0.8, 2.0))), ORGAN_PART)
    sv_u = np.linspace(u_smv, u_t + 10, 6)
    sv = [panc_at(x) for x in sv_u]
    r_sv = U(3.5, 5)
    sv_v = np.array([p[0] + p[2] * U(0.75, 1.0) for p in sv])
    sv_w = np.array([p[1] for p in sv]) + rng.normal(0, 2, 6)
    sv_v[0], sv_w[0] = v_smv_conf, w_conf
    anat.add("portal", _Tube("u", sv_u, sv_v, sv_w, np.full(6, r_sv)))
    smv_w = np.append(gap_w[:-1], w_conf)
    smv_order = np.argsort(smv_w)
    anat.add("portal", _Tube("w", smv_w[smv_order], (u_smv + rng.normal(0, 2, 6))[smv_order],
                             np.append(v_smv[:-1], v_smv_conf)[smv_order], np.full(6, r_smv)))
    sma = _Tube("w", gap_w, u_sma + rng.normal(0, 1.5, 6), v_sma, np.full(6, r_sma))
    collar_w = np.linspace(-250, w_sma0 - 10, 6)
    collar = _Tube("w", collar_w, np.interp(collar_w, gap_w, sma.a), np.interp(collar_w, gap_w, v_sma), np.full(6, r_sma + U(2, 4)))
    anat.add("visceral_fat", collar)
    anat.add("artery", sma)
    anat.add("bile", _Tube("w", np.array([w_h - 10, w_h + 15, w_h + 45]), np.array([u_h - rh_u * 0.4, u_h - rh_u * 0.45, u_h - 10]),
                           np.array([v_h + rh_v * 0.5, v_h + rh_v * 0.45, v_h]), np.full(3, U(2.5, 4.5))))
    # duodenum: bulb (D1), descending (D2) hugging the head, horizontal (D3) between aorta and SMA
    u_d2 = u_h - rh_u * U(0.7, 0.95) - r_duo
    w_d1 = w_h + rh_w * U(0.6, 1.0)
    d1 = _Tube("u", np.array([u_d2, (u_d2 + u_pyl) / 2, u_pyl]), np.array([v_h - 4, v_n - r_neck - r_duo, v_n - r_neck - r_an - 4]),
               np.full(3, w_d1) + rng.normal(0, 3, 3), np.full(3, r_duo * 0.9))
    d2 = _Tube("w", np.array([w_d3, (w_d3 + w_d1) / 2, w_d1]), u_d2 + rng.normal(0, 3, 3), v_h + rng.normal(0, 4, 3), np.full(3, r_duo))
    v_d3_ao = v_ao - r_ao - r_duo - 1.5
    d3 = _Tube("u", np.array([u_d2, u_h + 10, ao_u, ao_u + U(20, 30)]),
               np.array([v_h, (v_h + v_d3_ao) / 2, v_d3_ao, v_d3_ao - 5]),
               np.array([w_d3, w_d3 - 3, w_d3, w_d3 + U(5, 20)]), np.full(4, r_duo))
    collapsed = rng.uniform() < 0.4
    _bowel(anat, [d1, d2, d3], U(2, 3.5), fluid, U(0.05, 0.3) if collapsed else 1.0,
           gas_level=None if rng.uniform() < 0.6 else v_h - r_duo * U(0.3, 0.9))

    # ribs at the upper levels
    for side in (-1, 1):
        for i in range(5):
            ang = math.radians(U(20, 150))  # 0 = lateral-posterior, 180 = anterior
            uu = side * (ac + t_mus * 0.5) * math.sin(ang)
            vv = (bcp if math.cos(ang) > 0 else bca) * math.cos(ang) * 1.0
            ww = w_b + 10 + i * U(14, 20)
            anat.add("rib", _Ellipsoid((uu, vv, ww), (U(12, 25), U(4, 6), U(5, 7)), _rot("w", -side * math.degrees(ang) + 90)))
    return anat


# --- rendering ----------------------------------------------------------------------
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

    def paint(self, shape: _Shape, value: float, tex_amp: float, role: int) -> None:
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
    anat = _build_anatomy(rng_anat, fov)
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


# --- writing ------------------------------------------------------------------------
def _digits(text: str, n: int) -> int:
    """Deterministic ``n``-digit number from ``text`` (folder names)."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % (10 ** n)


def nih_paths(root: str | os.PathLike, case_number: int) -> tuple[Path, Path]:
    """Series folder and label path of case ``case_number`` in the NIH Pancreas-CT layout.

    ``root/Pancreas-CT/PANCREAS_0001/<MM-DD-YYYY>-PANCREAS0001-Pancreas-<5 digits>/Pancreas-<5 digits>/``
    and ``root/TCIA_pancreas_labels-02-05-2017/label0001.nii.gz`` as TCIA distributes them.
    """
    if case_number < 0:
        raise ValueError(f"case_number must be >= 0, got {case_number}")
    pid = NIH_PATIENT_FMT.format(case_number)
    key = f"case{case_number}"
    month, day, year = 1 + _digits(key + "m", 3) % 12, 1 + _digits(key + "d", 3) % 28, 2015
    study = f"{month:02d}-{day:02d}-{year}-PANCREAS{case_number:04d}-Pancreas-{_digits(key + 'st', 5):05d}"
    series = f"Pancreas-{_digits(key + 'se', 5):05d}"
    root = Path(root)
    return root / NIH_IMAGE_DIR / pid / study / series, root / NIH_LABEL_DIR / NIH_LABEL_FMT.format(case_number)


def flip_rows(scan: Scan) -> Scan:
    """Same physical grid, row axis of the array reversed (affine adjusted)."""
    affine = scan.affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, 1] * (scan.array.shape[1] - 1)
    affine[:3, 1] = -affine[:3, 1]
    return Scan(np.ascontiguousarray(scan.array[:, ::-1, :]), affine, scan.modality, dict(scan.source))


def write_nih_layout(image: Scan, mask: np.ndarray, root: str | os.PathLike, case_number: int) -> tuple[Path, Path]:
    """Write a case as the NIH Pancreas-CT set is distributed by TCIA.

    DICOM series (PatientID ``PANCREAS_0001``; InstanceNumber descending for
    every third case) under ``root/Pancreas-CT/...`` and the label as uint8
    NIfTI under ``root/TCIA_pancreas_labels-02-05-2017/``. Like the real set,
    the label is not always stored in the DICOM's orientation: for every
    other case its row axis is flipped (affine adjusted, same physical grid).
    MRI phantoms use the same layout with Modality MR.

    Args:
        image: scan from :func:`generate_case`.
        mask: ``[Z, Y, X]`` uint8 label on ``image``'s grid.
        root: dataset root folder (created).
        case_number: NIH case number (folder and file names).

    Returns:
        ``(series_folder, label_path)``.
    """
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    series_dir, label_path = nih_paths(root, case_number)
    pid = NIH_PATIENT_FMT.format(case_number)
    order = "descending" if case_number % NIH_DESCENDING_EVERY == 0 else "ascending"
    files = write_dicom_series(image, series_dir, patient_id=pid,
                               study_uid=generate_uid(entropy_srcs=[f"study{case_number}{image.modality}"]),
                               series_uid=generate_uid(entropy_srcs=[f"series{case_number}{image.modality}"]),
                               series_description="Pancreas", instance_number_order=order)
    for path in files:  # TCIA names files <series number>-<instance number>.dcm
        if path.stem.isdigit():
            path.rename(path.with_name(NIH_FILE_FMT.format(int(path.stem))))
    label = Scan(np.asarray(mask, dtype=np.uint8), image.affine.copy(), image.modality, {"PatientID": pid})
    if case_number % NIH_FLIP_LABEL_EVERY == 0:
        label = flip_rows(label)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(label, label_path, dtype=np.uint8)
    logger.debug("wrote NIH-layout case %d: %s, %s", case_number, series_dir, label_path)
    return series_dir, label_path


def case_id_of(case_number: int) -> str:
    """Case id of a phantom, as the NIH converter names it: ``PANCREAS_0001``."""
    return NIH_PATIENT_FMT.format(case_number)


def write_case_to_store(image: Scan, mask: np.ndarray, store: CaseStore, case_id: str) -> dict:
    """Write a phantom straight into a :class:`~pancreas_seg.data.store.CaseStore` (no files in between).

    Returns the manifest entry. The store's modality must match ``image.modality``.
    """
    scan = Scan(image.array, image.affine, image.modality, {**image.source, "PatientID": case_id})
    case = Case(case_id, scan, np.asarray(mask, np.uint8))
    return store.write_case(case)


@dataclass
class PhantomSetReport:
    """What :func:`write_phantom_set` did."""

    written: list[int] = field(default_factory=list)  # case numbers generated and written
    skipped: list[int] = field(default_factory=list)  # case numbers already present
    seconds: float = 0.0  # wall-clock time of the whole run

    @property
    def seconds_per_case(self) -> float:
        """Wall-clock seconds per written case (0 when none was written)."""
        return self.seconds / len(self.written) if self.written else 0.0


def _nih_present(root: Path, case_number: int) -> bool:
    series_dir, label_path = nih_paths(root, case_number)
    return label_path.is_file() and series_dir.is_dir() and any(series_dir.glob("*.dcm"))


def _make_nih(job: tuple[Path, int, PhantomConfig, int]) -> int:
    root, case_number, config, seed = job
    image, mask = generate_case(case_number, config.modality, seed, config)
    write_nih_layout(image, mask, root, case_number)
    return case_number


def _make_store_case(job: tuple[Path, int, PhantomConfig, int]) -> tuple[int, dict]:
    root, case_number, config, seed = job
    image, mask = generate_case(case_number, config.modality, seed, config)
    case_id = case_id_of(case_number)
    case = Case(case_id, Scan(image.array, image.affine, image.modality, {**image.source, "PatientID": case_id}), mask)
    return case_number, CaseStore(root).write_case_file(case)


def write_phantom_set(root: str | os.PathLike, case_numbers: Iterable[int], config: PhantomConfig | None = None,
                      *, seed: int = 0, jobs: int = 1, progress: bool = True, overwrite: bool = False,
                      store: bool = False) -> PhantomSetReport:
    """Generate phantoms ``case_numbers`` of ``config.modality`` into ``root``; idempotent.

    Args:
        root: output folder: the NIH Pancreas-CT layout (:func:`write_nih_layout`), or
            with ``store=True`` a :class:`~pancreas_seg.data.store.CaseStore` (created).
        case_numbers: NIH-style case numbers (>= 0).
        config: phantom config (modality, matrix, ...); default ``PhantomConfig()``.
        seed: dataset seed.
        jobs: worker processes (1 = in this process).
        progress: show a tqdm bar.
        overwrite: regenerate cases that are already there (otherwise skipped).
        store: write a case store instead of the NIH layout.

    Returns:
        a :class:`PhantomSetReport` (written and skipped case numbers, seconds).
    """
    config = config if config is not None else PhantomConfig()
    root = Path(root)
    numbers = [int(n) for n in case_numbers]
    if any(n < 0 for n in numbers):
        raise ValueError(f"case numbers must be >= 0, got {min(numbers)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    start = time.perf_counter()
    report = PhantomSetReport()
    if store:
        case_store = CaseStore.create(root, config.modality)
        present = lambda n: case_store.has_case(case_id_of(n))  # noqa: E731
        worker = _make_store_case
    else:
        present = lambda n: _nih_present(root, n)  # noqa: E731
        worker = _make_nih
    todo, report.skipped = pending(numbers, present, overwrite)
    work = [(root, n, config, seed) for n in todo]
    entries = {}
    for result in run_cases(worker, work, jobs=jobs, desc=f"phantoms {config.modality}", progress=progress):
        if store:
            n, entry = result
            entries[case_id_of(n)] = entry
        else:
            n = result
        report.written.append(n)
    if store and entries:
        case_store.add_entries(entries)
    report.seconds = time.perf_counter() - start
    logger.info("phantoms in %s: %d written, %d already there, %.1f s per case",
                root, len(report.written), len(report.skipped), report.seconds_per_case)
    return report
