"""Every file of pydicom's bundled test corpus, alone in a folder, through ``pancreas-seg convert-dicom``.

Odd, broken and exotic DICOM (multi-frame, colour, SEG, RT, big endian, deflated, cut files, every
compression) must end in a NIfTI that loads (exit 0) or one ``error:`` line (exit 2): never an
uncaught exception, never a file or temporary left behind by a failure.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from pancreas_seg.cli import main
from pancreas_seg.console import EXIT_USER_ERROR
from pancreas_seg.io.dicom import read_dicom_series
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import read_nifti
from pancreas_seg.io.scan import Scan

CORPUS = sorted(path for path in get_testdata_files() if Path(path).is_file())  # local only: nothing is fetched


@pytest.mark.parametrize("source", CORPUS, ids=[Path(path).name for path in CORPUS])
def test_convert_dicom_never_crashes_on_the_pydicom_corpus(tmp_path, capsys, source):
    folder, out_dir = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out_dir.mkdir()
    shutil.copy(source, folder)
    out = out_dir / "scan.nii.gz"
    code = main(["convert-dicom", str(folder), "-o", str(out)])
    err = capsys.readouterr().err
    assert code in (0, EXIT_USER_ERROR), err
    assert "Traceback" not in err
    if code == 0:
        assert [p.name for p in out_dir.iterdir()] == ["scan.nii.gz"]
        assert read_nifti(out).array.ndim == 3
    else:
        assert [line for line in err.splitlines() if line.startswith("error: ")], err
        assert list(out_dir.iterdir()) == []


def test_a_dataset_without_sop_class_or_pixels_does_not_block_its_series(tmp_path):
    """Found by the corpus: such a stray file (private data) used to fail the whole folder as "corrupt"."""
    array = np.arange(3 * 8 * 10, dtype=np.int16).reshape(3, 8, 10) - 1000
    scan = Scan(array=array, affine=np.diag([-0.8, -0.8, 2.0, 1.0]), modality="CT", source={})
    write_dicom_series(scan, tmp_path / "series", patient_id="P")
    shutil.copy(get_testdata_file("nested_priv_SQ.dcm"), tmp_path / "series")
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "series").array, scan.array)


@pytest.mark.parametrize("source", CORPUS, ids=[Path(path).name for path in CORPUS])
def test_predict_never_crashes_on_the_pydicom_corpus(tmp_path, capsys, runs, source):
    """The same corpus through ``predict`` with a tiny model and every optional output: exit 0 with
    all outputs, 2 with one line and nothing written, or 1 with the mask kept and the failed
    optional outputs named; a hang would show as the suite timing out."""
    folder, out_dir = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out_dir.mkdir()
    shutil.copy(source, folder)
    code = main(["predict", str(folder), "-o", str(out_dir / "scan.nii.gz"), "--model", str(runs["tiny"]),
                 "--modality", "CT", "--qc", "--save-probability", "--dicom-seg"])
    err = capsys.readouterr().err
    assert code in (0, 1, EXIT_USER_ERROR), err
    assert "Traceback" not in err
    written = sorted(p.name for p in out_dir.iterdir())
    assert not [name for name in written if name.startswith(".")], written  # no temporaries
    if code == EXIT_USER_ERROR:
        assert [line for line in err.splitlines() if line.startswith("error: ")] and written == [], err
    else:
        assert {"scan.nii.gz", "scan.json"} <= set(written)
        assert read_nifti(out_dir / "scan.nii.gz", kind="label").array.ndim == 3


# ---------------------------------------------------------------------------
# one output rule: an output replaces only a file of its own kind, checked before any work
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("victim", ["case.nii.gz", "case.json"])
def test_summarize_never_writes_its_table_over_a_mask_or_report(tmp_path, capsys, victim):
    from tests.test_cli_predict_evaluate import one_error_line

    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / victim
    target.write_bytes(b"precious")
    assert main(["summarize", str(tmp_path / "out"), "-o", str(target)]) == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert str(target) in line and "cohort table must be named *.csv" in line
    assert target.read_bytes() == b"precious"


def test_evaluate_refuses_an_output_that_is_a_file_before_scoring(tmp_path, capsys):
    from tests.test_cli_predict_evaluate import _label

    _label(np.ones((2, 4, 4)), tmp_path / "pred.nii.gz")
    _label(np.ones((2, 4, 4)), tmp_path / "gt.nii.gz")
    (tmp_path / "report").write_text("precious")
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--gt", str(tmp_path / "gt.nii.gz"),
                 "-o", str(tmp_path / "report"), "--quiet"])
    assert code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before any metric was computed or printed
    assert captured.err.strip() == f"error: {tmp_path / 'report'}: is a file; -o names a folder to write into"
    assert (tmp_path / "report").read_text() == "precious"


def test_convert_dicom_refuses_a_folder_as_its_output(tmp_path, capsys):
    from tests.test_cli_predict_evaluate import one_error_line

    (tmp_path / "in").mkdir()
    (tmp_path / "x.nii.gz").mkdir()
    assert main(["convert-dicom", str(tmp_path / "in"), "-o", str(tmp_path / "x.nii.gz")]) == EXIT_USER_ERROR
    assert "is a folder" in one_error_line(capsys)


def test_a_batch_whose_case_outputs_collide_is_refused_before_anything_is_written(tmp_path, capsys, runs):
    from pancreas_seg.io.nifti import write_nifti
    from tests.test_cli_predict_evaluate import ct_scan, one_error_line

    batch = tmp_path / "scans"
    batch.mkdir()
    for case in ("x", "x_prob"):  # case x's probability map would be named like case x_prob's mask
        write_nifti(ct_scan(), batch / f"{case}.nii.gz")
    out = tmp_path / "out"
    code = main(["predict", str(batch), "-o", str(out), "--model", str(runs["identity"]), "--save-probability",
                 "--quiet"])
    assert code == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert str(out / "x_prob.nii.gz") in line and "'x'" in line and "'x_prob'" in line
    assert not out.exists() or not any(out.iterdir())


def test_a_run_config_without_a_section_is_refused_and_a_missing_key_changes_the_reported_hash(tmp_path, capsys,
                                                                                                runs):
    import json

    from pancreas_seg.config import config_hash
    from pancreas_seg.io.nifti import write_nifti
    from pancreas_seg.run_folder import RunFolder
    from tests.test_cli_predict_evaluate import ct_scan, one_error_line

    source = RunFolder(runs["identity"])
    payload = json.loads(source.config_path.read_text())
    image = tmp_path / "ct.nii.gz"
    write_nifti(ct_scan(), image)

    no_data = RunFolder(shutil.copytree(runs["identity"], tmp_path / "no_data"))
    no_data.config_path.write_text(json.dumps({**payload, "config": {k: v for k, v in payload["config"].items()
                                                                      if k != "data"}}))
    code = main(["predict", str(image), "-o", str(tmp_path / "m.nii.gz"), "--model", str(no_data.root)])
    assert code == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert str(no_data.config_path) in line and "section(s) ['data'] missing" in line
    assert not (tmp_path / "m.nii.gz").exists()

    older = RunFolder(shutil.copytree(runs["identity"], tmp_path / "older"))
    config = json.loads(json.dumps(payload["config"]))
    del config["model"]["baseline_batch_norm"]
    older.config_path.write_text(json.dumps({**payload, "config": config, "config_hash": "written-by-old"}))
    read, used = older.read_config()
    assert used == config_hash(read) != "written-by-old"


def test_evaluate_takes_a_predict_folder_with_probability_maps_as_it_stands(tmp_path, capsys, runs):
    from pancreas_seg.io.nifti import write_nifti
    from tests.test_cli_predict_evaluate import ct_scan

    scans, out, gt = tmp_path / "scans", tmp_path / "out", tmp_path / "gt"
    scan = ct_scan()
    write_nifti(scan, scans / "case_1.nii.gz")
    assert main(["predict", str(scans), "-o", str(out), "--model", str(runs["identity"]), "--save-probability",
                 "--quiet"]) == 0
    assert (out / "case_1_prob.nii.gz").is_file()
    truth = np.zeros(scan.shape, np.uint8)
    truth[2:5, 10:20, 8:16] = 1
    write_nifti(Scan(truth, scan.affine, "CT"), gt / "pancreas_0001.nii.gz")  # paired by its case number
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(out), "--gt", str(gt), "--quiet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "pancreas_0001" in printed


def test_evaluate_reports_cases_with_both_masks_empty_apart(tmp_path, capsys):
    import json

    from tests.test_cli_predict_evaluate import _label

    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        _label(np.zeros((2, 4, 4)), tmp_path / side / "case_1.nii.gz")
        full = np.zeros((2, 4, 4))
        full[0, :2, :2] = 1
        _label(full, tmp_path / side / "case_2.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "-o",
                 str(tmp_path / "eval"), "--quiet"]) == 0
    assert "1 of these with both masks empty (DSC = JI = 1 when both masks are empty" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["both_empty"]["n"] == 1 and summary["both_empty"]["cases"] == ["case_1"]


# ---------------------------------------------------------------------------
# intensity sanity on the scanned field, for DICOM as for NIfTI
# ---------------------------------------------------------------------------

def _uncalibrated_ct() -> Scan:
    """CT stored without its rescale intercept (air at about +24) inside -2000 outside-field padding."""
    from tests.test_cli_predict_evaluate import ct_scan

    scan = ct_scan()
    array = scan.array.astype(np.int16) + 1024
    array[:, :3, :] = -2000  # the padding alone would pass a low-percentile "air" test
    return Scan(array, scan.affine, "CT")


def test_a_nifti_ct_without_its_rescale_intercept_is_refused_despite_its_padding(tmp_path, capsys, runs):
    from pancreas_seg.io.nifti import write_nifti
    from tests.test_cli_predict_evaluate import one_error_line

    write_nifti(_uncalibrated_ct(), tmp_path / "ct.nii.gz")
    code = main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "m.nii.gz"), "--model",
                 str(runs["identity"])])
    assert code == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert "does not look like HU-calibrated CT" in line and "scanned field" in line
    assert not (tmp_path / "m.nii.gz").exists()


def test_a_dicom_ct_without_its_rescale_intercept_is_refused(tmp_path, capsys, runs):
    from tests.test_cli_predict_evaluate import ct_scan, one_error_line

    shifted = ct_scan()
    shifted = Scan(shifted.array.astype(np.int16) + 1024, shifted.affine, "CT")  # all positive: uint16, no rescale
    write_dicom_series(shifted, tmp_path / "series", patient_id="P")
    code = main(["predict", str(tmp_path / "series"), "-o", str(tmp_path / "m.nii.gz"), "--model",
                 str(runs["identity"])])
    assert code == EXIT_USER_ERROR
    assert "does not look like HU-calibrated CT" in one_error_line(capsys)
    assert not (tmp_path / "m.nii.gz").exists()


def test_signed_ct_pixels_declared_unsigned_are_refused_as_corrupt_even_with_modality_given(tmp_path, capsys, runs):
    import pydicom

    from tests.test_cli_predict_evaluate import ct_scan, one_error_line

    for path in write_dicom_series(ct_scan(), tmp_path / "series", patient_id="P"):
        dataset = pydicom.dcmread(path)
        assert dataset.PixelRepresentation == 1
        dataset.PixelRepresentation = 0  # -1000 HU now reads as 64,536
        dataset.save_as(path)
    code = main(["predict", str(tmp_path / "series"), "-o", str(tmp_path / "m.nii.gz"), "--model",
                 str(runs["identity"]), "--modality", "CT"])
    assert code == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert "corrupt CT intensities" in line and "unsigned" in line
    assert not (tmp_path / "m.nii.gz").exists()


def test_the_scanned_field_leaves_out_constant_padding_only():
    from pancreas_seg.io.intensity import _scanned_field

    values = np.array([-2000.0] * 10 + [-1000.0, 0.0, 40.0])
    np.testing.assert_array_equal(_scanned_field(values), [-1000.0, 0.0, 40.0])
    body_only = np.linspace(-1000.0, 300.0, 1000)  # the minimum occurs once: nothing is padding
    assert _scanned_field(body_only).size == 1000


def test_convert_dicom_refuses_signed_ct_pixels_declared_unsigned(tmp_path, capsys):
    import pydicom

    from tests.test_cli_predict_evaluate import ct_scan, one_error_line

    for path in write_dicom_series(ct_scan(), tmp_path / "series", patient_id="P"):
        dataset = pydicom.dcmread(path)
        dataset.PixelRepresentation = 0
        dataset.save_as(path)
    (tmp_path / "out").mkdir()
    assert main(["convert-dicom", str(tmp_path / "series"), "-o", str(tmp_path / "out" / "ct.nii.gz")]) \
        == EXIT_USER_ERROR
    assert "corrupt CT intensities" in one_error_line(capsys)
    assert not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------
# odd paths: one line for the entry at fault, never a traceback or a hang
# ---------------------------------------------------------------------------

def _two_scan_batch(folder: Path) -> Path:
    from pancreas_seg.io.nifti import write_nifti
    from tests.test_cli_predict_evaluate import ct_scan

    for case in ("a", "b"):
        write_nifti(ct_scan(), folder / f"{case}.nii.gz")
    return folder


def test_a_symlink_loop_in_a_batch_fails_that_entry_alone(tmp_path, capsys, caplog, runs):
    import os

    batch = _two_scan_batch(tmp_path / "batch")
    os.symlink(batch / "c.nii.gz", batch / "c.nii.gz")  # a NIfTI-named loop: a case that cannot be read
    os.symlink(batch / "loop2", batch / "loop1")
    os.symlink(batch / "loop1", batch / "loop2")  # an unnamed loop: skipped, with a warning
    code = main(["predict", str(batch), "-o", str(tmp_path / "out"), "--model", str(runs["identity"]), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "c.nii.gz: file does not exist (a broken symbolic link or a symlink loop)" in err
    assert "loop1: skipped" in caplog.text
    assert {"a.nii.gz", "b.nii.gz"} <= {p.name for p in (tmp_path / "out").iterdir()}


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan"])
def test_a_fifo_as_input_is_refused_without_opening_it(tmp_path, capsys, runs, name):
    import os

    from tests.test_cli_predict_evaluate import one_error_line

    os.mkfifo(tmp_path / name)  # opening it for reading would block for ever
    code = main(["predict", str(tmp_path / name), "-o", str(tmp_path / "m.nii.gz"), "--model", str(runs["identity"])])
    assert code == EXIT_USER_ERROR
    assert "neither a regular file nor a folder" in one_error_line(capsys)


def test_a_fifo_inside_a_dicom_folder_is_skipped(tmp_path, caplog):
    import os

    from tests.test_cli_predict_evaluate import ct_scan

    write_dicom_series(ct_scan(), tmp_path / "series", patient_id="P")
    os.mkfifo(tmp_path / "series" / "fifo")
    assert read_dicom_series(tmp_path / "series").shape == ct_scan().shape
    assert "fifo: skipped: not a regular file" in caplog.text


def test_a_nifti_with_a_zero_length_dimension_is_refused(tmp_path, capsys, runs):
    import nibabel as nib

    from tests.test_cli_predict_evaluate import one_error_line

    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.int16), np.eye(4)), str(tmp_path / "empty.nii.gz"))
    code = main(["predict", str(tmp_path / "empty.nii.gz"), "-o", str(tmp_path / "m.nii.gz"), "--model",
                 str(runs["identity"]), "--quiet"])
    assert code == EXIT_USER_ERROR
    assert "empty volume: a dimension has length 0" in one_error_line(capsys)


def _spy_on_prediction(monkeypatch) -> list:
    import pancreas_seg.predict as predict_module

    calls = []
    real = predict_module.predict_scan
    monkeypatch.setattr(predict_module, "predict_scan", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    return calls


def test_a_mask_path_that_is_a_folder_is_refused_before_the_networks_run(tmp_path, capsys, runs, monkeypatch):
    from tests.test_cli_predict_evaluate import one_error_line

    batch = _two_scan_batch(tmp_path / "batch")
    (tmp_path / "out" / "a.nii.gz").mkdir(parents=True)
    calls = _spy_on_prediction(monkeypatch)
    code = main(["predict", str(batch), "-o", str(tmp_path / "out"), "--model", str(runs["identity"]), "--quiet"])
    assert code == EXIT_USER_ERROR and calls == []
    assert "a.nii.gz: is a folder; the output must be a file" in one_error_line(capsys)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.nii.gz"]


def test_an_output_inside_a_regular_file_is_refused_before_the_networks_run(tmp_path, capsys, runs, monkeypatch):
    from tests.test_cli_predict_evaluate import one_error_line

    batch = _two_scan_batch(tmp_path / "batch")
    (tmp_path / "notes").write_text("not a folder")
    calls = _spy_on_prediction(monkeypatch)
    for output in ("notes/m.nii.gz", "notes/sub/m.nii.gz"):
        code = main(["predict", str(batch / "a.nii.gz"), "-o", str(tmp_path / output), "--model",
                     str(runs["identity"]), "--quiet"])
        assert code == EXIT_USER_ERROR and calls == []
        assert "notes" in one_error_line(capsys)
    assert (tmp_path / "notes").read_text() == "not a folder"


# ---------------------------------------------------------------------------
# messages that say what is wrong
# ---------------------------------------------------------------------------

def test_a_truncated_model_file_is_reported_as_damaged(tmp_path, capsys, runs):
    from tests.test_cli_predict_evaluate import ct_scan, one_error_line
    from pancreas_seg.io.nifti import write_nifti

    run = shutil.copytree(runs["identity"], tmp_path / "run")
    model = run / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    code = main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "m.nii.gz"), "--model", str(run)])
    assert code == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert str(model) in line and "damaged model file" in line and "not found" not in line.lower()


def _series_without(tmp_path: Path, tag: str, which: slice) -> Path:
    import pydicom

    from tests.test_cli_predict_evaluate import ct_scan

    paths = write_dicom_series(ct_scan(), tmp_path / "series", patient_id="P")
    for path in paths[which]:
        dataset = pydicom.dcmread(path)
        if tag == "PixelSpacing":
            dataset.ImagerPixelSpacing = dataset.PixelSpacing
        delattr(dataset, tag)
        dataset.save_as(path)
    return tmp_path / "series"


def test_a_slice_without_image_position_is_named_not_reported_as_a_gap(tmp_path):
    from pancreas_seg.errors import InputError

    folder = _series_without(tmp_path, "ImagePositionPatient", slice(3, 4))
    with pytest.raises(InputError) as caught:
        read_dicom_series(folder)
    message = str(caught.value)
    assert "1 image(s) without plane geometry" in message and "lacks ImagePositionPatient" in message
    assert "gap" not in message


def test_a_series_with_imager_pixel_spacing_only_says_why_it_was_skipped(tmp_path, capsys, runs):
    from tests.test_cli_predict_evaluate import one_error_line

    folder = _series_without(tmp_path, "PixelSpacing", slice(None))
    assert main(["convert-dicom", str(folder), "-o", str(tmp_path / "ct.nii.gz")]) == EXIT_USER_ERROR
    line = one_error_line(capsys)
    assert "skipped 8 image(s) without plane geometry" in line and "ImagerPixelSpacing only" in line
    code = main(["predict", str(folder), "-o", str(tmp_path / "m.nii.gz"), "--model", str(runs["identity"])])
    assert code == EXIT_USER_ERROR and "ImagerPixelSpacing only" in one_error_line(capsys)


def test_a_tilted_series_with_a_missing_slice_is_reported_as_tilted(tmp_path):
    from pancreas_seg.errors import InputError
    from tests.test_cli_predict_evaluate import ct_scan

    scan = ct_scan(shape=(10, 32, 24))
    affine = np.array(scan.affine, float)
    affine[1, 2] = affine[2, 2] * np.tan(np.radians(15))  # slice origins drift along y: gantry tilt
    paths = write_dicom_series(Scan(scan.array, affine, "CT"), tmp_path / "series", patient_id="P")
    paths[4].unlink()
    with pytest.raises(InputError, match="gantry tilt of 15.00 degrees"):
        read_dicom_series(tmp_path / "series")


def test_evaluate_does_not_drop_a_prediction_that_is_a_symlink_loop(tmp_path, capsys):
    import os

    from tests.test_cli_predict_evaluate import _label, one_error_line

    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        full = np.zeros((2, 4, 4))
        full[0, :2, :2] = 1
        _label(full, tmp_path / side / "case_1.nii.gz")
    _label(np.zeros((2, 4, 4)), tmp_path / "gt" / "case_2.nii.gz")
    os.symlink("case_2.nii.gz", tmp_path / "pred" / "case_2.nii.gz")  # points at itself
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--quiet"])
    assert code == EXIT_USER_ERROR
    assert "case_2.nii.gz: file does not exist (a broken symbolic link or a symlink loop)" in one_error_line(capsys)
