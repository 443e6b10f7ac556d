"""One patient's abdomen as paint operations (tissue, implicit shape, role), back to front."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erfinv

from pancreas_seg.data.phantom.config import NORMAL, ORGAN, ORGAN_PART
from pancreas_seg.data.phantom.outer import add_liver_vessels, add_pelvis, add_thorax
from pancreas_seg.data.phantom.shapes import (U_AXIS, V_AXIS, Below, Bumpy, Clefts, Ellipsoid, Intersect, Offset,
                                              Prism, Shape, Tube, Union, rot, waves)

DISCS = 10  # intervertebral discs above and below the pancreatic head
RIBS = 10  # ribs per side, from the pancreatic body upwards
SMALL_BOWEL_LOOPS = (34, 52)  # small bowel loops (jejunum, ileum) from the pancreas down to the pelvis
SMALL_BOWEL_DEPTH_MM = 200.0  # mm, lowest loop centre below the pancreatic head
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


def _bowel(anat: Anatomy, tubes: list, wall: float, content: str, lumen_frac: float,
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


def build_anatomy(rng: np.random.Generator, fov: float) -> Anatomy:
    """Sample one patient's abdomen. All lengths in mm in the (u, v, w) frame."""
    U = rng.uniform
    anat = Anatomy()

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
    anat.add("table", Prism((0.0, table_top + 40), 220.0, 40.0, 8.0))
    anat.add("skin", Prism((0.0, 0.0), *bw))
    anat.add("fat", Prism((0.0, 0.0), bw[0] - skin, bw[1] - skin, bw[2] - skin))
    anat.add("muscle", Prism((0.0, 0.0), ac + t_mus, bca + t_mus, bcp + t_mus))
    cavity = Prism((0.0, 0.0), ac, bca, bcp)
    anat.add("visceral_fat", cavity)
    anat.cavity = Offset(cavity, -1.0)

    # spine and back muscles (do not move with breathing)
    v_vb = bcp - U(38, 48)
    r_vb = (U(20, 26), U(15, 19))
    canal_v = v_vb + r_vb[1] + U(9, 11)
    canal_r = U(8, 10)
    for side in (-1, 1):
        anat.add("muscle", Prism((side * U(28, 36), canal_v + U(12, 20)), U(22, 30), U(20, 26), U(20, 26)))
    for side in (-1, 1):
        psoas = Tube("w", np.array([-250, -60, 0, 60, 250]), side * (r_vb[0] + U(8, 14)) * np.ones(5),
                      (v_vb - 2) * np.ones(5), np.array([22, 20, U(10, 15), 5, 3]) * U(0.8, 1.2), moves=False)
        anat.add("muscle", psoas)
    anat.add("bone_cortex", Prism((0.0, canal_v), canal_r + 5, canal_r + 5, canal_r + 5))
    anat.add("bone_cortex", Prism((0.0, canal_v + canal_r + 14), 4.0, 12.0, 12.0))
    anat.add("csf", Prism((0.0, canal_v), canal_r, canal_r, canal_r))
    anat.add("bone_cortex", Prism((0.0, v_vb), r_vb[0], r_vb[1], r_vb[1]))
    anat.add("bone_marrow", Prism((0.0, v_vb), r_vb[0] - 2, r_vb[1] - 2, r_vb[1] - 2))
    period, disc_h, phase = U(30, 36), U(7, 10), U(0, 36)
    for n in range(-DISCS, DISCS + 1):
        wc = phase + n * period
        anat.add("disc", Prism((0.0, v_vb), r_vb[0] + 1, r_vb[1] + 1, r_vb[1] + 1, (wc - disc_h / 2, wc + disc_h / 2)))

    # great vessels
    ao_u, r_ao = U(8, 20), U(9, 13)
    v_ao = v_vb - r_vb[1] - r_ao - U(1, 4)
    ws = np.array([-250.0, -80, 0, 80, 250])
    anat.add("artery", Tube("w", ws, ao_u + rng.normal(0, 2, 5), v_ao + rng.normal(0, 1.5, 5), r_ao * np.array([0.85, 0.9, 1, 1.05, 1.1])))
    ivc_u, r_ivc, k_ivc = -U(20, 30), U(9, 13), U(0.6, 0.9)
    v_ivc = v_ao - U(0, 6)
    anat.add("ivc", Tube("w", ws, ivc_u + rng.normal(0, 2, 5), v_ivc + rng.normal(0, 1.5, 5), r_ivc * np.ones(5), k_b=k_ivc))
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
    w_b = w_n + U(*BODY_RISE_MM)
    r_tail = size * U(7, 11)
    u_t = max(U(75, 100) * org, u_b + 35)
    v_t = v_ao + U(5, 25)
    w_t = w_b + U(*TAIL_RISE_MM)
    u_m = (u_b + u_t) / 2
    v_m = (v_b + v_t) / 2 - U(0, 12)
    w_m = (w_b + w_t) / 2 + rng.normal(0, 4)
    k_p = U(*PANCREAS_Z_STRETCH)
    p_s = np.array([u_h, u_n, u_b, u_m, u_t])
    p_v = np.array([v_h, v_n, v_b, v_m, v_t])
    p_w = np.array([w_h, w_n, w_b, w_m, w_t])
    p_r = np.array([rh_v * 0.85, r_neck, r_body, (r_body + r_tail) / 2, r_tail * 0.8])
    panc_tube = Tube("u", p_s, p_v, p_w, p_r, k_b=k_p)
    head = Ellipsoid((u_h, v_h, w_h - U(3, 8)), (rh_u, rh_v, rh_w))
    unc = Ellipsoid((u_h + U(10, 18), v_h + U(3, 8), w_h - rh_w * U(0.6, 0.85)),
                     (size * U(10, 14), size * U(6, 9), size * U(8, 12)))
    pancreas = Bumpy(Union([panc_tube, head, unc], k=4.0), size * U(0.8, 1.8), waves(rng, 6, (8, 16)))
    fatty = rng.uniform() < FATTY_SHARE
    fat_fraction = U(*(FATTY_FAT_FRACTION if fatty else LEAN_FAT_FRACTION))
    clefts = Clefts(Offset(pancreas, -CLEFT_INSET_MM), waves(rng, CLEFT_WAVES, CLEFT_WAVELENGTH_MM),
                    float(np.sqrt(2) * erfinv(fat_fraction)))
    lo, hi = pancreas.bbox()
    anat.pancreas_w = (float(lo[2]), float(hi[2]))

    def panc_at(u: float) -> tuple[float, float, float]:
        a, b, r = panc_tube.centre(np.asarray(u))
        return float(a), float(b), float(r)

    # kidneys
    for side in (1, -1):
        c = (side * U(65, 85) * org, v_vb + U(0, 15), w_b - U(5, 25) - (U(10, 25) if side < 0 else 0))
        rad = (U(22, 28), U(22, 28), U(45, 60))
        turn = rot("w", side * U(20, 40)) @ rot("v", side * U(8, 18))
        anat.add("kidney_cortex", Ellipsoid(c, rad, turn))
        anat.add("kidney_medulla", Ellipsoid(c, tuple(r - U(5, 8) for r in rad), turn))
        anat.add("visceral_fat", Ellipsoid((c[0] - side * rad[0] * 0.75, c[1] - 4, c[2]), (U(8, 12), U(7, 10), U(15, 22))))
        if side > 0:
            kid_l = c
    # left renal vein between aorta and SMA into the IVC
    lrv = Tube("u", np.array([ivc_u, ao_u - 8, ao_u + 8, kid_l[0] - 20]),
                np.array([v_ivc, v_ao - r_ao - r_lrv - 1, v_ao - r_ao - r_lrv, kid_l[1] - 8]),
                np.full(4, w_lrv) + rng.normal(0, 2, 4), np.full(4, r_lrv))
    anat.add("portal", lrv)

    # liver, gallbladder, spleen
    w_top = max(w_t, w_b) + U(50, 75)
    liver = Union([Ellipsoid((-U(60, 80) * org, U(-10, 10), w_top), (U(65, 85), U(80, 100), U(85, 110))),
                    Ellipsoid((U(-5, 20), -bca * U(0.5, 0.65), w_top + U(5, 30)), (U(45, 70), U(25, 40), U(40, 60)))], k=8.0)
    liver = Bumpy(liver, U(2, 4), waves(rng, 5, (40, 90)))
    anat.dome_w = float(liver.bbox()[1][2] - 3 * liver.amp)
    add_thorax(anat, rng, cavity_size=(ac, bca, bcp), dome_w=anat.dome_w)
    anat.add("liver", liver)
    add_liver_vessels(anat, rng, liver, hilum=(u_smv - 30, v_smv_conf, w_conf + 45))
    anat.add("portal", Tube("w", np.array([w_conf - 5, w_conf + 20, w_conf + U(40, 55)]),
                             np.array([u_smv, u_smv - 15, u_smv - U(25, 40)]),
                             np.array([v_smv_conf, v_smv_conf + 3, v_smv_conf + U(0, 12)]), np.full(3, U(6, 8))))
    if rng.uniform() < 0.85:
        anat.add("bile", Ellipsoid((u_h - U(25, 40), -bca * U(0.35, 0.55), w_h + U(15, 35)), (U(12, 18), U(12, 18), U(25, 40)), rot("u", U(-20, 20))))
    spleen = Ellipsoid((U(85, 105) * org, U(25, 50), w_t + U(15, 35)), (U(18, 28), U(40, 60), U(45, 65)), rot("w", U(30, 60)))
    anat.add("spleen", spleen)

    # colon: ascending, descending, transverse (haustral bumps, stool or gas)
    stool_frac = U(0.4, 0.9)
    w_tc = w_h + U(-35, 25)
    r_c = U(15, 26)
    asc = Tube("w", np.array([-250, w_tc - 40, w_tc]), -(ac - U(25, 40)) * np.ones(3), U(-25, 15) + rng.normal(0, 5, 3), np.full(3, r_c))
    desc = Tube("w", np.array([-250, w_tc, w_tc + U(30, 70)]), (ac - U(20, 35)) * np.ones(3), U(0, 30) + rng.normal(0, 5, 3), np.full(3, r_c * 0.85))
    us = np.linspace(-(ac - 35), ac - 30, 5)
    trans = Tube("u", us, -bca + U(25, 45) + rng.normal(0, 6, 5), w_tc + np.array([0, -20, -30, -15, 10]) * U(0.3, 1.2), np.full(5, r_c))
    for t in (asc, desc, trans):
        wall = U(2, 3)
        bumpy = Bumpy(t, 2.5, waves(rng, 4, (20, 35)))
        anat.add("bowel_wall", bumpy)
        content = "stool" if rng.uniform() < stool_frac else "bowel_fluid"
        anat.add(content, Offset(bumpy, -wall))
        lvl_v = float(np.mean(t.b if t.axis == "w" else t.a)) - r_c * U(0.0, 0.6)
        anat.add("gas", Intersect(Offset(bumpy, -wall), Below(V_AXIS, lvl_v)))

    # small bowel loops (jejunum / ileum), in front of the vessels, mostly below the pancreas body
    anat.oral_contrast = bool(rng.uniform() < 0.3)
    fluid = "oral_contrast" if anat.oral_contrast else "bowel_fluid"
    for _ in range(int(rng.integers(*SMALL_BOWEL_LOOPS))):
        axis = "w" if rng.uniform() < 0.6 else "u"
        r = U(9, 16)
        cu, cv, cw = U(-ac + 40, ac - 35), U(-bca + 20, v_ao - r_ao - 15), U(w_h - SMALL_BOWEL_DEPTH_MM, w_b + 15)
        n = 4
        length = U(30, 90)
        s = np.linspace(-length / 2, length / 2, n) + (cw if axis == "w" else cu)
        a = (cu if axis == "w" else cv) + rng.normal(0, 12, n)
        b = (cv if axis == "w" else cw) + rng.normal(0, 12, n)
        loop = Tube(axis, s, a, b, r * U(0.85, 1.15, n))
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
    stomach = Ellipsoid((U(35, 60) * org, st_v, w_t + U(10, 30)), rs, rot("w", U(-25, 5)))
    r_an = U(12, 20)
    u_pyl = u_n + U(-5, 10)
    antrum = Tube("u", np.array([u_pyl, (u_pyl + u_b) / 2, u_b + 15]),
                   np.array([v_n - r_neck - r_an - U(2, 8), v_b - r_body - r_an - U(3, 8), st_v]),
                   np.array([w_b + U(0, 8), w_b + U(5, 15), w_t + U(5, 20)]), np.array([r_an * 0.8, r_an, r_an * 1.3]))
    st_content = ["bowel_fluid", "food", fluid][int(rng.integers(0, 3))]
    _bowel(anat, [stomach, antrum], U(3, 6), st_content, 1.0, gas_level=st_v - rs[1] * U(0.2, 0.8))

    # small mesenteric vessels and the tortuous splenic artery above the pancreas
    for _ in range(10):
        uu, vv = u_sma + rng.normal(0, 25), float(np.interp(w_lrv, gap_w, v_sma)) - U(10, 50)
        anat.add("portal" if rng.uniform() < 0.5 else "artery",
                 Tube("w", np.array([-250, w_h - 60, w_conf - 10]), uu + rng.normal(0, 6, 3), vv + rng.normal(0, 6, 3), np.full(3, U(1.0, 2.5))))
    sa_u = np.linspace(ao_u, u_t + 10, 7)
    pv_, pw_, pr_ = zip(*(panc_at(x) for x in sa_u))
    sa_v = np.array(pv_) + rng.normal(0, 4, 7)
    sa_w = np.array(pw_) + np.array(pr_) * k_p + U(1, 6) + rng.normal(0, 4, 7)
    sa_v[0], sa_w[0] = v_ao - r_ao + 2, max(w_b, w_sma0) + U(8, 15)
    splenic_artery = Tube("u", sa_u, sa_v, sa_w, np.full(7, U(2.0, 3.0)))

    # the fat plane around the pancreas (none at the tail tip, in the splenic hilum), the pancreas
    # with its fat clefts and duct (labelled), then what is painted over it
    shell = Offset(pancreas, U(*FAT_PLANE_MM))
    anat.add("visceral_fat", Intersect(shell, Below(U_AXIS, u_t - U(*HILUM_CONTACT_MM))))
    anat.add("artery", splenic_artery)
    anat.add("pancreas", pancreas, ORGAN)
    anat.add("visceral_fat", clefts, ORGAN_PART)
    du_ = np.linspace(u_h + 5, u_t - 10, 6)
    dv_, dw_, _ = zip(*(panc_at(x) for x in du_))
    anat.add("duct", Tube("u", du_, np.array(dv_), np.array(dw_), np.full(6, U(0.8, 2.0))), ORGAN_PART)
    sv_u = np.linspace(u_smv, u_t + 10, 6)
    sv = [panc_at(x) for x in sv_u]
    r_sv = U(3.5, 5)
    sv_v = np.array([p[0] + p[2] * U(0.75, 1.0) for p in sv])
    sv_w = np.array([p[1] for p in sv]) + rng.normal(0, 2, 6)
    sv_v[0], sv_w[0] = v_smv_conf, w_conf
    anat.add("portal", Tube("u", sv_u, sv_v, sv_w, np.full(6, r_sv)))
    smv_w = np.append(gap_w[:-1], w_conf)
    smv_order = np.argsort(smv_w)
    anat.add("portal", Tube("w", smv_w[smv_order], (u_smv + rng.normal(0, 2, 6))[smv_order],
                             np.append(v_smv[:-1], v_smv_conf)[smv_order], np.full(6, r_smv)))
    sma = Tube("w", gap_w, u_sma + rng.normal(0, 1.5, 6), v_sma, np.full(6, r_sma))
    collar_w = np.linspace(-250, w_sma0 - 10, 6)
    collar = Tube("w", collar_w, np.interp(collar_w, gap_w, sma.a), np.interp(collar_w, gap_w, v_sma), np.full(6, r_sma + U(2, 4)))
    anat.add("visceral_fat", collar)
    anat.add("artery", sma)
    anat.add("bile", Tube("w", np.array([w_h - 10, w_h + 15, w_h + 45]), np.array([u_h - rh_u * 0.4, u_h - rh_u * 0.45, u_h - 10]),
                           np.array([v_h + rh_v * 0.5, v_h + rh_v * 0.45, v_h]), np.full(3, U(2.5, 4.5))))
    # duodenum: bulb (D1), descending (D2) hugging the head, horizontal (D3) between aorta and SMA
    u_d2 = u_h - rh_u * U(0.7, 0.95) - r_duo
    w_d1 = w_h + rh_w * U(0.6, 1.0)
    d1 = Tube("u", np.array([u_d2, (u_d2 + u_pyl) / 2, u_pyl]), np.array([v_h - 4, v_n - r_neck - r_duo, v_n - r_neck - r_an - 4]),
               np.full(3, w_d1) + rng.normal(0, 3, 3), np.full(3, r_duo * 0.9))
    d2 = Tube("w", np.array([w_d3, (w_d3 + w_d1) / 2, w_d1]), u_d2 + rng.normal(0, 3, 3), v_h + rng.normal(0, 4, 3), np.full(3, r_duo))
    v_d3_ao = v_ao - r_ao - r_duo - 1.5
    d3 = Tube("u", np.array([u_d2, u_h + 10, ao_u, ao_u + U(20, 30)]),
               np.array([v_h, (v_h + v_d3_ao) / 2, v_d3_ao, v_d3_ao - 5]),
               np.array([w_d3, w_d3 - 3, w_d3, w_d3 + U(5, 20)]), np.full(4, r_duo))
    collapsed = rng.uniform() < 0.4
    _bowel(anat, [d1, d2, d3], U(2, 3.5), fluid, U(0.05, 0.3) if collapsed else 1.0,
           gas_level=None if rng.uniform() < 0.6 else v_h - r_duo * U(0.3, 0.9))

    # ribs at the upper levels
    for side in (-1, 1):
        for i in range(RIBS):
            ang = math.radians(U(20, 150))  # 0 = lateral-posterior, 180 = anterior
            uu = side * (ac + t_mus * 0.5) * math.sin(ang)
            vv = (bcp if math.cos(ang) > 0 else bca) * math.cos(ang) * 1.0
            ww = w_b + 10 + i * U(14, 20)
            anat.add("rib", Ellipsoid((uu, vv, ww), (U(12, 25), U(4, 6), U(5, 7)), rot("w", -side * math.degrees(ang) + 90)))
    add_pelvis(anat, rng, cavity_size=(ac, bca, bcp), spine=(v_vb, r_vb[0]), w_top=w_h - U(90, 120))
    return anat

