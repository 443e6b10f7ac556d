"""The body's frame: table, body wall and abdominal cavity, spine and back muscles, aorta and IVC,
kidneys and ribs (mm, in the patient frame of :mod:`pancreas_seg.data.phantom`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pancreas_seg.data.phantom.canvas import Anatomy
from pancreas_seg.data.phantom.shapes import Ellipsoid, Offset, Prism, Tube, rot

DISCS = 10  # intervertebral discs above and below the pancreatic head
RIBS = 10  # ribs per side, from the pancreatic body upwards

# body outline
BODY_WIDTH_SHARE = (0.72, 0.92)  # the body fills this share of the field of view's width (chosen to fit the patient)
WALL_MUSCLE_MM = (8, 14)  # mm, abdominal wall muscle thickness
SKIN_MM = 2.0  # mm, skin thickness
LATERAL_FAT_MM = (6, 40)  # mm, lateral subcutaneous fat, as drawn before the cavity width is bounded
MIN_LATERAL_FAT_MM = 4.0  # mm, least lateral subcutaneous fat
CAVITY_HALF_WIDTH_MM = (112, 160)  # mm, bounds of the abdominal cavity's half-width
ANTERIOR_FAT_SCALE = (0.9, 1.6)  # anterior subcutaneous fat over the lateral
POSTERIOR_FAT_SCALE = (0.4, 0.8)  # posterior subcutaneous fat over the lateral
CAVITY_ANTERIOR_SHARE = (0.62, 0.75)  # cavity anterior half-depth over its half-width
CAVITY_POSTERIOR_SHARE = (0.55, 0.65)  # cavity posterior half-depth over its half-width
ORGAN_SCALE_CAVITY_MM = 130  # mm, cavity half-width at which organ positions are not scaled
ORGAN_SCALE_GAIN = 0.5  # relative change of organ positions per relative change of the cavity half-width
ORGAN_SCALE_LIMITS = (0.85, 1.15)  # bounds of the organ position scale
TABLE_GAP_MM = (1, 4)  # mm, from the back's skin to the table top
TABLE_HALF_WIDTH_MM = 220.0  # mm
TABLE_ANTERIOR_MM = 40.0  # mm, table centre below its top (the table's anterior half-depth)
TABLE_POSTERIOR_MM = 8.0  # mm, table's posterior half-depth
CAVITY_INSET_MM = 1.0  # mm, viscera stay this far inside the cavity outline

# spine and back muscles
VERTEBRA_FROM_BACK_MM = (38, 48)  # mm, vertebral body centre in front of the cavity's posterior edge
VERTEBRA_HALF_WIDTH_MM = (20, 26)  # mm
VERTEBRA_HALF_DEPTH_MM = (15, 19)  # mm
VERTEBRA_CORTEX_MM = 2  # mm, cortical shell of the vertebral body
CANAL_BEHIND_VERTEBRA_MM = (9, 11)  # mm, spinal canal centre behind the vertebral body's back
CANAL_RADIUS_MM = (8, 10)  # mm
VERTEBRAL_ARCH_MM = 5  # mm, bone around the spinal canal
SPINOUS_BEHIND_CANAL_MM = 14  # mm, spinous process centre behind the canal's back
SPINOUS_RADII_MM = (4.0, 12.0, 12.0)  # mm, spinous process half-width, anterior and posterior half-depth
BACK_MUSCLE_U_MM = (28, 36)  # mm, erector spinae centre beside the midline
BACK_MUSCLE_BEHIND_CANAL_MM = (12, 20)  # mm, erector spinae centre behind the canal centre
BACK_MUSCLE_HALF_WIDTH_MM = (22, 30)  # mm
BACK_MUSCLE_HALF_DEPTH_MM = (20, 26)  # mm, anterior and posterior half-depth, drawn apart
PSOAS_W_MM = (-250, -60, 0, 60, 250)  # mm, psoas centre-line levels
PSOAS_BESIDE_VERTEBRA_MM = (8, 14)  # mm, psoas centre beside the vertebral body's side
PSOAS_FORWARD_MM = 2  # mm, psoas centre in front of the vertebral body centre
PSOAS_UPPER_RADII_MM = (22, 20)  # mm, psoas radius at the two lowest levels (before PSOAS_SIZE)
PSOAS_MID_RADIUS_MM = (10, 15)  # mm, at the origin level
PSOAS_LOWER_RADII_MM = (5, 3)  # mm, at the two highest levels (it tapers towards its origin)
PSOAS_SIZE = (0.8, 1.2)  # psoas radius scale
DISC_PERIOD_MM = (30, 36)  # mm, vertebra height (disc to disc)
DISC_HEIGHT_MM = (7, 10)  # mm
DISC_PHASE_MM = (0, 36)  # mm, a disc's level above the origin
DISC_BULGE_MM = 1  # mm, a disc beyond the vertebral body outline

# great vessels
GREAT_VESSEL_W_MM = (-250.0, -80, 0, 80, 250)  # mm, centre-line levels of the aorta and IVC
VESSEL_JITTER_U_MM = 2  # mm, sd of the centre lines' u about a straight line
VESSEL_JITTER_V_MM = 1.5  # mm, the same along v
AORTA_U_MM = (8, 20)  # mm, aorta centre left of the midline
AORTA_RADIUS_MM = (9, 13)  # mm
AORTA_GAP_MM = (1, 4)  # mm, between the vertebral body and the aorta
AORTA_TAPER = (0.85, 0.9, 1, 1.05, 1.1)  # aortic radius at the GREAT_VESSEL_W_MM levels over the radius at the origin
IVC_U_MM = (20, 30)  # mm, IVC centre right of the midline
IVC_RADIUS_MM = (9, 13)  # mm
IVC_FLATTENING = (0.6, 0.9)  # IVC anterior-posterior over left-right extent
IVC_FORWARD_MM = (0, 6)  # mm, IVC centre in front of the aorta's

# kidneys
KIDNEY_U_MM = (65, 85)  # mm, kidney centre beside the midline (times the organ position scale)
KIDNEY_BEHIND_SPINE_MM = (0, 15)  # mm, kidney centre behind the vertebral body centre
KIDNEY_BELOW_BODY_MM = (5, 25)  # mm, kidney centre below the pancreatic body
RIGHT_KIDNEY_LOWER_MM = (10, 25)  # mm, the right kidney below the left (the liver above it)
KIDNEY_HALF_WIDTH_MM = (22, 28)  # mm, left-right and anterior-posterior half-extents
KIDNEY_HALF_LENGTH_MM = (45, 60)  # mm, superior-inferior half-extent
KIDNEY_TURN_W_DEG = (20, 40)  # degrees, hilum turned forwards (about w)
KIDNEY_TURN_V_DEG = (8, 18)  # degrees, upper pole tilted to the midline (about v)
KIDNEY_CORTEX_MM = (5, 8)  # mm, cortex thickness (medulla inset)
SINUS_FAT_SHIFT = 0.75  # renal sinus fat centre towards the hilum, in kidney half-widths
SINUS_FAT_FORWARD_MM = 4  # mm, renal sinus fat in front of the kidney centre
SINUS_FAT_RADII_MM = ((8, 12), (7, 10), (15, 22))  # mm, renal sinus fat half-extents (u, v, w)

# ribs
RIB_ANGLE_DEG = (20, 150)  # degrees around the body from lateral-posterior (0) to anterior (180)
RIB_IN_MUSCLE = 0.5  # rib centre this share of the wall muscle outside the cavity
RIB_ABOVE_BODY_MM = 10  # mm, lowest rib above the pancreatic body
RIB_SPACING_MM = (14, 20)  # mm, between rib levels (times the rib's index)
RIB_RADII_MM = ((12, 25), (4, 6), (5, 7))  # mm, rib cross-section half-extents
RIB_TURN_DEG = 90  # degrees, a rib lies along the body outline


@dataclass(frozen=True)
class Body:
    """The abdominal cavity (mm): half-width, anterior and posterior half-depth, the wall muscle's
    thickness, and the scale of organ positions (larger cavities hold organs further out)."""

    half_width: float
    anterior: float
    posterior: float
    muscle: float
    organ_scale: float


@dataclass(frozen=True)
class Spine:
    """Vertebral body centre along v and its (half-width, half-depth), mm."""

    v: float
    radii: tuple[float, float]


@dataclass(frozen=True)
class GreatVessels:
    """Aorta and inferior vena cava centre lines at the origin level, mm."""

    aorta_u: float
    aorta_radius: float
    aorta_v: float
    ivc_u: float
    ivc_v: float
    ivc_front: float  # v of the IVC's anterior wall


def paint_body_wall(anat: Anatomy, rng: np.random.Generator, fov: float) -> Body:
    """Paint the table, skin, subcutaneous fat, abdominal wall muscle and the visceral fat of the
    cavity, set the body's extents and the cavity in ``anat``; ``fov`` in mm."""
    U = rng.uniform
    half_width = fov / 2 * U(*BODY_WIDTH_SHARE)
    t_mus = U(*WALL_MUSCLE_MM)
    skin = SKIN_MM
    t_fat_lat = U(*LATERAL_FAT_MM)
    ac = float(np.clip(half_width - t_mus - skin - t_fat_lat, *CAVITY_HALF_WIDTH_MM))
    t_fat_lat = max(half_width - t_mus - skin - ac, MIN_LATERAL_FAT_MM)
    t_fat = t_fat_lat * U(*ANTERIOR_FAT_SCALE)
    t_fat_post = t_fat_lat * U(*POSTERIOR_FAT_SCALE)
    bca, bcp = ac * U(*CAVITY_ANTERIOR_SHARE), ac * U(*CAVITY_POSTERIOR_SHARE)
    org = float(np.clip(1 + ORGAN_SCALE_GAIN * (ac / ORGAN_SCALE_CAVITY_MM - 1), *ORGAN_SCALE_LIMITS))
    bw = (ac + t_mus + t_fat_lat + skin, bca + t_mus + t_fat + skin, bcp + t_mus + t_fat_post + skin)
    anat.body_half_width = bw[0]
    anat.body_center_v = (bw[2] - bw[1]) / 2
    table_top = bw[2] + U(*TABLE_GAP_MM)
    anat.add("table", Prism((0.0, table_top + TABLE_ANTERIOR_MM), TABLE_HALF_WIDTH_MM, TABLE_ANTERIOR_MM,
                            TABLE_POSTERIOR_MM))
    anat.add("skin", Prism((0.0, 0.0), *bw))
    anat.add("fat", Prism((0.0, 0.0), bw[0] - skin, bw[1] - skin, bw[2] - skin))
    anat.add("muscle", Prism((0.0, 0.0), ac + t_mus, bca + t_mus, bcp + t_mus))
    cavity = Prism((0.0, 0.0), ac, bca, bcp)
    anat.add("visceral_fat", cavity)
    anat.cavity = Offset(cavity, -CAVITY_INSET_MM)
    return Body(ac, bca, bcp, t_mus, org)


def paint_spine(anat: Anatomy, rng: np.random.Generator, body: Body) -> Spine:
    """Paint the back muscles, psoas, spinal canal, vertebral bodies and discs (mm; none moves
    with breathing)."""
    U = rng.uniform
    v_vb = body.posterior - U(*VERTEBRA_FROM_BACK_MM)
    r_vb = (U(*VERTEBRA_HALF_WIDTH_MM), U(*VERTEBRA_HALF_DEPTH_MM))
    canal_v = v_vb + r_vb[1] + U(*CANAL_BEHIND_VERTEBRA_MM)
    canal_r = U(*CANAL_RADIUS_MM)
    for side in (-1, 1):
        anat.add("muscle", Prism((side * U(*BACK_MUSCLE_U_MM), canal_v + U(*BACK_MUSCLE_BEHIND_CANAL_MM)),
                                 U(*BACK_MUSCLE_HALF_WIDTH_MM), U(*BACK_MUSCLE_HALF_DEPTH_MM),
                                 U(*BACK_MUSCLE_HALF_DEPTH_MM)))
    ones = np.ones(len(PSOAS_W_MM))
    for side in (-1, 1):
        psoas = Tube("w", np.array(PSOAS_W_MM), side * (r_vb[0] + U(*PSOAS_BESIDE_VERTEBRA_MM)) * ones,
                     (v_vb - PSOAS_FORWARD_MM) * ones,
                     np.array([*PSOAS_UPPER_RADII_MM, U(*PSOAS_MID_RADIUS_MM), *PSOAS_LOWER_RADII_MM])
                     * U(*PSOAS_SIZE), moves=False)
        anat.add("muscle", psoas)
    arch = canal_r + VERTEBRAL_ARCH_MM
    anat.add("bone_cortex", Prism((0.0, canal_v), arch, arch, arch))
    anat.add("bone_cortex", Prism((0.0, canal_v + canal_r + SPINOUS_BEHIND_CANAL_MM), *SPINOUS_RADII_MM))
    anat.add("csf", Prism((0.0, canal_v), canal_r, canal_r, canal_r))
    anat.add("bone_cortex", Prism((0.0, v_vb), r_vb[0], r_vb[1], r_vb[1]))
    marrow = (r_vb[0] - VERTEBRA_CORTEX_MM, r_vb[1] - VERTEBRA_CORTEX_MM)
    anat.add("bone_marrow", Prism((0.0, v_vb), marrow[0], marrow[1], marrow[1]))
    period, disc_h, phase = U(*DISC_PERIOD_MM), U(*DISC_HEIGHT_MM), U(*DISC_PHASE_MM)
    disc = (r_vb[0] + DISC_BULGE_MM, r_vb[1] + DISC_BULGE_MM)
    for n in range(-DISCS, DISCS + 1):
        wc = phase + n * period
        anat.add("disc", Prism((0.0, v_vb), disc[0], disc[1], disc[1], (wc - disc_h / 2, wc + disc_h / 2)))
    return Spine(v_vb, r_vb)


def paint_great_vessels(anat: Anatomy, rng: np.random.Generator, spine: Spine) -> GreatVessels:
    """Paint the aorta in front of the spine and the inferior vena cava to its right (mm)."""
    U = rng.uniform
    ao_u, r_ao = U(*AORTA_U_MM), U(*AORTA_RADIUS_MM)
    v_ao = spine.v - spine.radii[1] - r_ao - U(*AORTA_GAP_MM)
    ws = np.array(GREAT_VESSEL_W_MM)
    n = len(ws)
    anat.add("artery", Tube("w", ws, ao_u + rng.normal(0, VESSEL_JITTER_U_MM, n),
                            v_ao + rng.normal(0, VESSEL_JITTER_V_MM, n), r_ao * np.array(AORTA_TAPER)))
    ivc_u, r_ivc, k_ivc = -U(*IVC_U_MM), U(*IVC_RADIUS_MM), U(*IVC_FLATTENING)
    v_ivc = v_ao - U(*IVC_FORWARD_MM)
    anat.add("ivc", Tube("w", ws, ivc_u + rng.normal(0, VESSEL_JITTER_U_MM, n),
                         v_ivc + rng.normal(0, VESSEL_JITTER_V_MM, n), r_ivc * np.ones(n), k_b=k_ivc))
    return GreatVessels(ao_u, r_ao, v_ao, ivc_u, v_ivc, v_ivc - r_ivc * k_ivc)


def paint_kidneys(anat: Anatomy, rng: np.random.Generator, org: float, v_vb: float,
                  w_b: float) -> tuple[float, float, float]:
    """Paint both kidneys (cortex, medulla, sinus fat) beside the spine, the right one lower;
    ``w_b``: pancreatic body level (mm). Returns the left kidney's centre (u, v, w) mm."""
    U = rng.uniform
    for side in (1, -1):
        c = (side * U(*KIDNEY_U_MM) * org, v_vb + U(*KIDNEY_BEHIND_SPINE_MM),
             w_b - U(*KIDNEY_BELOW_BODY_MM) - (U(*RIGHT_KIDNEY_LOWER_MM) if side < 0 else 0))
        rad = (U(*KIDNEY_HALF_WIDTH_MM), U(*KIDNEY_HALF_WIDTH_MM), U(*KIDNEY_HALF_LENGTH_MM))
        turn = rot("w", side * U(*KIDNEY_TURN_W_DEG)) @ rot("v", side * U(*KIDNEY_TURN_V_DEG))
        anat.add("kidney_cortex", Ellipsoid(c, rad, turn))
        anat.add("kidney_medulla", Ellipsoid(c, tuple(r - U(*KIDNEY_CORTEX_MM) for r in rad), turn))
        anat.add("visceral_fat", Ellipsoid((c[0] - side * rad[0] * SINUS_FAT_SHIFT, c[1] - SINUS_FAT_FORWARD_MM, c[2]),
                                           (U(*SINUS_FAT_RADII_MM[0]), U(*SINUS_FAT_RADII_MM[1]),
                                            U(*SINUS_FAT_RADII_MM[2]))))
        if side > 0:
            kid_l = c
    return kid_l


def paint_ribs(anat: Anatomy, rng: np.random.Generator, body: Body, w_b: float) -> None:
    """Paint rib cross-sections on both sides from just above the pancreatic body level ``w_b`` (mm) up."""
    U = rng.uniform
    for side in (-1, 1):
        for i in range(RIBS):
            ang = math.radians(U(*RIB_ANGLE_DEG))  # 0 = lateral-posterior, 180 = anterior
            uu = side * (body.half_width + body.muscle * RIB_IN_MUSCLE) * math.sin(ang)
            vv = (body.posterior if math.cos(ang) > 0 else body.anterior) * math.cos(ang) * 1.0
            ww = w_b + RIB_ABOVE_BODY_MM + i * U(*RIB_SPACING_MM)
            anat.add("rib", Ellipsoid((uu, vv, ww), (U(*RIB_RADII_MM[0]), U(*RIB_RADII_MM[1]), U(*RIB_RADII_MM[2])),
                                      rot("w", -side * math.degrees(ang) + RIB_TURN_DEG)))
