"""predict never replaces an input, refuses scans unlike its modality, keeps the mask when an
optional output fails, goes on after any per-case failure, and flags what a reviewer should see."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pancreas_seg import predict
from pancreas_seg.cli import main
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import read_nifti, write_nifti
from pancreas_seg.io.scan import Scan
from tests.test_cli_predict_evaluate import AFFINE, ct_scan, one_error_line


def test_output_equal_to_the_input_is_refused_before_anything_is_written(tmp_path, runs, capsys):
    scan_path = tmp_path / "scan.nii.gz"
    write_nifti(ct_scan(), scan_path)
    before = scan_path.read_bytes()
    rc = main(["predict", str(scan_path), "-o", str(scan_path), "--model", str(runs["identity"])])
    assert rc == 2 and "would overwrite the input scan" in one_error_line(capsys)
    assert scan_path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_batch_into_its_own_input_folder_is_refused(tmp_path, runs, capsys):
    batch = tmp_path / "batch"
    for name in ("a", "b_prob"):  # b_prob would also be hit by a's probability output
        write_nifti(ct_scan(), batch / f"{name}.nii.gz")
    before = {p.name: p.read_bytes() for p in batch.iterdir()}
    rc = main(["predict", str(batch), "-o", str(batch), "--model", str(runs["identity"]), "--quiet"])
    assert rc == 2 and "would overwrite the input scan" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in batch.iterdir()} == before


def test_a_ct_model_refuses_an_mr_looking_nifti_unless_told(tmp_path, runs, capsys):
    mr_like = Scan((np.random.default_rng(0).random((8, 32, 24)) * 800).astype(np.int16), AFFINE, "CT")
    write_nifti(mr_like, tmp_path / "mr.nii.gz")
    rc = main(["predict", str(tmp_path / "mr.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--model", str(runs["identity"])])
    line = one_error_line(capsys)
    assert rc == 2 and "does not look like HU-calibrated CT" in line and "--modality" in line
    assert not (tmp_path / "p.nii.gz").exists()
    rc = main(["predict", str(tmp_path / "mr.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--model",
               str(runs["identity"]), "--modality", "CT"])
    assert rc == 0 and (tmp_path / "p.nii.gz").is_file()


def test_an_mri_model_refuses_a_ct_looking_nifti(tmp_path, runs, capsys):
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    rc = main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--model", str(runs["mri"])])
    assert rc == 2 and "does not look like MRI" in one_error_line(capsys)


def test_a_failing_optional_output_keeps_the_mask(tmp_path, runs, capsys, monkeypatch):
    def broken_figure(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(predict, "qc_figure", broken_figure)
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    out = tmp_path / "out" / "p.nii.gz"
    rc = main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--model", str(runs["identity"]), "--qc",
               "--save-probability"])
    line = one_error_line(capsys)
    assert rc == 1 and "qc output not written: RuntimeError: no display" in line
    report = json.loads((tmp_path / "out" / "p.json").read_text())
    assert report["failed_outputs"] == {"qc": "RuntimeError: no display"} and "qc" not in report["outputs"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.json", "p.nii.gz", "p_prob.nii.gz"]


def test_batch_goes_on_after_an_unexpected_failure(tmp_path, runs, capsys, monkeypatch):
    batch = tmp_path / "batch"
    for name in ("a", "b", "c"):
        write_nifti(ct_scan(), batch / f"{name}.nii.gz")
    original = predict.read_input

    def flaky(item, *args, **kwargs):
        if item.case_id == "b":
            raise RuntimeError("decoder crashed")
        return original(item, *args, **kwargs)

    monkeypatch.setattr(predict, "read_input", flaky)
    rc = main(["predict", str(batch), "-o", str(tmp_path / "out"), "--model", str(runs["identity"]), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1 and "2 of 3 scans predicted, 1 failed" in captured.out
    assert captured.err.strip() == "error: b: RuntimeError: decoder crashed"


def test_an_earlier_output_folder_inside_the_batch_is_not_a_case(tmp_path, runs, capsys):
    batch = tmp_path / "batch"
    write_nifti(ct_scan(), batch / "a.nii.gz")
    assert main(["predict", str(batch), "-o", str(batch / "run1"), "--model", str(runs["identity"]), "--quiet"]) == 0
    rc = main(["predict", str(batch), "-o", str(tmp_path / "run2"), "--model", str(runs["identity"]), "--quiet"])
    assert rc == 0 and "1 of 1 scans predicted" in capsys.readouterr().out


def test_report_has_the_absolute_input_and_quality_flags(tmp_path, runs, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    assert main(["predict", "ct.nii.gz", "-o", "p.nii.gz", "--model", str(runs["identity"])]) == 0
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["input"] == str(tmp_path / "ct.nii.gz")
    quality = report["quality"]
    # the bright block is 3 slices of 10x10 voxels of 0.8x0.6x2 mm: 0.29 mL, far under 20 mL
    assert quality["volume_implausible"] and not quality["no_pancreas"] and quality["needs_review"]
    assert quality["abnormal_shape_changes"] == 0  # the same square on every slice
    assert "review: volume_implausible" in capsys.readouterr().out
    empty = Scan(np.full((8, 32, 24), -1000, np.int16), AFFINE, "CT")
    write_nifti(empty, tmp_path / "air.nii.gz")
    assert main(["predict", "air.nii.gz", "-o", "q.nii.gz", "--model", str(runs["identity"])]) == 0
    quality = json.loads((tmp_path / "q.json").read_text())["quality"]
    assert quality["no_pancreas"] and not quality["volume_implausible"] and quality["needs_review"]
    assert read_nifti(tmp_path / "q.nii.gz", kind="label").array.sum() == 0


def test_abnormal_shape_changes_are_located_in_world_mm():
    from pancreas_seg.inference import abnormal_changes_mm

    mask = np.zeros((5, 20, 20), np.uint8)
    mask[1:4, 5:10, 5:10] = 1
    mask[3, 5:10, 5:15] = 1  # slice 3 doubles in width: an abnormal change from slice 2
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[2, 3] = -30.0
    assert abnormal_changes_mm(mask, affine) == pytest.approx([-24.0])


def test_a_series_no_seg_can_be_made_from_is_refused_before_predicting(tmp_path, runs, capsys, monkeypatch):
    series = tmp_path / "series"
    write_dicom_series(ct_scan(), series, patient_id="P1")
    for path in series.iterdir():
        dataset = pydicom.dcmread(path)
        dataset.StudyDate = "20201345"  # month 13
        dataset.save_as(path)
    monkeypatch.setattr(predict, "predict_scan", None)  # would fail loudly if the model ever ran
    rc = main(["predict", str(series), "-o", str(tmp_path / "out" / "p.nii.gz"), "--model", str(runs["identity"]),
               "--dicom-seg"])
    assert rc == 2 and "StudyDate" in one_error_line(capsys)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_series_prefix_is_resolved_once_for_reading_and_the_seg(tmp_path, runs, capsys):
    series = tmp_path / "series"
    write_dicom_series(ct_scan(), series, patient_id="P1")
    uid = str(pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID)
    out = tmp_path / "out" / "p.nii.gz"
    rc = main(["predict", str(series), "-o", str(out), "--model", str(runs["identity"]), "--dicom-seg",
               "--series", uid[:12]])
    assert rc == 0, capsys.readouterr().err
    seg = pydicom.dcmread(tmp_path / "out" / "p_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid


@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_an_output_that_cannot_be_written_fails_first(tmp_path, runs, capsys, command):
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "blocker" / "out"
    args = {"predict": ["predict", str(tmp_path / "ct.nii.gz"), "-o", str(out / "p.nii.gz"), "--model",
                        str(runs["identity"])],
            "evaluate": ["evaluate", "--pred", str(tmp_path / "ct.nii.gz"), "--gt", str(tmp_path / "missing.nii.gz"),
                         "-o", str(out)],
            "train": ["train", "--preset", "testing", "--data", str(tmp_path / "no_store"), "-o", str(out)]}[command]
    rc = main(args)
    line = one_error_line(capsys)
    assert rc == 2 and "cannot write here" in line, line  # before the model, the files or the store are read


def test_an_input_without_a_transform_keeps_its_codes(tmp_path, runs, capsys):
    image = nib.Nifti1Image(ct_scan().array.transpose(2, 1, 0), None)  # no sform, no qform: codes 0
    image.header.set_zooms((0.8, 0.6, 2.0))
    nib.save(image, tmp_path / "raw.nii.gz")
    assert main(["predict", str(tmp_path / "raw.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--model",
                 str(runs["identity"]), "--save-probability"]) == 0
    for name in ("p.nii.gz", "p_prob.nii.gz"):
        header = nib.load(tmp_path / name).header
        assert (int(header["sform_code"]), int(header["qform_code"])) == (0, 0), name
        np.testing.assert_allclose(nib.load(tmp_path / name).affine, nib.load(tmp_path / "raw.nii.gz").affine)
