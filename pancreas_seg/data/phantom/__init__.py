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
from pancreas_seg.data.phantom.config import PhantomConfig
from pancreas_seg.data.phantom.rendering import generate_case
from pancreas_seg.data.phantom.writers import (PhantomSetReport, case_id_of, flip_rows, nih_paths, write_case_to_store,
                                               write_nih_layout, write_phantom_set)

__all__ = ["PhantomConfig", "PhantomSetReport", "case_id_of", "flip_rows", "generate_case", "nih_paths",
           "write_case_to_store", "write_nih_layout", "write_phantom_set"]
