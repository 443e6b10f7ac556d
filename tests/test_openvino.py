"""The OpenVINO runtime of the CNN (pancreas_seg.openvino_cnn): the same masks as Keras float32, a
conversion made once and kept outside the run folder, and the report naming what ran."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pancreas_seg import inference, networks
from pancreas_seg.config import DataConfig, ExperimentConfig, preset
from pancreas_seg.errors import UsageError
from pancreas_seg.metrics import dice
from pancreas_seg.models.build import build_model
from pancreas_seg.openvino_cnn import OpenVinoCnn, converted_model
from pancreas_seg.train import export_run
from tests.conftest import blob_case, middle_slice_model

pytest.importorskip("openvino", reason="openvino is part of the default install (setup.py)")


def _volume(size: int = 64, depth: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((depth, size, size)).astype(np.float32)


@pytest.mark.parametrize("precision, atol", [("float32", 1e-5), ("auto", 2e-2)])
def test_openvino_probabilities_are_keras_float32s(tmp_path, precision, atol):
    config = preset("testing")
    model = networks.LoadedModel(Path("m"), config, "hash", build_model(config.model, config.data.input_size))
    volume = _volume()
    keras_runner = networks.ModelRunner(model, "float32", 4, {}, "keras")
    openvino_runner = networks.ModelRunner(model, precision, 4, {}, "openvino")
    box = (0, 64, 0, 64)
    expected = keras_runner.cnn_slices(volume, range(10), box)
    got = openvino_runner.cnn_slices(volume, range(10), box)
    np.testing.assert_allclose(got, expected, atol=atol)
    assert openvino_runner.computed_precision in ("float32", "bfloat16")
    if precision == "float32":
        assert openvino_runner.computed_precision == "float32"


def test_openvino_masks_agree_with_keras_float32(tmp_path):
    config = ExperimentConfig(data=DataConfig(crop="none", input_size=64))
    model = networks.load_model(export_run(middle_slice_model(64), config, tmp_path / "run").root)
    scan = blob_case("B", depth=12, size=64).scan
    keras_mask = inference.predict_scan(scan, [model], inference.PredictOptions(runtime="keras", precision="float32",
                                                                                dense=True)).mask
    prediction = inference.predict_scan(scan, [model], inference.PredictOptions(runtime="openvino", dense=True))
    assert keras_mask.sum() > 0 and dice(prediction.mask > 0, keras_mask > 0) >= 0.99
    assert prediction.compute["runtime"] == "openvino"


def test_a_map_upsampled_to_the_scan_is_computed_in_float32(tmp_path):
    config = ExperimentConfig(data=DataConfig(crop="none", input_size=32))  # 2 scan pixels per network pixel
    model = networks.load_model(export_run(middle_slice_model(32), config, tmp_path / "run").root)
    scan = blob_case("B", depth=12, size=64).scan
    keras_mask = inference.predict_scan(scan, [model], inference.PredictOptions(runtime="keras", precision="float32",
                                                                                dense=True)).mask
    prediction = inference.predict_scan(scan, [model], inference.PredictOptions(runtime="openvino", dense=True))
    assert prediction.compute == {"runtime": "openvino", "precision": "float32"}
    assert keras_mask.sum() > 0 and np.array_equal(prediction.mask, keras_mask)


def test_conversion_is_made_once_and_named_by_the_network(tmp_path):
    cnn = networks.convolutional_copy(middle_slice_model(32))
    first = converted_model(cnn, cache=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert converted_model(cnn, cache=tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert first.with_suffix(".bin").is_file() and len(list(tmp_path.iterdir())) == 1
    other = networks.convolutional_copy(middle_slice_model(32))
    other.get_layer("middle").set_weights([np.full((1, 1, 3, 1), 0.3, np.float32)])
    assert converted_model(other, cache=tmp_path) != first
    batch = np.ones((2, 32, 32, 3), np.float32)
    np.testing.assert_allclose(OpenVinoCnn(other, "float32", cache=tmp_path).predict_on_batch(batch), 0.9, atol=1e-6)


def test_runtime_resolution(monkeypatch):
    assert networks.resolve_runtime("keras") == "keras"
    assert networks.resolve_runtime("auto") == "openvino"  # TensorFlow on a CPU with openvino installed
    monkeypatch.setattr(networks, "openvino_installed", lambda: False)
    assert networks.resolve_runtime("auto") == "keras"
    with pytest.raises(UsageError, match="openvino package"):
        networks.resolve_runtime("openvino")
    with pytest.raises(ValueError, match="runtime must be one of"):
        networks.resolve_runtime("tflite")


def test_the_report_names_the_runtime_and_precision(tmp_path, runs):
    from pancreas_seg.cli import main
    from pancreas_seg.io.nifti import write_nifti
    scan_path = tmp_path / "scan.nii.gz"
    write_nifti(blob_case("B", size=64).scan, scan_path)
    for runtime in ("keras", "openvino"):
        out = tmp_path / runtime / "mask.nii.gz"
        assert main(["predict", str(scan_path), "-o", str(out), "--model", str(runs["identity"]),
                     "--runtime", runtime, "--precision", "float32"]) == 0
        report = json.loads(out.with_name("mask.json").read_text())
        assert report["compute"] == {"runtime": runtime, "precision": "float32"}
        assert report["flags"]["runtime"] == runtime
