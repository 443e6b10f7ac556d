"""Segmentation metrics of the paper (Sec. IV-A, Table III, Sec. IV-D).

All functions take binary masks (bool, or any array where nonzero = organ) of
the same shape, ``[Z, Y, X]`` for volumes or ``[Y, X]`` for slices (any
``ndim`` works), and a voxel ``spacing`` with one entry per axis in mm, in the
array's axis order: ``(z, y, x)`` or ``(y, x)``.

Voxel-wise (Sec. IV-A), with ``Y`` the ground truth and ``Ŷ`` the prediction:

- DSC = 2|Y ∩ Ŷ| / (|Y| + |Ŷ|)          (:func:`dice`)
- JI  = |Y ∩ Ŷ| / |Y ∪ Ŷ|               (:func:`jaccard`)
- precision = |Y ∩ Ŷ| / |Ŷ|,  recall = |Y ∩ Ŷ| / |Y|

Surface distances in mm (Table III, Sec. IV-D). The surface of a mask is the set
of its voxels with at least one face neighbour (6-connected in 3D,
4-connected in 2D) in the background or outside the array, i.e.
``mask XOR erosion(mask)``. Distances are between voxel centres, scaled by the
spacing. With ``d(A, B)`` the mean, over the surface voxels of A, of the
distance to the nearest surface voxel of B:

- AVD, averaged Hausdorff distance = max(d(A, B), d(B, A))  (:func:`avd`;
  Taha & Hanbury 2015, BMC Med. Imaging 15:29). Some authors use the *mean*
  of the two directed averages instead; that is not computed here.
- HD95 = 95th percentile of the pooled directed distances of both surfaces
  (:func:`hd95`, as MedPy's ``hd95`` and nnU-Net define it; linear
  interpolation between ranks).
- ASSD = mean of the pooled distances of both directions, i.e.
  (Σ A→B + Σ B→A) / (|∂A| + |∂B|)  (:func:`assd`; Heimann et al. 2009;
  what MedPy 0.5's ``assd`` computes). It weighs each surface voxel alike,
  so the larger surface counts more than in a mean of the two directed means.

Point-set AVD (:func:`pointset_avd`): the same max of two directed means, but over *all* voxels
of each mask, not its surface (a voxel inside both contributes 0). This is Taha & Hanbury's
definition over the two segmentations' point sets, and the one whose values match the paper's
inter-slice shape change (0.35 ± 0.94 mm between neighbouring CT ground-truth slices, Sec. IV-D),
so the abnormal-change detector (:func:`abnormal_shape_changes`, 0.5 mm) uses it.

Edge cases (``pred`` = Ŷ, ``gt`` = Y):

=================  =====  =====  =========  ======  ==================  =====
case               DSC    JI     precision  recall  AVDs / HD95 / ASSD  RVE
=================  =====  =====  =========  ======  ==================  =====
both empty         1.0    1.0    1.0        1.0     0.0                 0.0
pred empty only    0.0    0.0    nan        0.0     nan                 -1.0
gt empty only      0.0    0.0    0.0        nan     nan                 nan
=================  =====  =====  =========  ======  ==================  =====

Two empty masks agree perfectly. A ratio whose denominator is an empty mask is
undefined and is ``nan``, as is any distance to an empty surface: a missed or
hallucinated organ has no finite surface error. :func:`summarize` skips ``nan``
and counts it in ``n_nan``, so report it next to the mean.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

MM3_PER_ML = 1000.0  # 1 mL = 1 cm^3 = 1000 mm^3
HD_PERCENTILE = 95.0  # %, HD95
ABNORMAL_SHAPE_CHANGE_MM = 0.5  # mm, AVD between neighbouring CT slices above which a change is abnormal (Sec. IV-D)
_FACE_CONNECTIVITY = 1  # scipy connectivity 1 = face neighbours only: 6 in 3D, 4 in 2D

METRIC_KEYS = ("DSC", "JI", "precision", "recall", "AVD_pointset_mm", "AVD_mm", "HD95_mm", "ASSD_mm",
               "volume_pred_ml", "volume_gt_ml", "RVE")  # AVD_mm: the surface version


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------

def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} entries, masks have {ndim} axes")
    if not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be positive finite mm, got {spacing}")
    return spacing


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_mask(pred), _as_mask(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return pred, gt


def _union_box(pred: np.ndarray, gt: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box (slices) of ``pred | gt``, ``None`` when both are empty."""
    union = pred | gt
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(hits[0], hits[-1] + 1))
    return tuple(box)


# ---------------------------------------------------------------------------
# voxel-wise overlap (Sec. IV-A)
# ---------------------------------------------------------------------------

def _counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """(|Y ∩ Ŷ|, |Ŷ|, |Y|) as Python ints."""
    return (int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)),
            int(np.count_nonzero(gt)))


def _ratio(numerator: float, denominator: int, both_empty: bool) -> float:
    if denominator:
        return numerator / denominator
    return 1.0 if both_empty else math.nan


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """DSC = 2|Y ∩ Ŷ| / (|Y| + |Ŷ|) in [0, 1] (Sec. IV-A); 1.0 when both are empty."""
    tp, n_pred, n_gt = _counts(*_check_pair(pred, gt))
    return _ratio(2.0 * tp, n_pred + n_gt, True)


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """JI = |Y ∩ Ŷ| / |Y ∪ Ŷ| in [0, 1] (Sec. IV-A); 1.0 when both are empty."""
    tp, n_pred, n_gt = _counts(*_check_pair(pred, gt))
    return _ratio(tp, n_pred + n_gt - tp, True)


def overlap_by_threshold(probability: np.ndarray, gt: np.ndarray,
                         thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """DSC and JI of ``probability > t`` against ``gt`` for every ``t`` (Fig. 5), float64 ``[T]``
    each; only voxels above the lowest threshold or in the organ are scored (the rest count for none)."""
    probability, gt = np.asarray(probability), _as_mask(gt)
    if probability.shape != gt.shape:
        raise ValueError(f"probability {probability.shape} and mask {gt.shape} differ in shape")
    relevant = (probability > min(thresholds)) | gt
    probability, gt = probability[relevant], gt[relevant]
    return (np.array([dice(probability > t, gt) for t in thresholds], dtype=np.float64),
            np.array([jaccard(probability > t, gt) for t in thresholds], dtype=np.float64))


def precision(pred: np.ndarray, gt: np.ndarray) -> float:
    """|Y ∩ Ŷ| / |Ŷ|; 1.0 when both are empty, ``nan`` when only ``pred`` is."""
    tp, n_pred, n_gt = _counts(*_check_pair(pred, gt))
    return _ratio(tp, n_pred, n_gt == 0)


def recall(pred: np.ndarray, gt: np.ndarray) -> float:
    """|Y ∩ Ŷ| / |Y|; 1.0 when both are empty, ``nan`` when only ``gt`` is."""
    tp, n_pred, n_gt = _counts(*_check_pair(pred, gt))
    return _ratio(tp, n_gt, n_pred == 0)


# ---------------------------------------------------------------------------
# surface distances (Table III, Sec. IV-D)
# ---------------------------------------------------------------------------

def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: mask voxels with a face neighbour in the background.

    Voxels on the array border count as surface (outside the array is
    background). Returns a bool array of the input's shape.
    """
    mask = np.pad(_as_mask(mask), 1)
    structure = ndimage.generate_binary_structure(mask.ndim, _FACE_CONNECTIVITY)
    eroded = ndimage.binary_erosion(mask, structure=structure)
    return (mask ^ eroded)[(slice(1, -1),) * mask.ndim]


class _Distances(NamedTuple):
    """Directed distances (mm) between two masks: from every surface voxel of one to the other's
    surface, and from every voxel of one to the other mask (0 inside it). ``inf`` towards an empty mask."""

    surface_pred_to_gt: np.ndarray
    surface_gt_to_pred: np.ndarray
    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray


def _directed_distances(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> _Distances:
    """Every directed distance of :class:`_Distances` from one distance transform per mask.

    Works on the bounding box of both masks, where the Euclidean distance transform with
    ``sampling=spacing`` is exact (the box holds both masks whole, so padding with background is
    the same as cropping with a margin), so a small organ in a 512x512x240 volume costs little.
    The nearest voxel of a mask to a voxel outside it is a surface voxel (an inner voxel has a
    closer neighbour in the mask), so the distance transform of a mask's surface also gives the
    point-set distances: the same outside the mask, 0 inside.
    """
    box = _union_box(pred, gt)
    if box is None:
        return _Distances(*(np.zeros(0),) * 4)
    pred, gt = pred[box], gt[box]
    surface_pred, surface_gt = surface(pred), surface(gt)
    to_pred, to_gt = _distance_map(surface_pred, spacing), _distance_map(surface_gt, spacing)
    return _Distances(to_gt[surface_pred], to_pred[surface_gt],
                      np.where(gt, 0.0, to_gt)[pred], np.where(pred, 0.0, to_pred)[gt])


def _distance_map(target: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest True voxel of ``target`` (``inf`` if it has none)."""
    if not target.any():
        return np.full(target.shape, np.inf)
    return ndimage.distance_transform_edt(~target, sampling=spacing)


def surface_distances(pred: np.ndarray, gt: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm.

    Returns ``(pred_to_gt, gt_to_pred)``: for every surface voxel of ``pred``
    the distance to the nearest surface voxel of ``gt``, and vice versa, as
    float64 1-D arrays (order: C order of the voxels). A distance to an empty
    surface is ``inf``.
    """
    pred, gt = _check_pair(pred, gt)
    distances = _directed_distances(pred, gt, _check_spacing(spacing, pred.ndim))
    return distances.surface_pred_to_gt, distances.surface_gt_to_pred


class SurfaceMetrics(NamedTuple):
    """AVD, HD95 and ASSD in mm (see the module docstring for definitions)."""

    avd: float
    hd95: float
    assd: float


def _surface_metrics(pred_to_gt: np.ndarray, gt_to_pred: np.ndarray) -> SurfaceMetrics:
    if pred_to_gt.size == 0 and gt_to_pred.size == 0:  # both empty
        return SurfaceMetrics(0.0, 0.0, 0.0)
    if pred_to_gt.size == 0 or gt_to_pred.size == 0:  # exactly one empty
        return SurfaceMetrics(math.nan, math.nan, math.nan)
    pooled = np.concatenate([pred_to_gt, gt_to_pred])
    return SurfaceMetrics(
        avd=float(max(pred_to_gt.mean(), gt_to_pred.mean())),
        hd95=float(np.percentile(pooled, HD_PERCENTILE)),
        assd=float(pooled.mean()),
    )


def surface_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> SurfaceMetrics:
    """AVD, HD95 and ASSD (mm) from one distance computation."""
    return _surface_metrics(*surface_distances(pred, gt, spacing))


def avd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """Averaged Hausdorff distance in mm: max(d(Ŷ, Y), d(Y, Ŷ)), d = mean nearest surface distance.

    Taha & Hanbury 2015 definition (the max of the two directed averages, not
    their mean, and not :func:`assd`'s pooled mean). 0.0 when both masks are
    empty, ``nan`` when exactly one is.
    """
    return surface_metrics(pred, gt, spacing).avd


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile (mm) of the pooled directed surface distances (MedPy / nnU-Net).

    0.0 when both masks are empty, ``nan`` when exactly one is.
    """
    return surface_metrics(pred, gt, spacing).hd95


def assd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance (mm): mean of the pooled distances of both directions.

    (Σ_{a∈∂Ŷ} d(a, ∂Y) + Σ_{b∈∂Y} d(b, ∂Ŷ)) / (|∂Ŷ| + |∂Y|), as MedPy 0.5's
    ``assd`` computes it; a mean of the two directed means would weigh the
    smaller surface more. 0.0 when both masks are empty, ``nan`` when exactly
    one is.
    """
    return surface_metrics(pred, gt, spacing).assd


# ---------------------------------------------------------------------------
# volume
# ---------------------------------------------------------------------------

def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in mL: voxel count × voxel volume (mm³) / 1000."""
    mask = _as_mask(mask)
    spacing = _check_spacing(spacing, mask.ndim)
    return int(np.count_nonzero(mask)) * math.prod(spacing) / MM3_PER_ML


def _rve(volume_pred: float, volume_gt: float) -> float:
    if volume_gt > 0:
        return (volume_pred - volume_gt) / volume_gt
    return 0.0 if volume_pred == 0 else math.nan


def relative_volume_error(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """RVE = (V_pred − V_gt) / V_gt (fraction; −1 for an empty prediction).

    0.0 when both are empty, ``nan`` when only ``gt`` is.
    """
    pred, gt = _check_pair(pred, gt)
    return _rve(volume_ml(pred, spacing), volume_ml(gt, spacing))


# ---------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------

def case_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """All metrics of one case, keyed by :data:`METRIC_KEYS`.

    Args:
        pred, gt: masks ``[Z, Y, X]`` (or any ndim), nonzero = pancreas.
        spacing: ``(z, y, x)`` mm.

    Returns:
        DSC, JI, precision, recall as fractions in [0, 1]; AVD_pointset_mm (all voxels),
        AVD_mm (surfaces), HD95_mm, ASSD_mm in mm; volume_pred_ml, volume_gt_ml in mL; RVE as
        a fraction.
        Edge cases follow the table in the module docstring.
    """
    pred, gt = _check_pair(pred, gt)
    spacing = _check_spacing(spacing, pred.ndim)
    box = _union_box(pred, gt)
    if box is not None:  # everything outside the box is background in both
        pred, gt = pred[box], gt[box]
    tp, n_pred, n_gt = _counts(pred, gt)
    volume_pred = n_pred * math.prod(spacing) / MM3_PER_ML
    volume_gt = n_gt * math.prod(spacing) / MM3_PER_ML
    distances = _directed_distances(pred, gt, spacing)
    dist = _surface_metrics(distances.surface_pred_to_gt, distances.surface_gt_to_pred)
    return {
        "DSC": _ratio(2.0 * tp, n_pred + n_gt, True),
        "JI": _ratio(tp, n_pred + n_gt - tp, True),
        "precision": _ratio(tp, n_pred, n_gt == 0),
        "recall": _ratio(tp, n_gt, n_pred == 0),
        "AVD_pointset_mm": _pointset_avd(distances),
        "AVD_mm": dist.avd,
        "HD95_mm": dist.hd95,
        "ASSD_mm": dist.assd,
        "volume_pred_ml": volume_pred,
        "volume_gt_ml": volume_gt,
        "RVE": _rve(volume_pred, volume_gt),
    }


# ---------------------------------------------------------------------------
# summaries, in the paper's "mean ± std [min, max]" form (Tables I-IV)
# ---------------------------------------------------------------------------

class Summary(NamedTuple):
    """Statistics of one metric over cases, ``nan`` values left out.

    ``std`` is the sample standard deviation (ddof=1) when ``n > 1``, 0.0 for
    a single value; all of mean/std/min/max are ``nan`` when ``n == 0``.
    """

    mean: float
    std: float
    min: float
    max: float
    n: int  # values that entered the statistics
    n_nan: int  # values left out because they were nan (undefined, see module docstring)


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    """Mean, sample std, min, max over the non-nan ``values``, with counts."""
    values = np.asarray(values, dtype=np.float64).ravel()
    is_nan = np.isnan(values)
    kept = values[~is_nan]
    n, n_nan = int(kept.size), int(is_nan.sum())
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0, n_nan)
    std = float(kept.std(ddof=1)) if n > 1 else 0.0
    return Summary(float(kept.mean()), std, float(kept.min()), float(kept.max()), n, n_nan)


def format_summary(summary: Summary, scale: float = 100.0, digits: int = 1) -> str:
    """The paper's ``mean±std [min,max]`` string, e.g. ``"83.3±5.6 [59.0,91.0]"``.

    Values are multiplied by ``scale`` (100 turns fractions into %; use 1 for
    mm or mL). When some values were ``nan`` their count is appended:
    ``"83.3±5.6 [59.0,91.0] (2 nan)"``.
    """
    m, s, lo, hi = (v * scale for v in summary[:4])
    text = f"{m:.{digits}f}±{s:.{digits}f} [{lo:.{digits}f},{hi:.{digits}f}]"
    if summary.n_nan:
        text += f" ({summary.n_nan} nan)"
    return text


# ---------------------------------------------------------------------------
# inter-slice shape change (Sec. IV-D)
# ---------------------------------------------------------------------------

def interslice_avd(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """In-plane AVD (mm) between the masks of neighbouring axial slices (Sec. IV-D).

    Args:
        mask: ``[Z, Y, X]``, nonzero = pancreas.
        spacing: ``(z, y, x)`` mm; only ``(y, x)`` is used, distances are 2D.

    Returns:
        float64 ``[Z - 1]``: entry ``t`` is AVD(mask[t + 1], mask[t]), i.e. the
        pair (τ−1, τ) with τ = t + 1. ``nan`` where either slice is empty: the
        pair is skipped, because an organ starting or ending there (or a slice
        without organ) has no shape to compare.
    """
    return _between_neighbours(mask, spacing, avd, "interslice_avd")


def _between_neighbours(mask: np.ndarray, spacing: Sequence[float],
                        distance: Callable[[np.ndarray, np.ndarray, tuple[float, ...]], float], name: str) -> np.ndarray:
    """``distance(mask[t + 1], mask[t], in-plane spacing)`` for every pair of neighbouring slices
    that both hold organ; ``nan`` for the others. float64 ``[Z - 1]``."""
    mask = _as_mask(mask)
    if mask.ndim != 3:
        raise ValueError(f"{name} needs a [Z, Y, X] mask, got shape {mask.shape}")
    in_plane = _check_spacing(spacing, 3)[1:]
    present = mask.any(axis=(1, 2))
    out = np.full(max(mask.shape[0] - 1, 0), np.nan)
    for t in np.flatnonzero(present[:-1] & present[1:]):
        out[t] = distance(mask[t + 1], mask[t], in_plane)
    return out


def pointset_avd(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> float:
    """Point-set averaged Hausdorff distance (mm) between all voxels of two masks (module docstring).

    ``nan`` when exactly one mask is empty, 0.0 when both are.
    """
    a, b = _check_pair(a, b)
    return _pointset_avd(_directed_distances(a, b, _check_spacing(spacing, a.ndim)))


def _pointset_avd(distances: _Distances) -> float:
    if distances.pred_to_gt.size == 0 and distances.gt_to_pred.size == 0:
        return 0.0
    if distances.pred_to_gt.size == 0 or distances.gt_to_pred.size == 0:
        return math.nan
    return float(max(distances.pred_to_gt.mean(), distances.gt_to_pred.mean()))


def interslice_pointset_avd(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """:func:`pointset_avd` (mm) between the masks of neighbouring axial slices, indexed and
    skipped as :func:`interslice_avd`: float64 ``[Z - 1]``, ``nan`` where a slice is empty."""
    return _between_neighbours(mask, spacing, pointset_avd, "interslice_pointset_avd")


def abnormal_shape_changes(mask: np.ndarray, spacing: Sequence[float],
                           threshold_mm: float = ABNORMAL_SHAPE_CHANGE_MM) -> np.ndarray:
    """Flags point-set AVD(Ŷτ, Ŷτ−1) > ``threshold_mm`` (Sec. IV-D: 0.5 mm for CT).

    Returns bool ``[Z - 1]``, indexed as :func:`interslice_pointset_avd`; skipped pairs
    (an empty slice) are ``False``.
    """
    change = interslice_pointset_avd(mask, spacing)
    return np.nan_to_num(change, nan=-np.inf) > threshold_mm
