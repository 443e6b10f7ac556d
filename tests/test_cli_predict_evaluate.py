"""``pancreas-seg predict`` and ``pancreas-seg evaluate`` end to end on tiny files: outputs on the input grid,
exact mask placement, batch mode with a broken scan, refusals as one clear line, hand-worked metrics."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pancreas_seg.cli import main
from pancreas_seg.config import config_hash, preset
from pancreas_seg.io.dicom import read_dicom_series
from pancreas_seg.io.dicom_seg import read_dicom_seg
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import read_nifti, write_nifti
from pancreas_seg.io.scan import Scan
from pancreas_seg.run_folder import RunFolder

ANGLE = np.radians(15.0)
# anisotropic, rotated in-plane, off-origin: (x, y, z) voxel = (0.8, 0.6, 2.0) mm
AFFINE = np.array([
    [-0.8 * np.cos(ANGLE), 0.6 * np.sin(ANGLE), 0.0, 40.0],
    [-0.8 * np.sin(ANGLE), -0.6 * np.cos(ANGLE), 0.0, 25.0],
    [0.0, 0.0, 2.0, -60.0],
    [0.0, 0.0, 0.0, 1.0],
])
BLOCK = (slice(3, 6), slice(20, 30), slice(8, 18))  # [Z, Y, X], bright in the scans below


def ct_scan(shape=(8, 32, 24), seed=0) -> Scan:
    """CT on AFFINE; with crop "none" the in-plane box is 32 px, resized exactly 2x to the 64 px network grid."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1010, -990, size=shape).astype(np.int16)
    array[:, 4:-4, 3:-3] += 900  # body ~ -100 HU (fat): windowed 0.15, so block edges stay below 0.5
    array[BLOCK] = 400
    return Scan(array, AFFINE, "CT")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_predict_dicom_series_writes_everything_on_the_input_grid(tmp_path, runs, capsys):
    series = tmp_path / "series"
    write_dicom_series(ct_scan(), series, patient_id="P1", instance_number_order="shuffled")
    source = read_dicom_series(series)
    out = tmp_path / "out" / "p1.nii.gz"
    rc = main(["predict", str(series), "-o", str(out), "--model", str(runs["tiny"]), "--save-probability",
               "--qc", "--dicom-seg", "--batch-size", "3"])
    assert rc == 0, capsys.readouterr().err
    mask = read_nifti(out, kind="label")
    probability = read_nifti(tmp_path / "out" / "p1_prob.nii.gz", modality="MRI")
    for volume in (mask, probability):
        assert volume.shape == source.shape
        np.testing.assert_allclose(volume.affine, source.affine, atol=1e-6)
    assert set(np.unique(mask.array)) <= {0, 1}
    assert probability.array.dtype == np.float32 and 0 <= probability.array.min() <= probability.array.max() <= 1
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "out" / "p1_seg.dcm", series), mask.array)
    assert (tmp_path / "out" / "p1_qc.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "out" / "p1.json").read_text())
    assert report["input"] == str(series) and report["input_kind"] == "dicom"
    assert set(report["timings_s"]) == {"read", "preprocess", "cnn", "birnn", "postprocess", "write", "total"}
    assert report["models"][0]["config_hash"] == config_hash(preset("testing"))
    assert report["threshold"] == 0.5 and report["flags"]["batch_size"] == 3
    voxel_ml = float(np.prod(source.spacing)) / 1000
    assert report["pancreas_volume_ml"] == pytest.approx(mask.array.sum() * voxel_ml)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_predict_nifti_puts_the_mask_exactly_on_the_bright_block(tmp_path, runs, capsys):
    scan = ct_scan()
    write_nifti(scan, tmp_path / "ct.nii.gz")
    out = tmp_path / "pred.nii.gz"
    rc = main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--model", str(runs["identity"]),
               "--tta", "--largest-component"])
    assert rc == 0, capsys.readouterr().err
    mask = read_nifti(out, kind="label")
    np.testing.assert_allclose(mask.affine, AFFINE, atol=1e-6)
    expected = np.zeros(scan.shape, np.uint8)
    expected[BLOCK] = 1
    np.testing.assert_array_equal(mask.array, expected)
    report = json.loads((tmp_path / "pred.json").read_text())
    assert report["slice_range"] == [3, 5] and report["flags"]["tta"] and report["modality"] == "CT"


def test_batch_reports_a_broken_scan_and_writes_the_others(tmp_path, runs, capsys):
    batch = tmp_path / "batch"
    write_nifti(ct_scan(seed=1), batch / "case_a.nii.gz")
    write_dicom_series(ct_scan(seed=2), batch / "case_b", patient_id="B")
    (batch / "case_c.nii.gz").write_bytes(b"this is not a nifti file")
    out = tmp_path / "out"
    rc = main(["predict", str(batch), "-o", str(out), "--model", str(runs["identity"]), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: case_c:") and "case_c.nii.gz" in errors[0]
    assert "2 of 3 scans predicted, 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["case_a.json", "case_a.nii.gz", "case_b.json", "case_b.nii.gz"]
    assert read_nifti(out / "case_b.nii.gz", kind="label").shape == ct_scan().shape


@pytest.mark.parametrize("case, problem", [
    ("modality", "scan is MRI but model"),
    ("unloadable", "cannot load the model"),
    ("no_config", "no config.json beside the model"),
    ("seg_for_nifti", "--dicom-seg needs a DICOM input"),
    ("different_preprocessing", "preprocessing differs"),
    ("missing_input", "does not exist"),
    ("nan", "NaN"),
])
def test_predict_refusals_are_one_line(tmp_path, runs, capsys, case, problem):
    image = tmp_path / "ct.nii.gz"
    write_nifti(ct_scan(), image)
    args = ["predict", str(image), "-o", str(tmp_path / "o" / "m.nii.gz"), "--model", str(runs["identity"])]
    if case == "modality":
        args += ["--modality", "MRI"]
    elif case == "unloadable":
        broken = RunFolder(tmp_path / "broken")
        broken.root.mkdir()
        broken.write_config(RunFolder(runs["identity"]).read_config()[0])
        with zipfile.ZipFile(broken.model_path, "w") as archive:  # a whole archive, but no Keras model
            archive.writestr("notes.txt", "not a model")
        args[-1] = str(broken.root)
    elif case == "no_config":
        lonely = tmp_path / "lonely.keras"
        lonely.write_bytes((runs["identity"] / "model.keras").read_bytes())
        args[-1] = str(lonely)
    elif case == "seg_for_nifti":
        args += ["--dicom-seg"]
    elif case == "different_preprocessing":
        args += ["--model", str(runs["tiny"])]
    elif case == "missing_input":
        args[1] = str(tmp_path / "nothing_here")
    elif case == "nan":
        nan = Scan(np.full((3, 8, 8), np.nan, np.float32), AFFINE, "CT")
        write_nifti(nan, image)
    assert main(args) == 2
    assert problem in one_error_line(capsys)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_modality_of_a_dicom_series_is_checked(tmp_path, runs, capsys):
    write_dicom_series(ct_scan(), tmp_path / "s", patient_id="P")
    assert main(["predict", str(tmp_path / "s"), "-o", str(tmp_path / "m.nii.gz"), "--model", str(runs["mri"])]) == 2
    assert "scan is CT but model" in one_error_line(capsys)


# --- evaluate -----------------------------------------------------------------------

EVAL_AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # voxel 1 x 1 x 2 mm = 0.002 mL


def _label(mask: np.ndarray, path: Path, affine=EVAL_AFFINE) -> None:
    write_nifti(Scan(mask.astype(np.uint8), affine, "CT"), path)


def test_evaluate_reproduces_hand_worked_metrics(tmp_path, capsys):
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[0, 0, 0:3] = 1
    gt[1, 0, 0:3] = 2  # label 2 (tumour) counts with --label 1 2: 6 voxels
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, 0, 0:3] = 1  # 3 overlap
    pred[0, 3, 3] = 1  # 1 false positive: 4 voxels
    for folder, mask in (("pred", pred), ("gt", gt)):
        (tmp_path / folder).mkdir()
        _label(mask, tmp_path / folder / "case_1.nii.gz")
    rc = main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--label", "1", "2",
               "-o", str(tmp_path / "eval"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    (row,) = list(csv.DictReader((tmp_path / "eval" / "per_case.csv").open()))
    # DSC = 2*3/(4+6) = 0.6; JI = 3/(4+6-3) = 3/7; precision 3/4; recall 3/6;
    # volumes 4 and 6 voxels x 0.002 mL; RVE = (0.008 - 0.012)/0.012 = -1/3
    expected = {"DSC": 0.6, "JI": 3 / 7, "precision": 0.75, "recall": 0.5, "volume_pred_ml": 0.008,
                "volume_gt_ml": 0.012, "RVE": -1 / 3}
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value, abs=1e-6), key
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_cases"] == 1 and summary["labels"] == [1, 2]
    assert summary["metrics"]["DSC"]["mean"] == pytest.approx(0.6)
    out = capsys.readouterr().out
    assert "case_1" in out and "60.0" in out


def test_evaluate_refuses_different_grids(tmp_path, capsys):
    _label(np.ones((2, 4, 4)), tmp_path / "pred.nii.gz")
    _label(np.ones((2, 4, 4)), tmp_path / "gt.nii.gz", affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--gt", str(tmp_path / "gt.nii.gz"),
                 "--quiet"]) == 2
    assert "grid differs" in one_error_line(capsys)
