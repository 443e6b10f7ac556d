"""Shared fixtures: tiny synthetic stores that need no phantom generator, and run folders of
tiny models whose output is known (for predict)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from pancreas_seg.config import DataConfig, ExperimentConfig, preset
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.models.build import build_model
from pancreas_seg.train import export_run
from pancreas_seg.io.scan import Scan

# Anisotropic, oblique grid: voxel (x, y, z) = (0.9, 0.7, 2.5) mm, rotated, off-origin.
ANGLE = np.radians(20.0)
OBLIQUE_AFFINE = np.array([
    [-0.9 * np.cos(ANGLE), 0.7 * np.sin(ANGLE), 0.0, 12.0],
    [-0.9 * np.sin(ANGLE), -0.7 * np.cos(ANGLE), 0.0, -7.0],
    [0.0, 0.0, 2.5, 30.0],
    [0.0, 0.0, 0.0, 1.0],
])
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"  # ../shared/data/real, not in the repo


def blob_case(case_id: str, depth: int = 12, size: int = 48, seed: int = 0, modality: str = "CT") -> Case:
    """A box-shaped body with an ellipsoidal 'pancreas' of brighter HU in slices 3..depth-4."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:depth, :size, :size]
    image = np.full((depth, size, size), -1000, np.int16)
    image[:, 4:-4, 6:-6] = 40
    centre = size / 2 + rng.uniform(-4, 4, 2)
    inside = ((y - centre[0]) / 6) ** 2 + ((x - centre[1]) / 9) ** 2 + ((z - depth / 2) / (depth / 2 - 2.5)) ** 2 <= 1
    image[inside] = 100
    image = (image + rng.normal(0, 5, image.shape)).astype(np.int16)
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    if modality == "MRI":
        image = (image.astype(np.float32) + 1000) * 0.5
    return Case(case_id, Scan(image, affine, modality, {"PatientID": case_id}), inside.astype(np.uint8))


@pytest.fixture
def tiny_store(tmp_path: Path) -> CaseStore:
    store = CaseStore.create(tmp_path / "store", "CT")
    for index in range(4):
        store.write_case(blob_case(f"CASE_{index:02d}", seed=index))
    return store


@pytest.fixture
def real_data() -> Path:
    """The real DICOM examples written by other software; skips when the folder is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real DICOM test data folder {REAL_DATA} absent")
    return REAL_DATA


def middle_slice_model(size: int) -> keras.Model:
    """fused = centre slice of the stack (1x1 conv 0, 1, 0): the mask is where the windowed HU > 0.5."""
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="zeros", name="middle")
    outputs = {"fused": conv(inputs)}
    conv.set_weights([np.array([0.0, 1.0, 0.0], np.float32).reshape(1, 1, 3, 1)])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Run folders: ``tiny`` (the untrained testing preset: only shapes matter), ``identity`` and
    ``mri`` (:func:`middle_slice_model` at 64 px, CT and MRI)."""
    root = tmp_path_factory.mktemp("runs")
    testing = preset("testing")
    identity = ExperimentConfig(data=DataConfig(crop="none", input_size=64))
    mri = ExperimentConfig(data=DataConfig(modality="MRI", crop="none", input_size=64))
    return {
        "tiny": export_run(build_model(testing.model, testing.data.input_size), testing, root / "tiny").root,
        "identity": export_run(middle_slice_model(64), identity, root / "identity").root,
        "mri": export_run(middle_slice_model(64), mri, root / "mri").root,
    }
