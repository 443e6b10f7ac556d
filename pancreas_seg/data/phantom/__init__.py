"""Synthetic abdominal CT / T1 MRI phantoms with a pancreas label, in real file formats.

No real scans can be downloaded in this project, so the pipeline (conversion,
training, evaluation) is exercised on phantoms that imitate the two datasets of
the paper (Sec. IV-A): the NIH Pancreas-CT set (portal-venous contrast CT,
512x512 slices, 1-2.5 mm thick, the whole abdomen from the lung bases to the
pelvis, so most slices hold no pancreas) and a T1-weighted MRI set acquired over
several breath holds (5-8 mm slices). The pancreas is meant to be *hard* to
find by intensity, as in Fig. 2 of the paper: it is lobulated, sometimes fatty,
and lies among bowel wall, duodenum, collapsed jejunum and veins of similar
intensity, though mostly behind a fat plane (more fat than real CT shows: docs/PHANTOMS.md).
``benchmarks/phantom_realism.py`` measures each of these properties.

Modules: ``config`` (sampling ranges, tissue values), ``shapes`` (implicit shapes),
``canvas`` (the paint list), ``anatomy`` (one patient, built by ``frame``: body wall, spine,
great vessels, kidneys, ribs; ``pancreas``: the gland and the vessels it wraps around;
``viscera``: its neighbours; ``outer``: thorax and pelvis of the whole-abdomen scan), ``acquisition`` (scanned grid,
breath holds, texture and noise fields), ``rendering`` (:func:`generate_case`),
``writers`` (NIH layout, case store).

Geometry. Anatomy is built in a patient frame in mm: ``u`` towards the
patient's left, ``v`` posterior, ``w`` superior, origin at the centre of the
abdominal cavity at the level of the pancreatic head. Every structure is an
implicit shape (a smooth approximate signed distance ``F``, negative inside)
evaluated only in its bounding box; the structures the same in every slice
(body wall, table) are rendered once. Partial volume: in-plane by a one-pixel
linear ramp of ``F`` (anti-aliasing), through-plane near the pancreas by
rendering each slice as the mean of thin sub-slices (``PhantomConfig.sub_slice_mm``).
Structures are composited back to front (painter's algorithm); the pancreas
partial-volume map is reduced by anything painted over it (not by its own fat
clefts), and the label is that map thresholded at 0.5 on the final grid, without
slice islands under 30 mm^2, reduced to its largest 26-connected component.

Image formation: tissue texture is a 3D field (two scales, correlated through
the slices); only the acquisition noise is new in every slice: noise shaped by the
in-plane point-spread function (CT), or blur, a smooth multiplicative bias field
and Rician noise (MRI). MRI is acquired in 2-4 breath holds of 8-15 consecutive
slices: the viscera shift by 3-5 mm between holds and not within one, which
adds to the larger inter-slice shape change of thick slices (the paper measured
AVD 2.69 mm MRI vs 0.35 mm CT, Sec. IV-D).

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
