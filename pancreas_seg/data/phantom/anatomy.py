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

# mesenteric branches, splenic vessels, duct, SMA collar, common bile duct
MESENTERIC_BRANCHES = 10  # small mesenteric arteries and veins
BRANCH_U_SD_MM = 25  # mm, sd of a branch's u about the SMA
BRANCH_BEFORE_SMA_MM = (10, 50)  # mm, branch in front of the SMA at the left renal vein's level
BRANCH_VEIN_SHARE = 0.5  # share of branches that are veins
BRANCH_MID_BELOW_HEAD_MM = 60  # mm, a branch's middle point below the head
BRANCH_END_BELOW_MM = 10  # mm, a branch's end below the confluence
BRANCH_JITTER_MM = 6  # mm, sd of a branch's centre line
BRANCH_RADIUS_MM = (1.0, 2.5)  # mm
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
PELVIS_BELOW_HEAD_MM = (90, 120)  # mm, pelvic brim below the pancreatic head

# colon
FAR_MM = 250  # mm, far beyond the scanned range: where tubes running out of it start or end
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

# ribs
RIB_ANGLE_DEG = (20, 150)  # degrees around the body from lateral-posterior (0) to anterior (180)
RIB_IN_MUSCLE = 0.5  # rib centre this share of the wall muscle outside the cavity
RIB_ABOVE_BODY_MM = 10  # mm, lowest rib above the pancreatic body
RIB_SPACING_MM = (14, 20)  # mm, between rib levels (times the rib's index)
RIB_RADII_MM = ((12, 25), (4, 6), (5, 7))  # mm, rib cross-section half-extents
RIB_TURN_DEG = 90  # degrees, a rib lies along the body outline


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


def _body_wall(anat: Anatomy, rng: np.random.Generator, fov: float) -> Body:
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


def _spine(anat: Anatomy, rng: np.random.Generator, body: Body) -> Spine:
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


def _great_vessels(anat: Anatomy, rng: np.random.Generator, spine: Spine) -> GreatVessels:
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


def _kidneys(anat: Anatomy, rng: np.random.Generator, org: float, v_vb: float,
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


def _ribs(anat: Anatomy, rng: np.random.Generator, body: Body, w_b: float) -> None:
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


def _colon(anat: Anatomy, rng: np.random.Generator, body: Body, w_h: float) -> None:
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


def _small_bowel(anat: Anatomy, rng: np.random.Generator, body: Body, v_front: float, w_h: float,
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
            _bowel(anat, [loop], U(*COLLAPSED_WALL_MM), fluid, U(*COLLAPSED_LUMEN))
        elif state < FLUID_LOOP_SHARE:
            _bowel(anat, [loop], U(*LOOP_WALL_MM), fluid, 1.0)
        else:
            _bowel(anat, [loop], U(*LOOP_WALL_MM), fluid, 1.0, gas_level=cv - U(*LOOP_GAS_LEVEL_MM))
    return fluid


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


def _pancreatic_head(rng: np.random.Generator, org: float, ivc_front: float) -> PancreaticHead:
    """Draw the pancreas' size and its head in front of the IVC (``ivc_front``: v of its front, mm)."""
    U = rng.uniform
    size = U(*PANCREAS_SIZE)
    rh_u, rh_v, rh_w = size * U(*HEAD_RADII_MM[0]), size * U(*HEAD_RADII_MM[1]), size * U(*HEAD_RADII_MM[2])
    u_h = -U(*HEAD_U_MM) * org
    v_h = ivc_front - U(*HEAD_GAP_MM) - rh_v
    w_h = -U(*HEAD_BELOW_ORIGIN_MM)
    return PancreaticHead(size, u_h, v_h, w_h, (rh_u, rh_v, rh_w))


def _mesentery(rng: np.random.Generator, vessels: GreatVessels, head: PancreaticHead) -> Mesentery:
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


def _pancreas_outline(anat: Anatomy, rng: np.random.Generator, org: float, vessels: GreatVessels,
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


def _each(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    """One uniform draw from each range, in order (e.g. an ellipsoid's three half-extents)."""
    return tuple(rng.uniform(*r) for r in ranges)


def _left_renal_vein(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels, mes: Mesentery,
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


def _liver_and_spleen(anat: Anatomy, rng: np.random.Generator, body: Body, head: PancreaticHead,
                      mes: Mesentery, w_b: float, w_t: float) -> None:
    """Paint the liver (two blended lobes with a bumpy surface; sets the dome level) with the
    thorax above it and its vessels, the portal vein, the gallbladder (most patients) and the
    spleen above the tail level ``w_t`` (mm)."""
    U = rng.uniform
    org, bca = body.organ_scale, body.anterior
    u_smv, v_smv_conf, w_conf = mes.smv_u, mes.confluence_v, mes.confluence_w
    w_top = max(w_t, w_b) + U(*LIVER_ABOVE_PANCREAS_MM)
    right = Ellipsoid((-U(*RIGHT_LOBE_U_MM) * org, U(*RIGHT_LOBE_V_MM), w_top), _each(rng, RIGHT_LOBE_RADII_MM))
    left = Ellipsoid((U(*LEFT_LOBE_U_MM), -bca * U(*LEFT_LOBE_FORWARD), w_top + U(*LEFT_LOBE_RISE_MM)),
                     _each(rng, LEFT_LOBE_RADII_MM))
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
                                    head.w + U(*GALLBLADDER_ABOVE_HEAD_MM)), _each(rng, GALLBLADDER_RADII_MM),
                                   rot("u", U(*GALLBLADDER_TILT_DEG))))
    spleen = Ellipsoid((U(*SPLEEN_U_MM) * org, U(*SPLEEN_V_MM), w_t + U(*SPLEEN_ABOVE_TAIL_MM)),
                       _each(rng, SPLEEN_RADII_MM), rot("w", U(*SPLEEN_TURN_DEG)))
    anat.add("spleen", spleen)


def _stomach(anat: Anatomy, rng: np.random.Generator, org: float, gland: Pancreas, fluid: str) -> tuple[float, float]:
    """Paint the stomach in front of the pancreatic body and tail and its antrum towards the pylorus
    (fluid, food or the bowel fluid ``fluid``, a gas level). Returns the pylorus' u and the antrum's
    radius (mm)."""
    U = rng.uniform
    r_neck, u_n, v_n, r_body, u_b, v_b, w_b = gland.neck_radius, gland.neck_u, gland.neck_v, gland.body_radius, \
        gland.body_u, gland.body_v, gland.body_w
    w_t = gland.tail_w
    rs = _each(rng, STOMACH_RADII_MM)
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
    _bowel(anat, [stomach, antrum], U(*STOMACH_WALL_MM), st_content, 1.0,
           gas_level=st_v - rs[1] * U(*STOMACH_GAS_DEPTH))
    return u_pyl, r_an


def _mesenteric_branches(anat: Anatomy, rng: np.random.Generator, head: PancreaticHead, mes: Mesentery) -> None:
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


def _pancreas_and_its_vessels(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels,
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


def _duodenum(anat: Anatomy, rng: np.random.Generator, vessels: GreatVessels, head: PancreaticHead,
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
    _bowel(anat, [d1, d2, d3], U(*DUODENUM_WALL_MM), fluid, U(*COLLAPSED_LUMEN) if collapsed else 1.0,
           gas_level=None if rng.uniform() < DUODENUM_NO_GAS_SHARE else v_h - r_duo * U(*DUODENUM_GAS_DEPTH))


def build_anatomy(rng: np.random.Generator, fov: float) -> Anatomy:
    """Sample one patient's abdomen as paint operations, back to front; ``fov``: field of view, mm.

    All lengths in mm in the (u, v, w) frame. The builders are called in a fixed order, and each
    draws from ``rng`` in a fixed order: a case is the same for the same stream.
    """
    anat = Anatomy()
    body = _body_wall(anat, rng, fov)
    spine = _spine(anat, rng, body)
    vessels = _great_vessels(anat, rng, spine)
    head = _pancreatic_head(rng, body.organ_scale, vessels.ivc_front)  # pancreas drawn now, painted later
    mes = _mesentery(rng, vessels, head)
    gland = _pancreas_outline(anat, rng, body.organ_scale, vessels, head, mes)
    kidney_left = _kidneys(anat, rng, body.organ_scale, spine.v, gland.body_w)
    _left_renal_vein(anat, rng, vessels, mes, kidney_left)
    _liver_and_spleen(anat, rng, body, head, mes, gland.body_w, gland.tail_w)
    _colon(anat, rng, body, head.w)
    fluid = _small_bowel(anat, rng, body, vessels.aorta_v - vessels.aorta_radius, head.w, gland.body_w)
    pylorus_u, antrum_radius = _stomach(anat, rng, body.organ_scale, gland, fluid)
    _mesenteric_branches(anat, rng, head, mes)
    _pancreas_and_its_vessels(anat, rng, vessels, head, mes, gland)
    _duodenum(anat, rng, vessels, head, mes, gland, pylorus_u, antrum_radius, fluid)
    _ribs(anat, rng, body, gland.body_w)
    add_pelvis(anat, rng, cavity_size=(body.half_width, body.anterior, body.posterior),
               spine=(spine.v, spine.radii[0]), w_top=head.w - rng.uniform(*PELVIS_BELOW_HEAD_MM))
    return anat
