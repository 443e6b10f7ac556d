"""evaluate on tiny NIfTI folders written with nibabel in a temporary folder."""
from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest

from pancreas_seg import metrics
from pancreas_seg.errors import InputError
from pancreas_seg.evaluate import (DISPLAY, case_id, evaluate, evaluate_pairs, format_table, match_cases,
                                   nan_to_none, none_to_nan, write_results)

SPACING_XYZ = (0.8, 0.7, 2.0)  # mm, NIfTI axis order
AFFINE = np.diag([*SPACING_XYZ, 1.0])
SHAPE = (6, 10, 12)  # [Z, Y, X]


def _save(path, array_zyx, affine=AFFINE):
    """Write a [Z, Y, X] array as NIfTI ([X, Y, Z] on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array_zyx, np.uint8).transpose(2, 1, 0), affine), path)
    return path


def _block(z, y, x, value=1):
    out = np.zeros(SHAPE, np.uint8)
    out[z, y, x] = value
    return out


# gt: 2×4×4 = 32 voxels; pred covers 2×4×2 of it = 16 voxels -> DSC = 32/48 = 2/3
GT_A = _block(slice(2, 4), slice(3, 7), slice(4, 8))
PRED_A = _block(slice(2, 4), slice(3, 7), slice(4, 6))
# a perfect case
GT_B = _block(slice(1, 5), slice(2, 5), slice(2, 9))
PRED_B = GT_B.copy()


def test_case_id_strips_nifti_suffixes():
    assert case_id("a/label0001.nii.gz") == "label0001"
    assert case_id("case_2.NII") == "case_2"
    assert case_id("x.y.nii") == "x.y"


def test_match_cases_rule(tmp_path):
    # exact names first, then the one number of an id; ids with several numbers never pair by number
    pred = {c: tmp_path / f"{c}.nii.gz" for c in ("case_a", "PANCREAS_0001", "PANCREAS_0002", "case1_run2", "x9")}
    gt = {c: tmp_path / f"{c}.nii.gz" for c in ("case_a", "label0001", "label0002", "label0003", "label0004")}
    pairs, unmatched_pred, unmatched_gt = match_cases(pred, gt)
    assert [(c, p.name) for c, p, _ in pairs] == [
        ("case_a", "case_a.nii.gz"), ("label0001", "PANCREAS_0001.nii.gz"),
        ("label0002", "PANCREAS_0002.nii.gz")]
    assert sorted(p.name for p in unmatched_pred) == ["case1_run2.nii.gz", "x9.nii.gz"]
    assert sorted(p.name for p in unmatched_gt) == ["label0003.nii.gz", "label0004.nii.gz"]


def test_match_cases_refuses_an_ambiguous_number(tmp_path):
    pred = {c: tmp_path / "pred" / f"{c}.nii.gz" for c in ("seg_3", "s03")}
    gt = {"label0003": tmp_path / "gt" / "label0003.nii.gz"}
    with pytest.raises(InputError, match="ambiguous pairing: seg_3.nii.gz, s03.nii.gz"):
        match_cases(pred, gt)
    # the same number without a partner on the other side is no pairing at all: listed, not refused
    _, unmatched_pred, _ = match_cases(pred, {"label0004": tmp_path / "gt" / "label0004.nii.gz"})
    assert len(unmatched_pred) == 2


def test_evaluate_folders_exact_names_and_outputs(tmp_path):
    _save(tmp_path / "gt" / "case_a.nii.gz", GT_A)
    _save(tmp_path / "gt" / "case_b.nii", GT_B)
    _save(tmp_path / "gt" / "case_c.nii.gz", GT_B)  # no prediction
    _save(tmp_path / "pred" / "case_a.nii.gz", PRED_A)
    _save(tmp_path / "pred" / "case_b.nii.gz", PRED_B)
    _save(tmp_path / "pred" / "other.nii.gz", PRED_B)  # no ground truth
    (tmp_path / "pred" / "notes.txt").write_text("not a case")
    _save(tmp_path / "pred" / ".case_a.nii.gz.tmp-1.nii.gz", PRED_B)  # hidden: skipped

    result = evaluate(tmp_path / "pred", tmp_path / "gt")
    assert [r["case_id"] for r in result.rows] == ["case_a", "case_b"]
    a, b = result.rows
    # case a: |gt| = 32, |pred| = 16, overlap 16 -> DSC 2/3, JI 1/2, precision 1, recall 1/2
    assert (a["DSC"], a["JI"], a["precision"], a["recall"]) == pytest.approx((2 / 3, 0.5, 1.0, 0.5))
    voxel_ml = 0.8 * 0.7 * 2.0 / 1000
    assert a["volume_gt_ml"] == pytest.approx(32 * voxel_ml)
    assert a["RVE"] == pytest.approx(-0.5)
    # the surface metrics use the (z, y, x) spacing read from the affine
    expected = metrics.surface_metrics(PRED_A, GT_A, (2.0, 0.7, 0.8))
    assert (a["AVD_mm"], a["HD95_mm"], a["ASSD_mm"]) == pytest.approx(tuple(expected))
    assert b["DSC"] == 1.0 and b["AVD_mm"] == 0.0
    assert [p.name for p in result.unmatched_pred] == ["other.nii.gz"]
    assert [p.name for p in result.unmatched_gt] == ["case_c.nii.gz"]
    # summary over 2 cases: DSC mean 5/6, sample std |1 - 2/3| / sqrt(2)
    s = result.summary["DSC"]
    assert (s.mean, s.std, s.n, s.n_nan) == pytest.approx((5 / 6, (1 / 3) / math.sqrt(2), 2, 0))

    csv_path, json_path = write_results(result, tmp_path / "out")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case_id"] for r in rows] == ["case_a", "case_b"]
    assert set(metrics.METRIC_KEYS) <= set(rows[0])
    assert float(rows[0]["DSC"]) == pytest.approx(2 / 3, abs=1e-6)
    summary = json.loads(json_path.read_text())
    assert summary["n_cases"] == 2
    assert summary["metrics"]["DSC"]["paper"] == "83.3±23.6 [66.7,100.0]"
    assert summary["metrics"]["DSC"]["n"] == 2 and summary["metrics"]["DSC"]["n_nan"] == 0
    assert summary["unmatched_pred"][0].endswith("other.nii.gz")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left

    table = format_table(result)
    assert "case_a" in table and "case_b" in table
    assert "83.3±23.6 [66.7,100.0]" in table
    assert "unmatched predictions (1): other.nii.gz" in table


def test_evaluate_matches_trailing_digits(tmp_path):
    _save(tmp_path / "gt" / "label0001.nii.gz", GT_A)
    _save(tmp_path / "gt" / "label0002.nii.gz", GT_B)
    _save(tmp_path / "pred" / "PANCREAS_0001.nii.gz", PRED_A)
    _save(tmp_path / "pred" / "PANCREAS_0002.nii.gz", PRED_B)
    result = evaluate(tmp_path / "pred", tmp_path / "gt")
    assert [r["case_id"] for r in result.rows] == ["label0001", "label0002"]
    assert [r["DSC"] for r in result.rows] == pytest.approx([2 / 3, 1.0])
    assert result.rows[0]["pred_path"].endswith("PANCREAS_0001.nii.gz")
    assert not result.unmatched_pred and not result.unmatched_gt


def test_evaluate_no_match_is_an_error(tmp_path):
    _save(tmp_path / "gt" / "label_a.nii.gz", GT_A)
    _save(tmp_path / "pred" / "pred_b.nii.gz", PRED_A)
    with pytest.raises(InputError, match="no prediction matches"):
        evaluate(tmp_path / "pred", tmp_path / "gt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .nii"):
        evaluate(tmp_path / "empty", tmp_path / "gt")
    with pytest.raises(InputError, match="two files or two folders"):
        evaluate(tmp_path / "pred" / "pred_b.nii.gz", tmp_path / "gt")
    with pytest.raises(InputError, match="does not exist"):
        evaluate(tmp_path / "missing", tmp_path / "gt")


def test_multi_label_ground_truth(tmp_path):
    # MSD-style gt: pancreas = 1 (16 voxels), tumour = 2 (16 voxels); the
    # prediction marks both with 1.
    gt = GT_A.copy()
    gt[:, :, 6:8][gt[:, :, 6:8] > 0] = 2
    pred = (GT_A > 0).astype(np.uint8)
    _save(tmp_path / "gt.nii.gz", gt)
    _save(tmp_path / "pred.nii.gz", pred)
    both = evaluate(tmp_path / "pred.nii.gz", tmp_path / "gt.nii.gz", labels=(1, 2))
    assert both.rows[0]["DSC"] == 1.0 and both.rows[0]["case_id"] == "gt"
    # label 1 alone: |gt| = 16, |pred| = 32, overlap 16 -> DSC = 32/48
    only1 = evaluate(tmp_path / "pred.nii.gz", tmp_path / "gt.nii.gz", labels=(1,))
    assert only1.rows[0]["DSC"] == pytest.approx(2 / 3)
    # pred_labels restricts the prediction too
    restricted = evaluate_pairs([tmp_path / "gt.nii.gz"], [tmp_path / "gt.nii.gz"], labels=(1,), pred_labels=(1,))
    assert restricted.rows[0]["DSC"] == 1.0


def test_several_label_values_without_labels_are_refused(tmp_path):
    msd = GT_A.copy()
    msd[:, :, 6:8][msd[:, :, 6:8] > 0] = 2
    _save(tmp_path / "msd.nii.gz", msd)
    _save(tmp_path / "pred.nii.gz", (GT_A > 0).astype(np.uint8))
    with pytest.raises(InputError, match=r"msd.nii.gz: ground truth holds label values \[1, 2\]; .*--label"):
        evaluate(tmp_path / "pred.nii.gz", tmp_path / "msd.nii.gz")
    organ7 = (GT_A > 0).astype(np.uint8) * 7  # TotalSegmentator-style: pancreas = 7, no 1 at all
    _save(tmp_path / "ts.nii.gz", organ7)
    with pytest.raises(InputError, match=r"label values \[7\]"):
        evaluate(tmp_path / "pred.nii.gz", tmp_path / "ts.nii.gz")
    assert evaluate(tmp_path / "pred.nii.gz", tmp_path / "ts.nii.gz", labels=(7,)).rows[0]["DSC"] == 1.0
    organs = (GT_A > 0).astype(np.uint8)
    organs[0, 0, 0] = 3  # a multi-label prediction: not every organ is pancreas
    _save(tmp_path / "organs.nii.gz", organs)
    with pytest.raises(InputError, match=r"prediction holds label values \[1, 3\]; .*--pred-label"):
        evaluate(tmp_path / "organs.nii.gz", tmp_path / "pred.nii.gz")
    assert evaluate(tmp_path / "organs.nii.gz", tmp_path / "pred.nii.gz", pred_labels=(1,)).rows[0]["DSC"] == 1.0
    binary255 = (GT_A > 0).astype(np.uint8) * 255  # one foreground value, whatever it is, is a binary mask
    _save(tmp_path / "p255.nii.gz", binary255)
    assert evaluate(tmp_path / "p255.nii.gz", tmp_path / "pred.nii.gz").rows[0]["DSC"] == 1.0


def test_multi_organ_label_7(tmp_path):
    # multi-organ map: liver = 6 elsewhere, pancreas = 7 -> only 7 counts
    gt = _block(slice(0, 2), slice(0, 3), slice(0, 3), value=6)
    gt[GT_B > 0] = 7
    _save(tmp_path / "gt" / "img0001.nii.gz", gt)
    _save(tmp_path / "pred" / "img0001.nii.gz", PRED_B)
    result = evaluate(tmp_path / "pred", tmp_path / "gt", labels=(7,))
    assert result.rows[0]["DSC"] == 1.0


def test_empty_prediction_counts_as_nan_in_summary(tmp_path):
    _save(tmp_path / "gt" / "c1.nii.gz", GT_A)
    _save(tmp_path / "gt" / "c2.nii.gz", GT_B)
    _save(tmp_path / "pred" / "c1.nii.gz", np.zeros(SHAPE))
    _save(tmp_path / "pred" / "c2.nii.gz", PRED_B)
    result = evaluate(tmp_path / "pred", tmp_path / "gt")
    assert result.summary["DSC"].n == 2
    assert result.summary["AVD_mm"].n == 1 and result.summary["AVD_mm"].n_nan == 1
    _, json_path = write_results(result, tmp_path / "out")
    summary = json.loads(json_path.read_text())["metrics"]
    assert summary["precision"]["n_nan"] == 1
    assert summary["AVD_mm"]["paper"].endswith("(1 nan)")
    assert "(1 nan)" in format_table(result)


@pytest.mark.parametrize("pred_affine, pred_shape", [
    (np.diag([0.8, 0.7, 2.5, 1.0]), SHAPE),  # slice thickness differs
    (AFFINE, (6, 10, 11)),  # shape differs
])
def test_grid_mismatch_is_refused(tmp_path, pred_affine, pred_shape):
    _save(tmp_path / "gt.nii.gz", GT_A)
    _save(tmp_path / "pred.nii.gz", np.zeros(pred_shape), affine=pred_affine)
    with pytest.raises(InputError, match="grid differs from ground truth"):
        evaluate(tmp_path / "pred.nii.gz", tmp_path / "gt.nii.gz")


def test_bad_labels_rejected(tmp_path):
    _save(tmp_path / "gt.nii.gz", GT_A)
    with pytest.raises(ValueError, match="labels"):
        evaluate(tmp_path / "gt.nii.gz", tmp_path / "gt.nii.gz", labels=())


def test_nan_to_json_and_back():
    value = {"a": math.nan, "b": [1.0, math.inf, None], "c": (2, "x"), "d": {"e": -math.inf}}
    safe = nan_to_none(value)
    assert safe == {"a": None, "b": [1.0, None, None], "c": [2, "x"], "d": {"e": None}}
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe
    back = none_to_nan(safe)
    assert math.isnan(back["a"]) and math.isnan(back["b"][1]) and math.isnan(back["d"]["e"])
    assert back["b"][0] == 1.0 and back["c"] == [2, "x"]


def test_every_metric_has_display_units():
    assert list(DISPLAY) == list(metrics.METRIC_KEYS)
    assert (DISPLAY["DSC"].scale, DISPLAY["DSC"].digits, DISPLAY["DSC"].unit) == (100.0, 1, "%")
    assert (DISPLAY["HD95_mm"].scale, DISPLAY["HD95_mm"].digits, DISPLAY["HD95_mm"].unit) == (1.0, 2, "mm")
