"""The pancreas' neighbours: left renal vein, liver with gallbladder and portal vein, spleen, stomach,
duodenum, colon, small bowel and mesenteric branches (mm)."""
from __future__ import annotations

import numpy as np

from pancreas_seg.data.phantom.canvas import FAR_MM, Anatomy, draw_each, paint_bowel
from pancreas_seg.data.phantom.frame import Body, GreatVessels
from pancreas_seg.data.phantom.outer import add_liver_vessels, add_thorax
from pancreas_seg.data.phantom.pancreas import Mesentery, Pancreas, PancreaticHead
from pancreas_seg.data.phantom.shapes import (V_AXIS, Below, Bumpy, Ellipsoid, Intersect, Offset, Tube, Union, rot,
                                              waves)

SMALL_BOWEL_LOOPS = (34, 52)  # small bowel loops (jejunum, ileum) from the pancreas down to the pelvis
SMALL_BOWEL_DEPTH_MM = 200.0  # mm, lowest loop centre below the pancreatic head

# left renal vein, liver, gallbladder, spleen, stomach
LRV_BESIDE_AORTA_MM = 8  # mm, left renal vein points either side of the aorta centre
LRV_HILUM_U_MM = 20  # mm, renal hilum end of the vein towards the midline from the kidney centre
LRV_HILUM_V_MM = 8  # mm, and in front of it
LRV_GAP_MM = 1  # mm, extra clearance of the vein in front of the aorta, right of its centre
LRV_JITTER_MM = 2  # mm, sd of the vein's level about a straight line
LIVER_ABOVE_PANCREAS_MM = (50, 75)  # mm, liver centre above the pancreatic body or tail
RIGHT_LOBE_U_MM = (60, 80)  # mm, right lobe centre right of the midline (times the organ position scale)
RIGHT_LOBE_V_MM = (-10, 10)  # mm
RIGHT_LOBE_RADII_MM = ((65, 85), (80, 100), (85, 110))  # mm, half-extents (u, v, w)
LEFT_LOBE_U_MM = (-5, 20)  # mm, left lobe centre left of the midline
LEFT_LOBE_FORWARD = (0.5, 0.65)  # left lobe centre in front, in cavity anterior half-depths
LEFT_LOBE_RISE_MM = (5, 30)  # mm, left lobe centre above the right's
LEFT_LOBE_RADII_MM = ((45, 70), (25, 40), (40, 60))  # mm, half-extents (u, v, w)
LIVER_BLEND_MM = 8.0  # mm, blend width of the two lobes
LIVER_BUMPS_MM = (2, 4)  # mm, sd of the liver's surface bumps
LIVER_WAVES = 5  # plane waves of the liver's surface
LIVER_WAVELENGTH_MM = (40, 90)  # mm
HILUM_RIGHT_OF_SMV_MM = 30  # mm, liver hilum right of the SMV
HILUM_ABOVE_MM = 45  # mm, liver hilum above the portal confluence
PORTAL_START_MM = 5  # mm, portal vein start below the confluence
PORTAL_MID_MM = 20  # mm, its middle point above the confluence
PORTAL_END_MM = (40, 55)  # mm, its end above the confluence
PORTAL_MID_RIGHT_MM = 15  # mm, middle point right of the SMV
PORTAL_END_RIGHT_MM = (25, 40)  # mm, end right of the SMV
PORTAL_MID_BACK_MM = 3  # mm, middle point behind the confluence
PORTAL_END_BACK_MM = (0, 12)  # mm, end behind the confluence
PORTAL_RADIUS_MM = (6, 8)  # mm
GALLBLADDER_SHARE = 0.85  # share of patients with a gallbladder seen
GALLBLADDER_RIGHT_OF_HEAD_MM = (25, 40)  # mm
GALLBLADDER_FORWARD = (0.35, 0.55)  # gallbladder centre in front, in cavity anterior half-depths
GALLBLADDER_ABOVE_HEAD_MM = (15, 35)  # mm
GALLBLADDER_RADII_MM = ((12, 18), (12, 18), (25, 40))  # mm, half-extents (u, v, w)
GALLBLADDER_TILT_DEG = (-20, 20)  # degrees about u
SPLEEN_U_MM = (85, 105)  # mm, spleen centre left of the midline (times the organ position scale)
SPLEEN_V_MM = (25, 50)  # mm, behind the origin
SPLEEN_ABOVE_TAIL_MM = (15, 35)  # mm
SPLEEN_RADII_MM = ((18, 28), (40, 60), (45, 65))  # mm, half-extents (u, v, w)
SPLEEN_TURN_DEG = (30, 60)  # degrees about w
STOMACH_RADII_MM = ((35, 55), (25, 40), (45, 70))  # mm, half-extents (u, v, w)
STOMACH_GAP_MM = (3, 10)  # mm, between the stomach and the pancreatic body's front
STOMACH_U_MM = (35, 60)  # mm, stomach centre left of the midline (times the organ position scale)
STOMACH_ABOVE_TAIL_MM = (10, 30)  # mm
STOMACH_TURN_DEG = (-25, 5)  # degrees about w
ANTRUM_RADIUS_MM = (12, 20)  # mm
PYLORUS_U_MM = (-5, 10)  # mm, pylorus left of the pancreatic neck
ANTRUM_LEFT_OF_BODY_MM = 15  # mm, antrum's end left of the pancreatic body
ANTRUM_GAP_MM = ((2, 8), (3, 8))  # mm, antrum in front of the neck, of the body
ANTRUM_RISE_MM = ((0, 8), (5, 15), (5, 20))  # mm, antrum points above the body, the body, the tail
ANTRUM_TAPER = (0.8, 1, 1.3)  # antrum radius from the pylorus to the stomach, in antrum radii
STOMACH_WALL_MM = (3, 6)  # mm
STOMACH_GAS_DEPTH = (0.2, 0.8)  # gas-fluid level in front of the stomach's centre, in v half-extents

# mesenteric branches
MESENTERIC_BRANCHES = 10  # small mesenteric arteries and veins
BRANCH_U_SD_MM = 25  # mm, sd of a branch's u about the SMA
BRANCH_BEFORE_SMA_MM = (10, 50)  # mm, branch in front of the SMA at the left renal vein's level
BRANCH_VEIN_SHARE = 0.5  # share of branches that are veins
BRANCH_MID_BELOW_HEAD_MM = 60  # mm, a branch's middle point below the head
BRANCH_END_BELOW_MM = 10  # mm, a branch's end below the confluence
BRANCH_JITTER_MM = 6  # mm, sd of a branch's centre line
BRANCH_RADIUS_MM = (1.0, 2.5)  # mm

# duodenum
D2_BESIDE_HEAD = (0.7, 0.95)  # D2 inner edge right of the head centre, in head u half-extents
D1_ABOVE_HEAD = (0.6, 1.0)  # bulb level above the head centre, in head w half-extents
D1_GAP_MM = 4  # mm, bulb in front of the head, of the antrum
D1_JITTER_MM = 3  # mm, sd of the bulb's level
BULB_RADIUS_SHARE = 0.9  # bulb over duodenal radius
D2_JITTER_MM = (3, 4)  # mm, sd of D2's u and v
D3_GAP_MM = 1.5  # mm, between the aorta's front and D3
D3_HEAD_U_MM = 10  # mm, D3 point left of the head centre
D3_LEFT_OF_AORTA_MM = (20, 30)  # mm, D3-D4 end left of the aorta
D4_FORWARD_MM = 5  # mm, its end in front of D3 at the aorta
D3_SAG_MM = 3  # mm, D3 below its level right of the aorta
D4_RISE_MM = (5, 20)  # mm, the end above D3
DUODENUM_COLLAPSED_SHARE = 0.4  # share of collapsed duodenums
DUODENUM_WALL_MM = (2, 3.5)  # mm
DUODENUM_NO_GAS_SHARE = 0.6  # share of duodenums without gas
DUODENUM_GAS_DEPTH = (0.3, 0.9)  # gas-fluid level in front of the head centre, in duodenal radii
# colon
STOOL_SHARE = (0.4, 0.9)  # share of colon segments holding stool (the others fluid)
TRANSVERSE_COLON_W_MM = (-35, 25)  # mm, transverse colon level relative to the pancreatic head
COLON_RADIUS_MM = (15, 26)  # mm
COLON_JITTER_MM = 5  # mm, sd of the ascending and descending colon's v about their mean
ASCENDING_BEND_MM = 40  # mm, the ascending colon's middle point below the hepatic flexure
ASCENDING_INSET_MM = (25, 40)  # mm, ascending colon centre inside the cavity's right edge
ASCENDING_V_MM = (-25, 15)  # mm, ascending colon centre along v
DESCENDING_RISE_MM = (30, 70)  # mm, splenic flexure above the transverse colon
DESCENDING_INSET_MM = (20, 35)  # mm, descending colon centre inside the cavity's left edge
DESCENDING_V_MM = (0, 30)  # mm, descending colon centre along v
DESCENDING_RADIUS_SHARE = 0.85  # descending over ascending colon radius
TRANSVERSE_RIGHT_INSET_MM = 35  # mm, hepatic flexure inside the cavity's right edge
TRANSVERSE_LEFT_INSET_MM = 30  # mm, splenic flexure inside the cavity's left edge
TRANSVERSE_BEHIND_WALL_MM = (25, 45)  # mm, transverse colon centre behind the anterior cavity edge
TRANSVERSE_JITTER_MM = 6  # mm, sd of the transverse colon's v about its mean
TRANSVERSE_SAG_MM = (0, -20, -30, -15, 10)  # mm, transverse colon's sag from right to left (before the scale)
TRANSVERSE_SAG_SCALE = (0.3, 1.2)
COLON_WALL_MM = (2, 3)  # mm
HAUSTRA_AMPLITUDE_MM = 2.5  # mm, sd of the haustral bumps
HAUSTRA_WAVES = 4  # plane waves of the haustral bumps
HAUSTRA_WAVELENGTH_MM = (20, 35)  # mm
COLON_GAS_DEPTH = (0.0, 0.6)  # gas-fluid level in front of the colon's centre, in colon radii

# small bowel
ORAL_CONTRAST_SHARE = 0.3  # share of patients given positive oral contrast
LOOP_VERTICAL_SHARE = 0.6  # share of loops running superior-inferior (the others left-right)
LOOP_RADIUS_MM = (9, 16)  # mm
LOOP_RIGHT_INSET_MM = 40  # mm, loop centres inside the cavity's right edge
LOOP_LEFT_INSET_MM = 35  # mm, and its left edge
LOOP_BEHIND_WALL_MM = 20  # mm, loop centres behind the anterior cavity edge
LOOP_BEFORE_AORTA_MM = 15  # mm, loop centres in front of the aorta's front
LOOP_ABOVE_BODY_MM = 15  # mm, highest loop centre above the pancreatic body
LOOP_POINTS = 4  # centre-line points of a loop
LOOP_LENGTH_MM = (30, 90)  # mm
LOOP_JITTER_MM = 12  # mm, sd of a loop's centre line about a straight line
LOOP_RADIUS_VARIATION = (0.85, 1.15)  # radius at each centre-line point over the loop's
COLLAPSED_LOOP_SHARE = 0.35  # share of collapsed loops
FLUID_LOOP_SHARE = 0.8  # share of collapsed or fluid-filled loops (the rest hold gas)
COLLAPSED_WALL_MM = (2, 3)  # mm, wall of a collapsed loop
COLLAPSED_LUMEN = (0.05, 0.3)  # lumen of a collapsed loop, share of the inner radius
LOOP_WALL_MM = (1.5, 2.5)  # mm, wall of a distended loop
LOOP_GAS_LEVEL_MM = (-2, 6)  # mm, gas-fluid level in front of the loop's centre


def paint_colon(anat: Anatomy, rng: np.random.Generator, body: Body, w_h: float) -> None:
    """Paint the ascending, descending and transverse colon (haustral bumps; stool or fluid, a gas
    level) around the pancreatic head level ``w_h`` (mm)."""
    U = rng.uniform
    ac, bca = body.half_width, body.anterior
    stool_frac = U(*STOOL_SHARE)
    w_tc = w_h + U(*TRANSVERSE_COLON_W_MM)
    r_c = U(*COLON_RADIUS_MM)
    asc = Tube("w", np.array([-FAR_MM, w_tc - ASCENDING_BEND_MM, w_tc]), -(ac - U(*ASCENDING_INSET_MM)) * np.ones(3),
               U(*ASCENDING_V_MM) + rng.normal(0, COLON_JITTER_MM, 3), np.full(3, r_c))
    desc = Tube("w", np.array([-FAR_MM, w_tc, w_tc + U(*DESCENDING_RISE_MM)]),
                (ac - U(*DESCENDING_INSET_MM)) * np.ones(3), U(*DESCENDING_V_MM) + rng.normal(0, COLON_JITTER_MM, 3),
                np.full(3, r_c * DESCENDING_RADIUS_SHARE))
    us = np.linspace(-(ac - TRANSVERSE_RIGHT_INSET_MM), ac - TRANSVERSE_LEFT_INSET_MM, len(TRANSVERSE_SAG_MM))
    trans = Tube("u", us, -bca + U(*TRANSVERSE_BEHIND_WALL_MM) + rng.normal(0, TRANSVERSE_JITTER_MM, len(us)),
                 w_tc + np.array(TRANSVERSE_SAG_MM) * U(*TRANSVERSE_SAG_SCALE), np.full(len(us), r_c))
    for t in (asc, desc, trans):
        wall = U(*COLON_WALL_MM)
        bumpy = Bumpy(t, HAUSTRA_AMPLITUDE_MM, waves(rng, HAUSTRA_WAVES, HAUSTRA_WAVELENGTH_MM))
        anat.add("bowel_wall", bumpy)
        content = "stool" if rng.uniform() < stool_frac else "bowel_fluid"
        anat.add(content, Offset(bumpy, -wall))
        lvl_v = float(np.mean(t.b if t.axis == "w" else t.a)) - r_c * U(*COLON_GAS_DEPTH)
        anat.add("gas", Intersect(Offset(bumpy, -wall), Below(V_AXIS, lvl_v)))


def paint_small_bowel(anat: Anatomy, rng: np.random.Generator, body: Body, v_front: float, w_h: float,
                      w_b: float) -> str:
    """Paint the small bowel loops (jejunum, ileum: collapsed, fluid-filled or with a gas level) in
    front of ``v_front`` (the aorta's front, mm), from the pelvis up to just above the pancreatic
    body ``w_b``; decide on oral contrast. Returns the bowel fluid's tissue."""
    U = rng.uniform
    ac, bca = body.half_width, body.anterior
    anat.oral_contrast = bool(rng.uniform() < ORAL_CONTRAST_SHARE)
    fluid = "oral_contrast" if anat.oral_contrast else "bowel_fluid"
    for _ in range(int(rng.integers(*SMALL_BOWEL_LOOPS))):
        axis = "w" if rng.uniform() < LOOP_VERTICAL_SHARE else "u"
        r = U(*LOOP_RADIUS_MM)
        cu, cv, cw = (U(-ac + LOOP_RIGHT_INSET_MM, ac - LOOP_LEFT_INSET_MM),
                      U(-bca + LOOP_BEHIND_WALL_MM, v_front - LOOP_BEFORE_AORTA_MM),
                      U(w_h - SMALL_BOWEL_DEPTH_MM, w_b + LOOP_ABOVE_BODY_MM))
        n = LOOP_POINTS
        length = U(*LOOP_LENGTH_MM)
        s = np.linspace(-length / 2, length / 2, n) + (cw if axis == "w" else cu)
        a = (cu if axis == "w" else cv) + rng.normal(0, LOOP_JITTER_MM, n)
        b = (cv if axis == "w" else cw) + rng.normal(0, LOOP_JITTER_MM, n)
        loop = Tube(axis, s, a, b, r * U(*LOOP_RADIUS_VARIATION, n))
        state = rng.uniform()
        if state < COLLAPSED_LOOP_SHARE:  # collapsed: soft tissue throughout, like the pancreas
            paint_bowel(anat, [loop], U(*COLLAPSED_WALL_MM), fluid, U(*COLLAPSED_LUMEN))
        elif state < FLUID_LOOP_SHARE:
            paint_bowel(anat, [loop], U(*LOOP_WALL_MM), fluid, 1.0)
        else:
            paint_bowel(anat, [loop], U(*LOOP_WALL_MM), fluid, 1.0, gas_level=cv - U(*LOOP_GAS_LEVEL_MM))
    return fluid


def paint_left_renal_vein(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels, mes: Mesentery,
                          kid_l: tuple[float, float, float]) -> None:
    """Paint the left renal vein from the left kidney ``kid_l`` (centre, mm) between aorta and SMA
    into the IVC."""
    ao_u, r_ao, v_ao = vessels.aorta_u, vessels.aorta_radius, vessels.aorta_v
    r_lrv = mes.lrv_radius
    lrv = Tube("u", np.array([vessels.ivc_u, ao_u - LRV_BESIDE_AORTA_MM, ao_u + LRV_BESIDE_AORTA_MM,
                              kid_l[0] - LRV_HILUM_U_MM]),
               np.array([vessels.ivc_v, v_ao - r_ao - r_lrv - LRV_GAP_MM, v_ao - r_ao - r_lrv,
                         kid_l[1] - LRV_HILUM_V_MM]),
               np.full(4, mes.lrv_w) + rng.normal(0, LRV_JITTER_MM, 4), np.full(4, r_lrv))
    anat.add("portal", lrv)


def paint_liver_and_spleen(anat: Anatomy, rng: np.random.Generator, body: Body, head: PancreaticHead,
                           mes: Mesentery, w_b: float, w_t: float) -> None:
    """Paint the liver (two blended lobes with a bumpy surface; sets the dome level) with the
    thorax above it and its vessels, the portal vein, the gallbladder (most patients) and the
    spleen above the tail level ``w_t`` (mm)."""
    U = rng.uniform
    org, bca = body.organ_scale, body.anterior
    u_smv, v_smv_conf, w_conf = mes.smv_u, mes.confluence_v, mes.confluence_w
    w_top = max(w_t, w_b) + U(*LIVER_ABOVE_PANCREAS_MM)
    right = Ellipsoid((-U(*RIGHT_LOBE_U_MM) * org, U(*RIGHT_LOBE_V_MM), w_top), draw_each(rng, RIGHT_LOBE_RADII_MM))
    left = Ellipsoid((U(*LEFT_LOBE_U_MM), -bca * U(*LEFT_LOBE_FORWARD), w_top + U(*LEFT_LOBE_RISE_MM)),
                     draw_each(rng, LEFT_LOBE_RADII_MM))
    liver = Union([right, left], k=LIVER_BLEND_MM)
    liver = Bumpy(liver, U(*LIVER_BUMPS_MM), waves(rng, LIVER_WAVES, LIVER_WAVELENGTH_MM))
    anat.dome_w = float(liver.bbox()[1][2] - 3 * liver.amp)
    add_thorax(anat, rng, cavity_size=(body.half_width, bca, body.posterior), dome_w=anat.dome_w)
    anat.add("liver", liver)
    add_liver_vessels(anat, rng, liver, hilum=(u_smv - HILUM_RIGHT_OF_SMV_MM, v_smv_conf, w_conf + HILUM_ABOVE_MM))
    anat.add("portal", Tube("w", np.array([w_conf - PORTAL_START_MM, w_conf + PORTAL_MID_MM,
                                           w_conf + U(*PORTAL_END_MM)]),
                            np.array([u_smv, u_smv - PORTAL_MID_RIGHT_MM, u_smv - U(*PORTAL_END_RIGHT_MM)]),
                            np.array([v_smv_conf, v_smv_conf + PORTAL_MID_BACK_MM, v_smv_conf + U(*PORTAL_END_BACK_MM)]),
                            np.full(3, U(*PORTAL_RADIUS_MM))))
    if rng.uniform() < GALLBLADDER_SHARE:
        anat.add("bile", Ellipsoid((head.u - U(*GALLBLADDER_RIGHT_OF_HEAD_MM), -bca * U(*GALLBLADDER_FORWARD),
                                    head.w + U(*GALLBLADDER_ABOVE_HEAD_MM)), draw_each(rng, GALLBLADDER_RADII_MM),
                                   rot("u", U(*GALLBLADDER_TILT_DEG))))
    spleen = Ellipsoid((U(*SPLEEN_U_MM) * org, U(*SPLEEN_V_MM), w_t + U(*SPLEEN_ABOVE_TAIL_MM)),
                       draw_each(rng, SPLEEN_RADII_MM), rot("w", U(*SPLEEN_TURN_DEG)))
    anat.add("spleen", spleen)


def paint_stomach(anat: Anatomy, rng: np.random.Generator, org: float, gland: Pancreas, fluid: str) -> tuple[float, float]:
    """Paint the stomach in front of the pancreatic body and tail and its antrum towards the pylorus
    (fluid, food or the bowel fluid ``fluid``, a gas level). Returns the pylorus' u and the antrum's
    radius (mm)."""
    U = rng.uniform
    r_neck, u_n, v_n, r_body, u_b, v_b, w_b = gland.neck_radius, gland.neck_u, gland.neck_v, gland.body_radius, \
        gland.body_u, gland.body_v, gland.body_w
    w_t = gland.tail_w
    rs = draw_each(rng, STOMACH_RADII_MM)
    st_v = v_b - r_body - U(*STOMACH_GAP_MM) - rs[1]
    stomach = Ellipsoid((U(*STOMACH_U_MM) * org, st_v, w_t + U(*STOMACH_ABOVE_TAIL_MM)), rs,
                        rot("w", U(*STOMACH_TURN_DEG)))
    r_an = U(*ANTRUM_RADIUS_MM)
    u_pyl = u_n + U(*PYLORUS_U_MM)
    antrum = Tube("u", np.array([u_pyl, (u_pyl + u_b) / 2, u_b + ANTRUM_LEFT_OF_BODY_MM]),
                  np.array([v_n - r_neck - r_an - U(*ANTRUM_GAP_MM[0]), v_b - r_body - r_an - U(*ANTRUM_GAP_MM[1]), st_v]),
                  np.array([w_b + U(*ANTRUM_RISE_MM[0]), w_b + U(*ANTRUM_RISE_MM[1]), w_t + U(*ANTRUM_RISE_MM[2])]),
                  r_an * np.array(ANTRUM_TAPER))
    st_content = ["bowel_fluid", "food", fluid][int(rng.integers(0, 3))]
    paint_bowel(anat, [stomach, antrum], U(*STOMACH_WALL_MM), st_content, 1.0,
                gas_level=st_v - rs[1] * U(*STOMACH_GAS_DEPTH))
    return u_pyl, r_an


def paint_mesenteric_branches(anat: Anatomy, rng: np.random.Generator, head: PancreaticHead, mes: Mesentery) -> None:
    """Paint small mesenteric arteries and veins in front of the SMA, from below up to the
    confluence (mm)."""
    U = rng.uniform
    for _ in range(MESENTERIC_BRANCHES):
        uu = mes.sma_u + rng.normal(0, BRANCH_U_SD_MM)
        vv = float(np.interp(mes.lrv_w, mes.gap_w, mes.sma_v)) - U(*BRANCH_BEFORE_SMA_MM)
        anat.add("portal" if rng.uniform() < BRANCH_VEIN_SHARE else "artery",
                 Tube("w", np.array([-FAR_MM, head.w - BRANCH_MID_BELOW_HEAD_MM, mes.confluence_w - BRANCH_END_BELOW_MM]),
                      uu + rng.normal(0, BRANCH_JITTER_MM, 3), vv + rng.normal(0, BRANCH_JITTER_MM, 3),
                      np.full(3, U(*BRANCH_RADIUS_MM))))


def paint_duodenum(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels, head: PancreaticHead,
                   mes: Mesentery, gland: Pancreas, pylorus_u: float, antrum_radius: float, fluid: str) -> None:
    """Paint the duodenum (collapsed or filled with ``fluid``, sometimes a gas level): the bulb (D1)
    from the pylorus at ``pylorus_u``, the descending part (D2) hugging the head and the horizontal
    part (D3) between aorta and SMA (mm)."""
    U = rng.uniform
    ao_u, r_ao, v_ao = vessels.aorta_u, vessels.aorta_radius, vessels.aorta_v
    u_h, v_h, w_h, (rh_u, _, rh_w) = head.u, head.v, head.w, head.radii
    r_duo, w_d3 = mes.duodenum_radius, mes.d3_w
    r_neck, v_n = gland.neck_radius, gland.neck_v
    u_pyl, r_an = pylorus_u, antrum_radius
    u_d2 = u_h - rh_u * U(*D2_BESIDE_HEAD) - r_duo
    w_d1 = w_h + rh_w * U(*D1_ABOVE_HEAD)
    d1 = Tube("u", np.array([u_d2, (u_d2 + u_pyl) / 2, u_pyl]),
              np.array([v_h - D1_GAP_MM, v_n - r_neck - r_duo, v_n - r_neck - r_an - D1_GAP_MM]),
              np.full(3, w_d1) + rng.normal(0, D1_JITTER_MM, 3), np.full(3, r_duo * BULB_RADIUS_SHARE))
    d2 = Tube("w", np.array([w_d3, (w_d3 + w_d1) / 2, w_d1]), u_d2 + rng.normal(0, D2_JITTER_MM[0], 3),
              v_h + rng.normal(0, D2_JITTER_MM[1], 3), np.full(3, r_duo))
    v_d3_ao = v_ao - r_ao - r_duo - D3_GAP_MM
    d3 = Tube("u", np.array([u_d2, u_h + D3_HEAD_U_MM, ao_u, ao_u + U(*D3_LEFT_OF_AORTA_MM)]),
              np.array([v_h, (v_h + v_d3_ao) / 2, v_d3_ao, v_d3_ao - D4_FORWARD_MM]),
              np.array([w_d3, w_d3 - D3_SAG_MM, w_d3, w_d3 + U(*D4_RISE_MM)]), np.full(4, r_duo))
    collapsed = rng.uniform() < DUODENUM_COLLAPSED_SHARE
    paint_bowel(anat, [d1, d2, d3], U(*DUODENUM_WALL_MM), fluid, U(*COLLAPSED_LUMEN) if collapsed else 1.0,
                gas_level=None if rng.uniform() < DUODENUM_NO_GAS_SHARE else v_h - r_duo * U(*DUODENUM_GAS_DEPTH))
