"""Metrics against hand-worked tiny cases and a brute-force surface distance."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from pancreas_seg import metrics as M

# ---------------------------------------------------------------------------
# a hand-worked 2D case
# ---------------------------------------------------------------------------
# 4×4, spacing (y, x) = (2.0, 0.5) mm.
#   pred: rows 0-1, cols 0-2  -> 6 px      gt: rows 0-1, cols 1-2 -> 4 px
#   |pred ∩ gt| = 4, |pred ∪ gt| = 6
#   DSC = 2·4/(6+4) = 0.8, JI = 4/6, precision = 4/6, recall = 4/4 = 1
#   Every pixel of a 2-row block is surface (each touches row 2 or the border).
#   pred -> gt: col-0 pixels are one column (0.5 mm) from gt, the other 4 are on
#   it: [0.5, 0.5, 0, 0, 0, 0], mean 1/6.  gt -> pred: all 0, mean 0.
#   AVD  = max(1/6, 0) = 1/6 mm; the point-set AVD too: every pixel is a surface pixel here
#   ASSD = (0.5 + 0.5) / (6 + 4) = 0.1 mm
#   HD95: 10 pooled values, 8 zeros and two 0.5; rank 0.95·9 = 8.55 lies
#   between sorted[8] = 0.5 and sorted[9] = 0.5 -> 0.5 mm
#   volumes: pixel = 1 mm², pred 6 mm² = 0.006, gt 0.004; RVE = (6-4)/4 = 0.5
PRED_2D = np.zeros((4, 4), bool)
PRED_2D[0:2, 0:3] = True
GT_2D = np.zeros((4, 4), bool)
GT_2D[0:2, 1:3] = True
SPACING_2D = (2.0, 0.5)
GOLDEN_2D = {
    "DSC": 0.8, "JI": 4 / 6, "precision": 4 / 6, "recall": 1.0,
    "AVD_pointset_mm": 1 / 6, "AVD_mm": 1 / 6, "HD95_mm": 0.5, "ASSD_mm": 0.1,
    "volume_pred_ml": 0.006, "volume_gt_ml": 0.004, "RVE": 0.5,
}


def test_case_metrics_hand_worked_2d():
    got = M.case_metrics(PRED_2D, GT_2D, SPACING_2D)
    assert set(got) == set(M.METRIC_KEYS)
    for key, value in GOLDEN_2D.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_single_metric_functions_match_case_metrics():
    assert M.dice(PRED_2D, GT_2D) == pytest.approx(0.8)
    assert M.jaccard(PRED_2D, GT_2D) == pytest.approx(4 / 6)
    assert M.precision(PRED_2D, GT_2D) == pytest.approx(4 / 6)
    assert M.recall(PRED_2D, GT_2D) == pytest.approx(1.0)
    assert M.avd(PRED_2D, GT_2D, SPACING_2D) == pytest.approx(1 / 6)
    assert M.hd95(PRED_2D, GT_2D, SPACING_2D) == pytest.approx(0.5)
    assert M.assd(PRED_2D, GT_2D, SPACING_2D) == pytest.approx(0.1)
    assert M.volume_ml(PRED_2D, SPACING_2D) == pytest.approx(0.006)
    assert M.relative_volume_error(PRED_2D, GT_2D, SPACING_2D) == pytest.approx(0.5)
    # 0/1 integer masks are the same as bool
    assert M.dice(PRED_2D.astype(np.uint8), GT_2D.astype(int)) == pytest.approx(0.8)


def test_anisotropic_single_voxels_3d():
    # One voxel each at (z,y,x) = (0,0,0) and (2,1,0), spacing (3, 2, 1) mm:
    # distance = sqrt((2·3)² + (1·2)²) = sqrt(40); every surface metric equals it.
    pred = np.zeros((3, 3, 3), bool)
    gt = np.zeros((3, 3, 3), bool)
    pred[0, 0, 0] = True
    gt[2, 1, 0] = True
    sm = M.surface_metrics(pred, gt, (3.0, 2.0, 1.0))
    assert sm.avd == pytest.approx(math.sqrt(40))
    assert sm.hd95 == pytest.approx(math.sqrt(40))
    assert sm.assd == pytest.approx(math.sqrt(40))


def test_surface_is_face_connected_boundary():
    # 3×3×3 cube in a 5×5×5 volume: only the centre voxel has all 6 face
    # neighbours inside -> 27 - 1 = 26 surface voxels.
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    assert M.surface(cube).sum() == 26
    # A full array: only the border is surface (outside counts as background).
    assert M.surface(np.ones((4, 5), bool)).sum() == 4 * 5 - 2 * 3


def test_avd_is_max_of_directed_means_not_their_mean():
    # pred = one pixel at x=0, gt = pixels at x=0 and x=4 (1D-like 2D, spacing 1):
    # pred -> gt: [0], mean 0.   gt -> pred: [0, 4], mean 2.
    # AVD = max(0, 2) = 2 (mean would be 1);  ASSD = (0+0+4)/3 = 4/3.
    pred = np.zeros((1, 5), bool)
    pred[0, 0] = True
    gt = np.zeros((1, 5), bool)
    gt[0, [0, 4]] = True
    assert M.avd(pred, gt, (1.0, 1.0)) == pytest.approx(2.0)
    assert M.assd(pred, gt, (1.0, 1.0)) == pytest.approx(4 / 3)


# ---------------------------------------------------------------------------
# edge cases (module docstring table)
# ---------------------------------------------------------------------------
NAN = math.nan
_EMPTY = np.zeros((4, 4, 4), bool)
_BLOB = np.zeros((4, 4, 4), bool)
_BLOB[1:3, 1:3, 1:3] = True  # 8 voxels, spacing (2, 1, 0.5) -> 8 mm³ = 0.008 mL
EDGE_CASES = {
    #               DSC  JI   prec recall pAVD AVD  HD95 ASSD Vpred  Vgt    RVE
    "both_empty": ((_EMPTY, _EMPTY), (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
    "pred_empty": ((_EMPTY, _BLOB), (0.0, 0.0, NAN, 0.0, NAN, NAN, NAN, NAN, 0.0, 0.008, -1.0)),
    "gt_empty": ((_BLOB, _EMPTY), (0.0, 0.0, 0.0, NAN, NAN, NAN, NAN, NAN, 0.008, 0.0, NAN)),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(name):
    (pred, gt), expected = EDGE_CASES[name]
    got = M.case_metrics(pred, gt, (2.0, 1.0, 0.5))
    for key, value in zip(M.METRIC_KEYS, expected):
        if math.isnan(value):
            assert math.isnan(got[key]), (key, got[key])
        else:
            assert got[key] == pytest.approx(value), key
    # the single-metric functions agree with case_metrics
    singles = {"DSC": M.dice(pred, gt), "JI": M.jaccard(pred, gt),
               "precision": M.precision(pred, gt), "recall": M.recall(pred, gt),
               "AVD_pointset_mm": M.pointset_avd(pred, gt, (2, 1, 0.5)),
               "AVD_mm": M.avd(pred, gt, (2, 1, 0.5)), "HD95_mm": M.hd95(pred, gt, (2, 1, 0.5)),
               "ASSD_mm": M.assd(pred, gt, (2, 1, 0.5)),
               "RVE": M.relative_volume_error(pred, gt, (2, 1, 0.5))}
    for key, value in singles.items():
        assert value == pytest.approx(got[key], nan_ok=True), key


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        M.dice(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="spacing"):
        M.avd(PRED_2D, GT_2D, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        M.case_metrics(PRED_2D, GT_2D, (1.0, 0.0))


# ---------------------------------------------------------------------------
# surface distances against brute force
# ---------------------------------------------------------------------------

def _brute_surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Coordinates (mm) of mask voxels with a face neighbour outside the mask or the array."""
    points = []
    for idx in zip(*np.nonzero(mask)):
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if not 0 <= nb[axis] < mask.shape[axis] or not mask[tuple(nb)]:
                points.append(idx)
                break
    return np.array(points, float) * np.asarray(spacing)


def _brute_metrics(pred, gt, spacing):
    d = cdist(_brute_surface_points(pred, spacing), _brute_surface_points(gt, spacing))
    a_to_b, b_to_a = d.min(axis=1), d.min(axis=0)
    pooled = np.concatenate([a_to_b, b_to_a])
    return (max(a_to_b.mean(), b_to_a.mean()), np.percentile(pooled, 95), pooled.mean())


def _random_mask(rng, shape):
    # Smoothed noise gives blobs of varied shape; they often touch the border.
    field = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(0.5, 1.5))
    mask = field > np.quantile(field, rng.uniform(0.4, 0.85))
    mask.flat[rng.integers(mask.size)] = True  # never empty
    return mask


@pytest.mark.parametrize("seed", range(20))
def test_surface_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    ndim = 2 if seed % 2 else 3
    shape = tuple(rng.integers(5, 14 if ndim == 2 else 9, size=ndim))
    spacing = tuple(rng.uniform(0.3, 3.0, size=ndim))
    pred, gt = _random_mask(rng, shape), _random_mask(rng, shape)
    if seed % 4 == 0:  # make sure some cases have both masks on the array border
        pred[(0,) * ndim] = gt[(-1,) * ndim] = True
    expected = _brute_metrics(pred, gt, spacing)
    got = M.surface_metrics(pred, gt, spacing)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_surface_distances_far_apart_in_large_volume():
    # Two small blobs at opposite corners: the bounding box spans the volume.
    pred = np.zeros((6, 40, 40), bool)
    gt = np.zeros((6, 40, 40), bool)
    pred[0:2, 0:3, 0:3] = True
    gt[4:6, 36:40, 35:40] = True
    spacing = (2.5, 0.7, 0.8)
    np.testing.assert_allclose(M.surface_metrics(pred, gt, spacing),
                               _brute_metrics(pred, gt, spacing), rtol=1e-10)


# ---------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------

def test_summarize_and_format():
    # values 0.8, 0.9, 1.0 and a nan: mean 0.9, sample std
    # sqrt((0.01 + 0 + 0.01) / 2) = 0.1, min 0.8, max 1.0, n 3, n_nan 1
    s = M.summarize([0.8, 0.9, NAN, 1.0])
    assert s.n == 3 and s.n_nan == 1
    assert (s.mean, s.std, s.min, s.max) == pytest.approx((0.9, 0.1, 0.8, 1.0))
    assert M.format_summary(s) == "90.0±10.0 [80.0,100.0] (1 nan)"
    assert M.format_summary(M.summarize([0.61, 0.54]), scale=1, digits=2) == "0.57±0.05 [0.54,0.61]"


def test_summarize_degenerate():
    one = M.summarize([0.5])
    assert one == M.Summary(0.5, 0.0, 0.5, 0.5, 1, 0)
    none = M.summarize([NAN, NAN])
    assert none.n == 0 and none.n_nan == 2 and math.isnan(none.mean)
    assert M.format_summary(none) == "nan±nan [nan,nan] (2 nan)"
    assert M.summarize([]).n == 0


# ---------------------------------------------------------------------------
# inter-slice shape change (Sec. IV-D)
# ---------------------------------------------------------------------------

def test_interslice_avd_shifted_square():
    # 5 slices, spacing (z, y, x) = (2, 0.6, 0.8) mm:
    #   z=0 empty; z=1 3×3 square at rows 2-4, cols 2-4; z=2 same square;
    #   z=3 shifted one column right; z=4 a single pixel, z=5 that pixel moved one row.
    # Pairs (t, t+1):
    #   (0,1): one slice empty -> nan (skipped)
    #   (1,2): identical -> 0
    #   (2,3): 3×3 square shifted by 1 column. Surface = the 8 border pixels.
    #          Old square -> new: the 3 left-column pixels are 1 column (0.8 mm)
    #          from the new surface; the old centre-right pixel (3, 4) is now the
    #          new interior, 1 row (0.6 mm) from the new surface; the 4 others lie
    #          on it: mean = (3·0.8 + 0.6)/8 = 0.375; the other direction is the
    #          mirror image -> AVD = 0.375 mm (a one-pixel shift of a solid shape
    #          gives less than one pixel: most of its surface stays in place)
    #   (3,4): square at rows 2-4, cols 3-5 vs one pixel at (3, 3) on its left edge.
    #          pixel -> square: 0. Square's 8 surface pixels -> (3, 3), (dy, dx) in px:
    #          (-1,0) 0.6, (-1,1) 1.0, (-1,2) sqrt(0.36+2.56)=1.7088, (0,0) 0, (0,2) 1.6,
    #          (1,0) 0.6, (1,1) 1.0, (1,2) 1.7088; sum 8.2176 -> AVD = 1.0272 mm
    #   (4,5): a single pixel moved one row -> AVD = one row = 0.6 mm
    mask = np.zeros((6, 8, 8), bool)
    mask[1, 2:5, 2:5] = True
    mask[2, 2:5, 2:5] = True
    mask[3, 2:5, 3:6] = True
    mask[4, 3, 3] = True
    mask[5, 4, 3] = True
    spacing = (2.0, 0.6, 0.8)
    got = M.interslice_avd(mask, spacing)
    assert got.shape == (5,)
    assert math.isnan(got[0])
    assert got[1] == 0.0
    assert got[2] == pytest.approx(0.375)
    assert got[3] == pytest.approx((2 * 0.6 + 2 * 1.0 + 2 * math.sqrt(2.92) + 1.6) / 8)
    assert got[4] == pytest.approx(0.6)

    flags = M.abnormal_shape_changes(mask, spacing)  # default 0.5 mm (CT)
    assert flags.dtype == bool
    assert flags.tolist() == [False, False, False, True, True]
    # point-set AVD of pair (2,3): the 3 pixels of the shifted column are 0.8 mm from the other
    # slice, the 6 shared ones 0 -> 2.4 / 9 = 0.267 mm both ways: under 0.3 mm, unlike the surface AVD
    assert M.interslice_pointset_avd(mask, spacing)[2] == pytest.approx(2.4 / 9)
    assert M.abnormal_shape_changes(mask, spacing, threshold_mm=0.3).tolist()[:3] == [False, False, False]
    # pair (3,4): the pixel lies inside the 3x3 block (0); block to pixel as above plus (0,1) 0.8 mm
    assert M.interslice_pointset_avd(mask, spacing)[3] == pytest.approx((8.2176 + 0.8) / 9, abs=1e-4)


def test_interslice_avd_both_empty_and_bad_shape():
    mask = np.zeros((3, 4, 4), bool)
    assert np.isnan(M.interslice_avd(mask, (1, 1, 1))).all()
    assert not M.abnormal_shape_changes(mask, (1, 1, 1)).any()
    with pytest.raises(ValueError, match=r"\[Z, Y, X\]"):
        M.interslice_avd(np.zeros((4, 4), bool), (1, 1))


def _brute_pointset_avd(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """All-pairs reference: max over both directions of the mean distance to the other set."""
    pa = np.argwhere(a) * np.asarray(spacing)
    pb = np.argwhere(b) * np.asarray(spacing)
    d = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)
    return max(d.min(axis=1).mean(), d.min(axis=0).mean())


@pytest.mark.parametrize("seed", range(5))
def test_pointset_avd_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random((2, 5, 9, 7)) > 0.8
    spacing = (2.5, 0.7, 0.9)
    assert M.pointset_avd(a, b, spacing) == pytest.approx(_brute_pointset_avd(a, b, spacing))
    assert M.pointset_avd(a, a, spacing) == 0.0


def test_pointset_avd_empty_masks():
    empty, one = np.zeros((4, 4), bool), np.eye(4, dtype=bool)
    assert M.pointset_avd(empty, empty, (1, 1)) == 0.0
    assert math.isnan(M.pointset_avd(empty, one, (1, 1))) and math.isnan(M.pointset_avd(one, empty, (1, 1)))


def test_overlap_by_threshold_hand_worked():
    probability = np.array([0.9, 0.6, 0.3, 0.1, 0.0])
    gt = np.array([1, 1, 1, 0, 0])
    dsc, ji = M.overlap_by_threshold(probability, gt, [0.05, 0.5, 0.95])
    # t=0.05: 4 predicted, 3 hit -> DSC 6/7, JI 3/4; t=0.5: 2 hit of 3 -> DSC 4/5, JI 2/3; t=0.95: none -> 0
    np.testing.assert_allclose(dsc, [6 / 7, 4 / 5, 0.0])
    np.testing.assert_allclose(ji, [3 / 4, 2 / 3, 0.0])
    with pytest.raises(ValueError):
        M.overlap_by_threshold(probability, gt[:4], [0.5])


def test_assd_pools_both_directions_as_medpy_05():
    # pred: 1 pixel at x=0; gt: 3 pixels at x=0, 2, 4 (spacing 1, each its own surface).
    # pred -> gt: [0]; gt -> pred: [0, 2, 4].  Pooled (MedPy 0.5): (0+0+2+4)/4 = 1.5;
    # the mean of the two directed means would be (0 + 2) / 2 = 1.0.
    pred = np.zeros((1, 5), bool)
    pred[0, 0] = True
    gt = np.zeros((1, 5), bool)
    gt[0, [0, 2, 4]] = True
    assert M.assd(pred, gt, (1.0, 1.0)) == pytest.approx(1.5)
    assert M.assd(gt, pred, (1.0, 1.0)) == pytest.approx(1.5)  # symmetric


def test_docstrings_say_which_assd_is_computed():
    for text in (M.__doc__, M.assd.__doc__):
        assert "pooled distances of both directions" in text and "MedPy 0.5" in text
    for text in (M.__doc__, M.avd.__doc__, M.assd.__doc__):
        assert "MedPy's ``assd`` instead" not in text and "equals MedPy's ``assd``" not in text
        assert "MedPy's ``assd``) use the *mean*" not in text
