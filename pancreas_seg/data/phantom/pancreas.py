"""The pancreas (head, neck, body, tail, uncinate process, lobules, fat clefts, duct) and the vessels
it wraps around: SMA and SMV, left renal vein level, splenic artery and vein, common bile duct (mm)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfinv

from pancreas_seg.data.phantom.canvas import FAR_MM, Anatomy
from pancreas_seg.data.phantom.config import ORGAN, ORGAN_PART
from pancreas_seg.data.phantom.frame import GreatVessels
from pancreas_seg.data.phantom.shapes import (U_AXIS, Below, Bumpy, Clefts, Ellipsoid, Intersect, Offset, Shape, Tube,
                                              Union, waves)

FATTY_SHARE = 0.15  # share of patients with a fatty pancreas
FATTY_FAT_FRACTION = (0.25, 0.4)  # fat clefts' volume fraction of a fatty pancreas
LEAN_FAT_FRACTION = (0.0, 0.08)  # the same for the others
CLEFT_INSET_MM = 0.8  # mm, clefts stay this far inside the pancreas outline
CLEFT_WAVES = 10  # plane waves of the cleft field
CLEFT_WAVELENGTH_MM = (7.0, 14.0)  # mm, lobule scale
FAT_PLANE_MM = (3.0, 5.0)  # mm, fat plane around the pancreas (where no organ lies on it: vessels, duodenum)
HILUM_CONTACT_MM = (10.0, 25.0)  # mm, tail length with no fat plane (splenic hilum)
BODY_RISE_MM = (10.0, 20.0)  # mm, pancreatic body above the neck
TAIL_RISE_MM = (20.0, 38.0)  # mm, tail above the body (towards the splenic hilum)
PANCREAS_Z_STRETCH = (1.2, 1.6)  # body and tail cross-section: superior-inferior over anterior-posterior extent

# pancreas and the vessels it wraps around
PANCREAS_SIZE = (0.85, 1.12)  # scale of the pancreas' radii
HEAD_RADII_MM = ((14, 19), (12, 16), (20, 28))  # mm, head half-extents (u, v, w) before the size scale
HEAD_U_MM = (30, 42)  # mm, head centre right of the midline (times the organ position scale)
HEAD_GAP_MM = (0, 3)  # mm, between the IVC's front and the head
HEAD_BELOW_ORIGIN_MM = (3, 10)  # mm, head centre below the frame's origin
HEAD_DROP_MM = (3, 8)  # mm, head ellipsoid below the centre line's start
HEAD_TUBE_SHARE = 0.85  # centre-line radius at the head over the head's v half-extent
SMA_RADIUS_MM = (3, 4.5)  # mm
SMV_RADIUS_MM = (5, 7)  # mm
SMA_RIGHT_OF_AORTA_MM = (2, 6)  # mm
SMA_ORIGIN_W_MM = (5, 15)  # mm, level of the SMA's origin from the aorta
LRV_RADIUS_MM = (4, 6)  # mm, left renal vein
LRV_BELOW_SMA_ORIGIN_MM = (12, 20)  # mm
DUODENUM_RADIUS_MM = (9, 13)  # mm
D3_BELOW_HEAD_MM = (5, 12)  # mm, horizontal duodenum below the head's lower end
D3_GAP_BELOW_MM = 15  # mm, the aorta-SMA gap stays D3-wide this far below D3
SMA_ORIGIN_GAP_BELOW_MM = 6  # mm, level below the SMA's origin where the gap is SMA_ORIGIN_GAP_MM
D3_GAP_SLACK_MM = (5, 5, 4)  # mm, aorta-SMA gap beyond the duodenum's diameter: far below, below and at D3
LRV_GAP_SLACK_MM = 3  # mm, the gap beyond the left renal vein's diameter at its level
SMA_ORIGIN_GAP_MM = 4.0  # mm, aorta-SMA gap just below the SMA's origin
SMA_ORIGIN_OVERLAP = 0.5  # the SMA's origin dips this share of the aortic radius into the aorta
SMV_RIGHT_OF_SMA_MM = (10, 14)  # mm
SMV_BEFORE_SMA_MM = (0, 4)  # mm, SMV centre in front of the SMA's
CONFLUENCE_W_MM = (-2, 6)  # mm, level of the portal confluence
NECK_RADIUS_MM = (6, 9)  # mm, before the size scale
NECK_U_MM = (-2, 6)  # mm, neck centre left of the SMV
NECK_ABOVE_MM = (2, 8)  # mm, neck above the confluence or the head, whichever is higher
NECK_GAP_MM = (1, 4)  # mm, between the SMV's front and the neck
BODY_RADIUS_MM = (8, 12)  # mm, before the size scale
BODY_LEFT_OF_AORTA_MM = (15, 35)  # mm
BODY_GAP_MM = (10, 16)  # mm, between the aorta's front and the body
TAIL_RADIUS_MM = (7, 11)  # mm, before the size scale
TAIL_U_MM = (75, 100)  # mm, tail tip left of the midline (times the organ position scale)
TAIL_MIN_LENGTH_MM = 35  # mm, least tail tip distance left of the body
TAIL_BEHIND_AORTA_MM = (5, 25)  # mm, tail tip centre behind the aorta's centre
BODY_TAIL_FORWARD_MM = (0, 12)  # mm, body-tail midpoint in front of the straight line
BODY_TAIL_JITTER_MM = 4  # mm, sd of the body-tail midpoint's level
TAIL_TIP_SHARE = 0.8  # centre-line radius at the tip over the tail radius
UNCINATE_U_MM = (10, 18)  # mm, uncinate process left of the head centre
UNCINATE_V_MM = (3, 8)  # mm, behind the head centre
UNCINATE_DROP = (0.6, 0.85)  # below the head centre, in head w half-extents
UNCINATE_RADII_MM = ((10, 14), (6, 9), (8, 12))  # mm, half-extents (u, v, w) before the size scale
PANCREAS_BLEND_MM = 4.0  # mm, blend width of head, uncinate process and centre-line tube
LOBULE_AMPLITUDE_MM = (0.8, 1.8)  # mm, sd of the lobulated surface before the size scale
LOBULE_WAVES = 6  # plane waves of the lobulated surface
LOBULE_WAVELENGTH_MM = (8, 16)  # mm

# splenic vessels, duct, SMA collar, common bile duct
SPLENIC_BEYOND_TAIL_MM = 10  # mm, splenic artery and vein reach this far left of the tail tip
SPLENIC_ARTERY_POINTS = 7  # centre-line points of the splenic artery
SPLENIC_ARTERY_JITTER_MM = 4  # mm, sd of its tortuosity
SPLENIC_ARTERY_ABOVE_MM = (1, 6)  # mm, above the pancreas' upper edge
CELIAC_INTO_AORTA_MM = 2  # mm, the artery's start inside the aorta's front
CELIAC_ABOVE_MM = (8, 15)  # mm, its start above the body or the SMA origin
SPLENIC_ARTERY_RADIUS_MM = (2.0, 3.0)  # mm
DUCT_START_MM = 5  # mm, duct start left of the head centre
DUCT_END_MM = 10  # mm, duct end right of the tail tip
DUCT_POINTS = 6  # centre-line points of the duct
DUCT_RADIUS_MM = (0.8, 2.0)  # mm
SPLENIC_VEIN_POINTS = 6  # centre-line points of the splenic vein
SPLENIC_VEIN_RADIUS_MM = (3.5, 5)  # mm
SPLENIC_VEIN_BEHIND = (0.75, 1.0)  # splenic vein behind the pancreas' centre line, in its radii
SPLENIC_VEIN_JITTER_MM = 2  # mm, sd of its level
SMV_JITTER_MM = 2  # mm, sd of the SMV's u
SMA_JITTER_MM = 1.5  # mm, sd of the SMA's u
COLLAR_BELOW_ORIGIN_MM = 10  # mm, the SMA's fat collar ends this far below its origin
SMA_COLLAR_MM = (2, 4)  # mm, fat collar around the SMA
CBD_W_MM = (-10, 15, 45)  # mm, common bile duct levels relative to the head centre
CBD_U_SHARE = (0.4, 0.45)  # its u right of the head centre at the two lower levels, in head u half-extents
CBD_TOP_RIGHT_MM = 10  # mm, its u right of the head centre at the top
CBD_V_SHARE = (0.5, 0.45)  # its v behind the head centre at the two lower levels, in head v half-extents
CBD_RADIUS_MM = (2.5, 4.5)  # mm


@dataclass(frozen=True)
class PancreaticHead:
    """The pancreas' size scale and its head's centre and radii (u, v, w), mm."""

    size: float
    u: float
    v: float
    w: float
    radii: tuple[float, float, float]


@dataclass(frozen=True)
class Mesentery:
    """Superior mesenteric artery and vein, left renal vein and duodenum levels (mm): the vessels
    the pancreas wraps around. ``gap_w``: levels at which ``sma_v`` and ``smv_v`` are given."""

    sma_radius: float
    smv_radius: float
    sma_u: float
    sma_origin_w: float
    lrv_radius: float
    lrv_w: float
    duodenum_radius: float
    d3_w: float
    gap_w: np.ndarray
    sma_v: np.ndarray
    smv_u: float
    smv_v: np.ndarray
    confluence_w: float  # level where the splenic vein joins the SMV (portal confluence)
    confluence_v: float


@dataclass(frozen=True)
class Pancreas:
    """The pancreas' centre line (head, neck, body, tail), its outline and its fat clefts (mm)."""

    neck_radius: float
    neck_u: float
    neck_v: float
    body_radius: float
    body_u: float
    body_v: float
    body_w: float
    tail_u: float
    tail_w: float
    stretch: float  # superior-inferior over anterior-posterior extent of the body and tail
    tube: Tube
    shape: Shape
    clefts: Shape


def draw_pancreatic_head(rng: np.random.Generator, org: float, ivc_front: float) -> PancreaticHead:
    """Draw the pancreas' size and its head in front of the IVC (``ivc_front``: v of its front, mm)."""
    U = rng.uniform
    size = U(*PANCREAS_SIZE)
    rh_u, rh_v, rh_w = size * U(*HEAD_RADII_MM[0]), size * U(*HEAD_RADII_MM[1]), size * U(*HEAD_RADII_MM[2])
    u_h = -U(*HEAD_U_MM) * org
    v_h = ivc_front - U(*HEAD_GAP_MM) - rh_v
    w_h = -U(*HEAD_BELOW_ORIGIN_MM)
    return PancreaticHead(size, u_h, v_h, w_h, (rh_u, rh_v, rh_w))


def draw_mesentery(rng: np.random.Generator, vessels: GreatVessels, head: PancreaticHead) -> Mesentery:
    """Draw the SMA and SMV in front of the aorta, the left renal vein and the horizontal duodenum
    (D3) passing between aorta and SMA below the head (mm)."""
    U = rng.uniform
    ao_u, r_ao, v_ao = vessels.aorta_u, vessels.aorta_radius, vessels.aorta_v
    r_sma, r_smv = U(*SMA_RADIUS_MM), U(*SMV_RADIUS_MM)
    u_sma = ao_u - U(*SMA_RIGHT_OF_AORTA_MM)
    w_sma0 = U(*SMA_ORIGIN_W_MM)
    r_lrv = U(*LRV_RADIUS_MM)
    w_lrv = w_sma0 - U(*LRV_BELOW_SMA_ORIGIN_MM)
    r_duo = U(*DUODENUM_RADIUS_MM)
    w_d3 = head.w - head.radii[2] - U(*D3_BELOW_HEAD_MM)
    gap_w = np.array([-FAR_MM, w_d3 - D3_GAP_BELOW_MM, w_d3, w_lrv, w_sma0 - SMA_ORIGIN_GAP_BELOW_MM, w_sma0])
    gap = np.array([2 * r_duo + D3_GAP_SLACK_MM[0], 2 * r_duo + D3_GAP_SLACK_MM[1], 2 * r_duo + D3_GAP_SLACK_MM[2],
                    2 * r_lrv + LRV_GAP_SLACK_MM, SMA_ORIGIN_GAP_MM, -r_ao * SMA_ORIGIN_OVERLAP])
    v_sma = v_ao - r_ao - gap - r_sma
    u_smv = u_sma - U(*SMV_RIGHT_OF_SMA_MM)
    v_smv = v_sma - U(*SMV_BEFORE_SMA_MM)
    w_conf = U(*CONFLUENCE_W_MM)
    v_smv_conf = float(np.interp(w_conf, gap_w, v_smv))
    return Mesentery(r_sma, r_smv, u_sma, w_sma0, r_lrv, w_lrv, r_duo, w_d3, gap_w, v_sma, u_smv, v_smv, w_conf,
                     v_smv_conf)


def draw_pancreas(anat: Anatomy, rng: np.random.Generator, org: float, vessels: GreatVessels,
                  head: PancreaticHead, mes: Mesentery) -> Pancreas:
    """Draw the pancreas: a tube from the head over the SMV (neck) and in front of the aorta (body)
    rising to the splenic hilum (tail), united with the head and uncinate process, with lobulated
    bumps and fat clefts; set its superior extent in ``anat`` (mm)."""
    U = rng.uniform
    ao_u, r_ao, v_ao = vessels.aorta_u, vessels.aorta_radius, vessels.aorta_v
    size, u_h, v_h, w_h, (rh_u, rh_v, rh_w) = head.size, head.u, head.v, head.w, head.radii
    r_neck = size * U(*NECK_RADIUS_MM)
    u_n = mes.smv_u + U(*NECK_U_MM)
    w_n = max(mes.confluence_w, w_h) + U(*NECK_ABOVE_MM)
    v_n = float(np.interp(w_n, mes.gap_w, mes.smv_v)) - mes.smv_radius - U(*NECK_GAP_MM) - r_neck
    r_body = size * U(*BODY_RADIUS_MM)
    u_b = ao_u + U(*BODY_LEFT_OF_AORTA_MM)
    v_b = v_ao - r_ao - U(*BODY_GAP_MM) - r_body
    w_b = w_n + U(*BODY_RISE_MM)
    r_tail = size * U(*TAIL_RADIUS_MM)
    u_t = max(U(*TAIL_U_MM) * org, u_b + TAIL_MIN_LENGTH_MM)
    v_t = v_ao + U(*TAIL_BEHIND_AORTA_MM)
    w_t = w_b + U(*TAIL_RISE_MM)
    u_m = (u_b + u_t) / 2
    v_m = (v_b + v_t) / 2 - U(*BODY_TAIL_FORWARD_MM)
    w_m = (w_b + w_t) / 2 + rng.normal(0, BODY_TAIL_JITTER_MM)
    k_p = U(*PANCREAS_Z_STRETCH)
    p_s = np.array([u_h, u_n, u_b, u_m, u_t])
    p_v = np.array([v_h, v_n, v_b, v_m, v_t])
    p_w = np.array([w_h, w_n, w_b, w_m, w_t])
    p_r = np.array([rh_v * HEAD_TUBE_SHARE, r_neck, r_body, (r_body + r_tail) / 2, r_tail * TAIL_TIP_SHARE])
    panc_tube = Tube("u", p_s, p_v, p_w, p_r, k_b=k_p)
    head_shape = Ellipsoid((u_h, v_h, w_h - U(*HEAD_DROP_MM)), (rh_u, rh_v, rh_w))
    unc = Ellipsoid((u_h + U(*UNCINATE_U_MM), v_h + U(*UNCINATE_V_MM), w_h - rh_w * U(*UNCINATE_DROP)),
                    (size * U(*UNCINATE_RADII_MM[0]), size * U(*UNCINATE_RADII_MM[1]), size * U(*UNCINATE_RADII_MM[2])))
    pancreas = Bumpy(Union([panc_tube, head_shape, unc], k=PANCREAS_BLEND_MM), size * U(*LOBULE_AMPLITUDE_MM),
                     waves(rng, LOBULE_WAVES, LOBULE_WAVELENGTH_MM))
    fatty = rng.uniform() < FATTY_SHARE
    fat_fraction = U(*(FATTY_FAT_FRACTION if fatty else LEAN_FAT_FRACTION))
    clefts = Clefts(Offset(pancreas, -CLEFT_INSET_MM), waves(rng, CLEFT_WAVES, CLEFT_WAVELENGTH_MM),
                    float(np.sqrt(2) * erfinv(fat_fraction)))
    lo, hi = pancreas.bbox()
    anat.pancreas_w = (float(lo[2]), float(hi[2]))
    return Pancreas(r_neck, u_n, v_n, r_body, u_b, v_b, w_b, u_t, w_t, k_p, panc_tube, pancreas, clefts)


def paint_pancreas_and_its_vessels(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels,
                                   head: PancreaticHead, mes: Mesentery, gland: Pancreas) -> None:
    """Paint the fat plane around the pancreas (none at the tail tip, in the splenic hilum), the
    tortuous splenic artery above it, the pancreas with its fat clefts and duct (labelled), then
    what lies on it: splenic vein, SMV, SMA in its fat collar, common bile duct (mm)."""
    U = rng.uniform
    ao_u, r_ao, v_ao = vessels.aorta_u, vessels.aorta_radius, vessels.aorta_v
    u_h, v_h, w_h, (rh_u, rh_v, _) = head.u, head.v, head.w, head.radii
    u_t, w_b, k_p = gland.tail_u, gland.body_w, gland.stretch
    gap_w, v_sma, v_smv, u_smv, w_conf, v_smv_conf = mes.gap_w, mes.sma_v, mes.smv_v, mes.smv_u, mes.confluence_w, \
        mes.confluence_v

    def panc_at(u: float) -> tuple[float, float, float]:
        a, b, r = gland.tube.centre(np.asarray(u))
        return float(a), float(b), float(r)

    sa_u = np.linspace(ao_u, u_t + SPLENIC_BEYOND_TAIL_MM, SPLENIC_ARTERY_POINTS)
    pv_, pw_, pr_ = zip(*(panc_at(x) for x in sa_u))
    sa_v = np.array(pv_) + rng.normal(0, SPLENIC_ARTERY_JITTER_MM, len(sa_u))
    sa_w = np.array(pw_) + np.array(pr_) * k_p + U(*SPLENIC_ARTERY_ABOVE_MM) + rng.normal(0, SPLENIC_ARTERY_JITTER_MM,
                                                                                         len(sa_u))
    sa_v[0], sa_w[0] = v_ao - r_ao + CELIAC_INTO_AORTA_MM, max(w_b, mes.sma_origin_w) + U(*CELIAC_ABOVE_MM)
    splenic_artery = Tube("u", sa_u, sa_v, sa_w, np.full(len(sa_u), U(*SPLENIC_ARTERY_RADIUS_MM)))

    shell = Offset(gland.shape, U(*FAT_PLANE_MM))
    anat.add("visceral_fat", Intersect(shell, Below(U_AXIS, u_t - U(*HILUM_CONTACT_MM))))
    anat.add("artery", splenic_artery)
    anat.add("pancreas", gland.shape, ORGAN)
    anat.add("visceral_fat", gland.clefts, ORGAN_PART)
    du_ = np.linspace(u_h + DUCT_START_MM, u_t - DUCT_END_MM, DUCT_POINTS)
    dv_, dw_, _ = zip(*(panc_at(x) for x in du_))
    anat.add("duct", Tube("u", du_, np.array(dv_), np.array(dw_), np.full(DUCT_POINTS, U(*DUCT_RADIUS_MM))), ORGAN_PART)
    sv_u = np.linspace(u_smv, u_t + SPLENIC_BEYOND_TAIL_MM, SPLENIC_VEIN_POINTS)
    sv = [panc_at(x) for x in sv_u]
    r_sv = U(*SPLENIC_VEIN_RADIUS_MM)
    sv_v = np.array([p[0] + p[2] * U(*SPLENIC_VEIN_BEHIND) for p in sv])
    sv_w = np.array([p[1] for p in sv]) + rng.normal(0, SPLENIC_VEIN_JITTER_MM, len(sv_u))
    sv_v[0], sv_w[0] = v_smv_conf, w_conf
    anat.add("portal", Tube("u", sv_u, sv_v, sv_w, np.full(len(sv_u), r_sv)))
    n = len(gap_w)
    smv_w = np.append(gap_w[:-1], w_conf)
    smv_order = np.argsort(smv_w)
    anat.add("portal", Tube("w", smv_w[smv_order], (u_smv + rng.normal(0, SMV_JITTER_MM, n))[smv_order],
                            np.append(v_smv[:-1], v_smv_conf)[smv_order], np.full(n, mes.smv_radius)))
    sma = Tube("w", gap_w, mes.sma_u + rng.normal(0, SMA_JITTER_MM, n), v_sma, np.full(n, mes.sma_radius))
    collar_w = np.linspace(-FAR_MM, mes.sma_origin_w - COLLAR_BELOW_ORIGIN_MM, n)
    collar = Tube("w", collar_w, np.interp(collar_w, gap_w, sma.a), np.interp(collar_w, gap_w, v_sma),
                  np.full(n, mes.sma_radius + U(*SMA_COLLAR_MM)))
    anat.add("visceral_fat", collar)
    anat.add("artery", sma)
    anat.add("bile", Tube("w", np.array([w_h + CBD_W_MM[0], w_h + CBD_W_MM[1], w_h + CBD_W_MM[2]]),
                          np.array([u_h - rh_u * CBD_U_SHARE[0], u_h - rh_u * CBD_U_SHARE[1], u_h - CBD_TOP_RIGHT_MM]),
                          np.array([v_h + rh_v * CBD_V_SHARE[0], v_h + rh_v * CBD_V_SHARE[1], v_h]),
                          np.full(3, U(*CBD_RADIUS_MM))))
