"""Implicit shapes: smooth approximate signed distances ``F`` (mm, negative inside) in the patient frame (u left, v posterior, w superior)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation


class Shape:
    """A smooth approximate signed distance ``F`` (mm, < 0 inside) in the patient frame."""

    moves = True  # follows the viscera's breathing shift (MRI)
    z_invariant = False  # the same in every axial slice (rendered once)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corner in (u, v, w) mm."""
        raise NotImplementedError

    def sdf(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``F`` at broadcastable coordinate arrays (mm)."""
        raise NotImplementedError


def ellipse_sdf(*d_over: tuple[np.ndarray, float]) -> np.ndarray:
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
class Ellipsoid(Shape):
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
        return ellipse_sdf((du, self.radii[0]), (dv, self.radii[1]), (dw, self.radii[2]))


@dataclass
class Prism(Shape):
    """Elliptic cylinder along ``w``; different anterior/posterior half-depths."""

    center: tuple[float, float]
    radius_u: float
    radius_ant: float
    radius_post: float
    w_range: tuple[float, float] | None = None
    moves: bool = False

    @property
    def z_invariant(self) -> bool:
        return self.w_range is None and not self.moves

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
class Tube(Shape):
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
        ra = r * np.sqrt(1.0 + self._da(ss) ** 2)  # an oblique tube's section across s is wider
        rb = r * self.k_b * np.sqrt(1.0 + self._db(ss) ** 2)
        lo[ids[1]], hi[ids[1]] = (a - ra).min(), (a + ra).max()
        lo[ids[2]], hi[ids[2]] = (b - rb).min(), (b + rb).max()
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
class Derived(Shape):
    """A shape made from ``shape``: it moves with it and, unless it says otherwise, keeps its box."""

    shape: Shape

    @property
    def moves(self):
        return self.shape.moves

    def bbox(self):
        return self.shape.bbox()


@dataclass
class Offset(Derived):
    """``shape`` grown by ``d`` mm (shrunk when ``d < 0``)."""

    d: float

    def bbox(self):
        lo, hi = self.shape.bbox()
        return lo - max(self.d, 0), hi + max(self.d, 0)

    def sdf(self, u, v, w):
        return self.shape.sdf(u, v, w) - np.float32(self.d)


@dataclass
class Union(Shape):
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
class Intersect(Derived):
    """Points inside ``shape`` and inside ``limit`` (bbox of ``shape``)."""

    limit: Shape

    def sdf(self, u, v, w):
        return np.maximum(self.shape.sdf(u, v, w), self.limit.sdf(u, v, w))


U_AXIS, V_AXIS = 0, 1  # axes of the patient frame (u left, v posterior, w superior) for Below


@dataclass
class Below(Shape):
    """Half-space ``coordinate[axis] < level`` (axis 0, 1, 2 = u, v, w); ``Below(V_AXIS, level)`` is
    the part anterior of a gas-fluid level, patient supine."""

    axis: int
    level: float

    def bbox(self):
        hi = np.full(3, 1e4)
        hi[self.axis] = self.level
        return np.full(3, -1e4), hi

    def sdf(self, u, v, w):
        return (u, v, w)[self.axis] - np.float32(self.level)


@dataclass
class Clefts(Derived):
    """Thin sheets inside ``shape``: where a smooth random field ``g`` (sum of plane waves, unit sd)
    is within ``t`` of zero. ``t`` sets the filled volume fraction ``erf(t / sqrt 2)``."""

    waves: np.ndarray  # [n, 4]: unit direction * 2 pi / wavelength (3), phase
    t: float

    def sdf(self, u, v, w):
        f = self.shape.sdf(u, v, w)
        scale = np.float32(math.sqrt(2.0 / len(self.waves)))
        g = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v), np.shape(w)), np.float32)
        for ku, kv, kw, ph in self.waves.astype(np.float32):
            g += np.sin(ku * u + kv * v + kw * w + ph)
        k_rms = np.float32(np.sqrt(np.mean(np.sum(self.waves[:, :3] ** 2, axis=1))))
        return np.maximum(f, (np.abs(g * scale) - np.float32(self.t)) / k_rms)


@dataclass
class Bumpy(Derived):
    """``shape`` with its surface displaced by a sum of random plane waves (sd ``amp`` mm)."""

    amp: float
    waves: np.ndarray  # [n, 4]: unit direction * 2 pi / wavelength (3), phase

    def bbox(self):
        lo, hi = self.shape.bbox()
        return lo - 3 * self.amp, hi + 3 * self.amp

    def sdf(self, u, v, w):
        f = self.shape.sdf(u, v, w)
        scale = np.float32(self.amp * math.sqrt(2.0 / len(self.waves)))
        for ku, kv, kw, ph in self.waves.astype(np.float32):
            f = f + scale * np.sin(ku * u + kv * v + kw * w + ph)
        return f


def waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float]) -> np.ndarray:
    """``n`` random plane waves: [n, 4] = direction * 2 pi / wavelength, phase."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*wavelength, size=(n, 1))
    return np.concatenate([d * k, rng.uniform(0, 2 * np.pi, size=(n, 1))], axis=1)


# Frame axis -> (scipy axis, sign of the angle). A positive angle turns the first of the two other
# axes towards the second (about w: u -> v, about v: u -> w, about u: v -> w); about v that is
# scipy's negative angle.
ROTATION_AXES = {"u": ("x", 1.0), "v": ("y", -1.0), "w": ("z", 1.0)}


def rot(axis: str, deg: float) -> np.ndarray:
    """3x3 rotation about the frame axis ``axis`` (u, v, w) by ``deg`` degrees (see ``ROTATION_AXES``)."""
    name, sign = ROTATION_AXES[axis]
    return Rotation.from_euler(name, sign * deg, degrees=True).as_matrix()

