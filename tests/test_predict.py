"""File-level prediction: finding inputs, naming and writing outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pancreas_seg import predict
from pancreas_seg.errors import InputError
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.scan import Scan
from tests.conftest import OBLIQUE_AFFINE

def _ct(shape=(4, 16, 16)) -> Scan:
    return Scan(np.full(shape, 40, np.int16), OBLIQUE_AFFINE, "CT")


def test_find_inputs_single_and_batch(tmp_path):
    nested = tmp_path / "patient" / "study" / "series"
    write_dicom_series(_ct(), nested, patient_id="P1")
    items, batch = predict.find_inputs(tmp_path / "patient")
    assert not batch and items[0].kind == "dicom" and items[0].case_id == "patient"

    root = tmp_path / "batch"
    write_dicom_series(_ct(), root / "case_b", patient_id="B")
    write_dicom_series(_ct(), root / "case_c", patient_id="C")
    write_nifti(_ct(), root / "case_a.nii.gz")
    (root / ".hidden").mkdir()
    items, batch = predict.find_inputs(root, exclude=root / "out")
    assert batch and [(i.case_id, i.kind) for i in items] == [("case_a", "nifti"), ("case_b", "dicom"),
                                                               ("case_c", "dicom")]
    items, batch = predict.find_inputs(root / "case_a.nii.gz")
    assert not batch and items[0].kind == "nifti"


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no DICOM image series"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not a NIfTI file"),
])
def test_find_inputs_bad_paths(tmp_path, make, problem):
    with pytest.raises(InputError, match=problem):
        predict.find_inputs(make(tmp_path))


def test_output_paths():
    paths = predict.OutputPaths.beside("/o/case.nii.gz")
    assert (paths.probability.name, paths.report.name, paths.qc.name, paths.dicom_seg.name) == (
        "case_prob.nii.gz", "case.json", "case_qc.png", "case_seg.dcm")
    assert predict.OutputPaths.in_folder("/o", "c1").mask == Path("/o/c1.nii.gz")
    with pytest.raises(InputError, match="must end with"):
        predict.OutputPaths.beside("/o/case.png")
