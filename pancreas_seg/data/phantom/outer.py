"""Anatomy away from the pancreas that a whole-abdomen CT covers: lung bases and heart above the
diaphragm, vessels inside the liver, pelvic bones and bladder below. Simple shapes, few of them."""
from __future__ import annotations

import numpy as np

from pancreas_seg.data.phantom.canvas import Anatomy
from pancreas_seg.data.phantom.shapes import Ellipsoid, Intersect, Offset, Shape, Tube, rot

LIVER_VESSELS = (6, 10)  # portal / hepatic vein branches drawn inside the liver
LIVER_VESSEL_RADIUS_MM = ((3.5, 6.0), (1.0, 2.0))  # mm, radius at the hilum, at the periphery
LIVER_VESSEL_DEPTH_MM = 6.0  # mm, a branch ends at least this far inside the liver surface
LIVER_VESSEL_TRIES = 40  # rejection-sampling tries for a branch end inside the liver
LUNG_BASE_BELOW_DOME_MM = (15.0, 30.0)  # mm, costophrenic recess below the top of the liver dome
BONE_CORTEX_MM = 3.0  # mm, cortical shell of the pelvic bones


def add_thorax(anat: Anatomy, rng: np.random.Generator, cavity_size: tuple[float, float, float], dome_w: float) -> None:
    """Lung bases and heart above the diaphragm (painted before the liver, which covers them)."""
    U = rng.uniform
    ac, bca, bcp = cavity_size
    for side in (-1, 1):
        rz = U(150, 200)
        base = dome_w - U(*LUNG_BASE_BELOW_DOME_MM)
        anat.add("lung", Ellipsoid((side * ac * U(0.45, 0.55), U(0, 0.3) * bcp, base + rz),
                                   (ac * U(0.5, 0.6), (bca + bcp) / 2 * U(0.8, 0.9), rz)))
    anat.add("heart", Ellipsoid((U(0, 25), -bca * U(0.3, 0.5), dome_w + U(40, 60)), (U(50, 65), U(40, 55), U(50, 60)),
                                rot("w", U(-40, -20))))


def add_liver_vessels(anat: Anatomy, rng: np.random.Generator, liver: Shape, hilum: tuple[float, float, float]) -> None:
    """Tapering portal and hepatic vein branches from the hilum into the liver (kept inside it)."""
    lo, hi = liver.bbox()
    start = np.asarray(hilum, float)
    for _ in range(int(rng.integers(*LIVER_VESSELS))):
        for _ in range(LIVER_VESSEL_TRIES):
            end = rng.uniform(lo, hi)
            if liver.sdf(*(np.float32(x) for x in end)) < -LIVER_VESSEL_DEPTH_MM:
                break
        else:
            continue
        axis = int(np.argmax(np.abs(end - start)))
        if abs(end[axis] - start[axis]) < 1.0:
            continue
        t = np.linspace(0, 1, 4)
        points = start[None, :] + t[:, None] * (end - start)[None, :] + rng.normal(0, 4, (4, 3)) * np.sin(np.pi * t)[:, None]
        others = [i for i in range(3) if i != axis]
        name = "uvw"[axis]
        radius = np.linspace(rng.uniform(*LIVER_VESSEL_RADIUS_MM[0]), rng.uniform(*LIVER_VESSEL_RADIUS_MM[1]), 4)
        tube = Tube(name, points[:, axis], points[:, others[0]], points[:, others[1]], radius)
        anat.add("portal", Intersect(tube, liver))


def _bone(anat: Anatomy, shape: Ellipsoid) -> None:
    anat.add("bone_cortex", shape)
    anat.add("bone_marrow", Offset(shape, -BONE_CORTEX_MM))


def add_pelvis(anat: Anatomy, rng: np.random.Generator, cavity_size: tuple[float, float, float], spine: tuple[float, float],
               w_top: float) -> None:
    """Iliac wings, sacrum, femoral heads and the bladder below ``w_top`` (the iliac crests); they do not breathe."""
    U = rng.uniform
    ac, bca, bcp = cavity_size
    v_vb, r_vb = spine
    for side in (-1, 1):
        _bone(anat, Ellipsoid((side * (ac - U(25, 40)), bcp * U(0.2, 0.5), w_top - U(40, 55)), (U(10, 16), U(40, 55), U(45, 60)),
                              rot("w", side * U(20, 40)), moves=False))
        _bone(anat, Ellipsoid((side * U(80, 95), U(-10, 10), w_top - U(190, 215)), (U(22, 25),) * 3, moves=False))
    _bone(anat, Ellipsoid((0.0, v_vb + U(0, 10), w_top - U(80, 110)), (r_vb + U(12, 20), U(15, 22), U(45, 60)),
                          rot("u", U(20, 35)), moves=False))
    anat.add("urine", Ellipsoid((U(-10, 10), -bca * U(0.3, 0.5), w_top - U(150, 180)), (U(30, 50), U(25, 40), U(25, 40)),
                                moves=False))
