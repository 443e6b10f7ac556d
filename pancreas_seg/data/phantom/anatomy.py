"""One patient's abdomen as paint operations (tissue, implicit shape, role), back to front: the
builders of :mod:`frame`, :mod:`pancreas`, :mod:`viscera` and :mod:`outer` called in a fixed order."""
from __future__ import annotations

import numpy as np

from pancreas_seg.data.phantom.canvas import Anatomy
from pancreas_seg.data.phantom.frame import (paint_body_wall, paint_great_vessels, paint_kidneys, paint_ribs,
                                             paint_spine)
from pancreas_seg.data.phantom.outer import add_pelvis
from pancreas_seg.data.phantom.pancreas import (draw_mesentery, draw_pancreas, draw_pancreatic_head,
                                                paint_pancreas_and_its_vessels)
from pancreas_seg.data.phantom.viscera import (paint_colon, paint_duodenum, paint_left_renal_vein,
                                               paint_liver_and_spleen, paint_mesenteric_branches, paint_small_bowel,
                                               paint_stomach)

PELVIS_BELOW_HEAD_MM = (90, 120)  # mm, pelvic brim below the pancreatic head


def build_anatomy(rng: np.random.Generator, fov: float) -> Anatomy:
    """Sample one patient's abdomen as paint operations, back to front; ``fov``: field of view, mm.

    All lengths in mm in the (u, v, w) frame. The builders are called in a fixed order, and each
    draws from ``rng`` in a fixed order: a case is the same for the same stream.
    """
    anat = Anatomy()
    body = paint_body_wall(anat, rng, fov)
    spine = paint_spine(anat, rng, body)
    vessels = paint_great_vessels(anat, rng, spine)
    head = draw_pancreatic_head(rng, body.organ_scale, vessels.ivc_front)  # pancreas drawn now, painted later
    mes = draw_mesentery(rng, vessels, head)
    gland = draw_pancreas(anat, rng, body.organ_scale, vessels, head, mes)
    kidney_left = paint_kidneys(anat, rng, body.organ_scale, spine.v, gland.body_w)
    paint_left_renal_vein(anat, rng, vessels, mes, kidney_left)
    paint_liver_and_spleen(anat, rng, body, head, mes, gland.body_w, gland.tail_w)
    paint_colon(anat, rng, body, head.w)
    fluid = paint_small_bowel(anat, rng, body, vessels.aorta_v - vessels.aorta_radius, head.w, gland.body_w)
    pylorus_u, antrum_radius = paint_stomach(anat, rng, body.organ_scale, gland, fluid)
    paint_mesenteric_branches(anat, rng, head, mes)
    paint_pancreas_and_its_vessels(anat, rng, vessels, head, mes, gland)
    paint_duodenum(anat, rng, vessels, head, mes, gland, pylorus_u, antrum_radius, fluid)
    paint_ribs(anat, rng, body, gland.body_w)
    add_pelvis(anat, rng, cavity_size=(body.half_width, body.anterior, body.posterior),
               spine=(spine.v, spine.radii[0]), w_top=head.w - rng.uniform(*PELVIS_BELOW_HEAD_MM))
    return anat
