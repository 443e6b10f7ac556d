"""Output planning called from Python: the checks the command line gets, with the options' Python names."""
from __future__ import annotations

import numpy as np
import pytest

from pancreas_seg.errors import InputError, UsageError
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.scan import Scan
from pancreas_seg.output_plan import plan_outputs
from tests.conftest import OBLIQUE_AFFINE


def _batch(folder, *case_ids):
    for case_id in case_ids:
        write_nifti(Scan(np.full((4, 16, 16), 40, np.int16), OBLIQUE_AFFINE, "CT"), folder / f"{case_id}.nii.gz")
    return folder


def test_a_batch_is_planned_into_its_output_folder(tmp_path):
    plan = plan_outputs(_batch(tmp_path / "in", "b", "a"), tmp_path / "out")
    assert plan.batch and [item.case_id for item in plan.items] == ["a", "b"]
    assert [paths.mask for _, paths in plan.cases] == [tmp_path / "out" / "a.nii.gz", tmp_path / "out" / "b.nii.gz"]


def test_two_inputs_writing_the_same_output_are_refused(tmp_path):
    source = _batch(tmp_path / "in", "x", "x_prob")  # x's probability map would be x_prob's mask
    with pytest.raises(InputError, match="is an output of both case 'x' and case 'x_prob'"):
        plan_outputs(source, tmp_path / "out")


@pytest.mark.parametrize("batch, kwargs, output, problem", [
    (True, {}, "mask.nii.gz", "is a batch folder \\(2 scans\\); output must be an output folder"),
    (True, {"series": "1.2.3"}, "out", "series selects a series in a single DICOM folder"),
    (False, {"dicom_seg": True}, "mask.nii.gz", "dicom_seg needs a DICOM input series"),
    (False, {"num_parts": 2}, "mask.nii.gz", "num_parts and part_id share a batch folder"),
    (True, {"num_parts": 2, "part_id": 2}, "out", "part_id: part id 2 is outside 0..1"),
])
def test_options_that_do_not_fit_the_input_are_refused(tmp_path, batch, kwargs, output, problem):
    source = _batch(tmp_path / "in", "a", "b")
    with pytest.raises(UsageError, match=problem):
        plan_outputs(source if batch else source / "a.nii.gz", tmp_path / output, **kwargs)
