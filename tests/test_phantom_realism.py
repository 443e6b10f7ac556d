"""The realism benchmark's transfer rows: a model's mean DSC on real slices, overall and per patient."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pancreas_seg.config import DataConfig, ExperimentConfig
from pancreas_seg.train import export_run
from tests.conftest import middle_slice_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def realism():
    sys.path.insert(0, str(BENCHMARKS))  # it imports real_transfer from beside itself
    spec = importlib.util.spec_from_file_location("phantom_realism", BENCHMARKS / "phantom_realism.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


def _write_slice(folder: Path, name: str, truth_columns: slice) -> None:
    """A 64 px slice: soft tissue (0 HU) in air, a 10 x 10 px 'gland' of 100 HU; its mask covers
    rows 20-29 and ``truth_columns``."""
    image = np.full((64, 64, 1), -1000, np.int16)
    image[8:56, 8:56] = 0
    image[20:30, 20:30] = 100
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[20:30, truth_columns] = 1
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image.transpose(1, 0, 2), affine), folder / f"{name}_img.nii.gz")
    nib.save(nib.Nifti1Image(mask.transpose(1, 0, 2), affine), folder / f"{name}_seg.nii.gz")


def test_transfer_figures_average_slices_and_patients(realism, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    _write_slice(real, "nihhu_0001_000", slice(20, 30))  # the model's mask exactly: DSC 1
    _write_slice(real, "nihhu_0002_000", slice(25, 35))  # half of it: 2 * 50 / 200 = 0.5
    run = export_run(middle_slice_model(64), ExperimentConfig(data=DataConfig(crop="none", input_size=64)),
                     tmp_path / "run").root  # mask = HU > 40
    figures = realism.transfer_figures(run, real)
    assert figures["real CT: mean DSC"] == [pytest.approx(0.75)]
    assert figures["real CT: patients' mean DSC"] == [pytest.approx(1.0), pytest.approx(0.5)]
    patients = realism.TRANSFER_TARGETS[1]
    assert realism._row(*patients, figures[patients[0]]).endswith("| ok   |")
    assert realism._row(*patients, [0.9, 0.2]).endswith("| MISS |")  # one patient under 0.30


def test_widest_slice_figures_measure_the_slice_with_the_most_pancreas(realism):
    image = np.full((3, 20, 20), -100, np.int16)  # fat everywhere
    mask = np.zeros((3, 20, 20), bool)
    mask[0, 9:11, 9:11] = True  # 4 px
    mask[1, 8:12, 8:12] = True  # 16 px: the widest
    image[1, 0:10, :] = 100  # the upper half of that slice is 80-140 HU tissue
    figures = realism._widest_slice_figures(image, mask, (2.0, 0.5, 0.5))
    assert figures["body fat at the widest pancreas slice %"] == pytest.approx(50.0)
    assert figures["80-140 HU share of the body there %"] == pytest.approx(50.0)
    assert figures["pancreas area there cm2"] == pytest.approx(16 * 0.25 / 100)
