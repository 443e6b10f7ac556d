"""The paint list one patient is built into (tissue, implicit shape, role; back to front), and the
small drawing helpers its builders share."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pancreas_seg.data.phantom.config import NORMAL
from pancreas_seg.data.phantom.shapes import V_AXIS, Below, Intersect, Offset, Shape, Tube

FAR_MM = 250  # mm, far beyond the scanned range: where tubes running out of it start or end


@dataclass
class Anatomy:
    """Paint operations, back to front, and the extents the grid must cover."""

    ops: list = field(default_factory=list)  # (tissue, shape, role)
    pancreas_w: tuple[float, float] = (0.0, 0.0)  # mm, superior extent of the pancreas (with margin for bumps)
    dome_w: float = 0.0  # mm, top of the liver dome (right hemidiaphragm)
    body_center_v: float = 0.0  # mm, centre of the body outline along v
    body_half_width: float = 0.0  # mm
    oral_contrast: bool = False
    cavity: Shape | None = None  # abdominal cavity; viscera are kept inside it

    def add(self, tissue: str, shape: Shape, role: int = NORMAL) -> None:
        if shape.moves and self.cavity is not None:
            shape = Intersect(shape, self.cavity)
        self.ops.append((tissue, shape, role))


def paint_bowel(anat: Anatomy, tubes: list, wall: float, content: str, lumen_frac: float,
                gas_level: float | None = None) -> None:
    """Paint bowel: all walls first, then all lumens (so junctions stay open)."""
    for t in tubes:
        anat.add("bowel_wall", t)
    radii = [float(t.r.min()) if isinstance(t, Tube) else min(t.radii) for t in tubes]
    lumen_d = [-(wall + (1 - lumen_frac) * max(r - wall, 0.0)) for r in radii]
    for t, d in zip(tubes, lumen_d):
        anat.add(content, Offset(t, d))
    if gas_level is not None:
        for t, d in zip(tubes, lumen_d):
            anat.add("gas", Intersect(Offset(t, d), Below(V_AXIS, gas_level)))


def draw_each(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    """One uniform draw from each range, in order (e.g. an ellipsoid's three half-extents)."""
    return tuple(rng.uniform(*r) for r in ranges)
