"""Region-of-interest prediction (issue #10): receptive field, crop geometry, agreement with dense
prediction (and a too-small margin that breaks it), fallbacks, bfloat16 copies, batch sizing."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from pancreas_seg import inference, networks, roi
from pancreas_seg.config import DataConfig, ExperimentConfig, ModelConfig, preset, to_dict
from pancreas_seg.io.scan import Scan
from pancreas_seg.metrics import dice
from pancreas_seg.models.build import build_model
from pancreas_seg.models.pnet import build_pnet_msa
from pancreas_seg.train import export_run

SIZE = 64  # px, network grid of the hand-built model
BLUR = 9  # px, side of its box filter: receptive field 9 x 9
SLICE_MM = 2.5  # localisation every 15 mm: every 6th slice
DEPTH = 40
BLOCK = (slice(10, 26), slice(20, 36), slice(24, 44))  # [Z, Y, X] bright block ("pancreas")
BODY_HU, BRIGHT_HU, NOISE_HU = -60.0, 400.0, 60.0


def blur_model() -> keras.Model:
    """fused = sigmoid(20 (mean of the centre slice over a 9 x 9 box - 0.5)): a model whose output
    depends on pixels up to 4 px away, so a crop without margin changes it near the crop's edge."""
    inputs = keras.Input((None, None, 3))
    kernel = np.zeros((BLUR, BLUR, 3, 1), np.float32)
    kernel[:, :, 1, 0] = 20.0 / BLUR ** 2
    conv = keras.layers.Conv2D(1, BLUR, padding="same", name="blur")
    logit = conv(inputs)
    conv.set_weights([kernel, np.array([-10.0], np.float32)])
    return keras.Model(inputs, {"fused": keras.layers.Activation("sigmoid", name="fused")(logit)})


def blur_loaded() -> networks.LoadedModel:
    config = ExperimentConfig(data=DataConfig(crop="none", input_size=SIZE))
    return networks.LoadedModel(Path("blur"), config, "hash", blur_model())


def block_scan(bright: bool = True, seed: int = 0) -> Scan:
    """A [40, 64, 64] CT of noisy soft tissue (so zero padding differs from real pixels) and a bright block."""
    rng = np.random.default_rng(seed)
    array = (BODY_HU + rng.normal(0, NOISE_HU, (DEPTH, SIZE, SIZE))).astype(np.int16)
    if bright:
        array[BLOCK] += np.int16(BRIGHT_HU)
    affine = np.diag([-0.8, -0.8, SLICE_MM, 1.0])
    return Scan(array, affine, "CT", {"path": "synthetic"})


def test_receptive_field_of_pnet_msa_from_its_layers():
    # units 2, 1 conv per unit: conv 3 -> pool (+1, jump 2) -> conv (+2x2) -> deconv 4/2 (+1x2, jump 1)
    # -> conv (+2) = 12 px; alignment = the pool's 2
    small = ModelConfig(units=2, convs_per_unit=1, channels=4)
    assert roi.receptive_field(build_pnet_msa(small, None)) == (12, 2)
    # paper: 5 units x 4 convs, 4 pools: 264 px through the forward branches, 324 after the decoder
    assert roi.receptive_field(build_pnet_msa(ModelConfig(channels=2), None)) == (324, 16)
    assert roi.crop_margin(build_pnet_msa(ModelConfig(channels=2), None)) == (324 // 2 + 16, 16)


def test_crop_box_is_aligned_widened_and_clipped():
    assert roi.crop_box((40, 50, 100, 120), margin=20, alignment=16, size=256) == (16, 80, 80, 144)
    assert roi.crop_box((5, 250, 0, 10), margin=20, alignment=16, size=256) == (0, 256, 0, 32)
    assert roi.crop_box((40, 50, 40, 50), margin=4, alignment=16, size=100) == (0, 100, 0, 100)


def test_trusted_region_spans_to_the_neighbouring_empty_samples():
    samples = [0, 6, 12, 18, 24]
    hits = np.zeros((5, 32, 32), bool)
    hits[2, 10:12, 20:22] = hits[3, 14, 5] = True
    region = roi.trusted_region(samples, hits, depth=30)
    assert (region.z0, region.z1) == (7, 24)
    assert region.box == (0, 15 + roi.INPLANE_SLACK_PX, 0, 32)
    assert roi.trusted_region(samples, np.zeros_like(hits), depth=30) is None
    assert roi.localisation_slices(40, 2.5) == [0, 6, 12, 18, 24, 30, 36, 39]


def test_touches_open_edge_ignores_the_grid_edges():
    region = roi.Roi(0, 4, (0, 8, 8, 16))
    mask = np.zeros((4, 8, 8), bool)
    mask[0, 0, 3] = True  # first slice and first row: both edges of the grid
    assert not roi.touches_open_edge(mask, region, (10, 32, 32))
    mask[2, 3, 0] = True  # first column: x0 = 8 is open
    assert roi.touches_open_edge(mask, region, (10, 32, 32))


@pytest.mark.parametrize("margin_ok", [True, False])
def test_roi_cnn_equals_dense_inside_the_box_only_with_the_receptive_field_margin(margin_ok):
    keras.utils.set_random_seed(0)
    cnn = build_pnet_msa(ModelConfig(units=3, convs_per_unit=2, channels=4), None)
    volume = np.random.default_rng(1).random((5, 96, 96)).astype(np.float32)
    dense = networks.cnn_probabilities(cnn, volume, 5, context=3)
    margin, alignment = roi.crop_margin(cnn)
    box = (40, 56, 36, 60)
    crop = roi.crop_box(box, margin if margin_ok else 2, alignment, 96)
    assert crop != (0, 96, 0, 96)
    part = networks.cnn_slices(cnn, volume, range(1, 4), crop, 3, context=3)
    y0, y1, x0, x1 = box
    inside = part[:, y0 - crop[0]:y1 - crop[0], x0 - crop[2]:x1 - crop[2]]
    if margin_ok:
        np.testing.assert_allclose(inside, dense[1:4, y0:y1, x0:x1], atol=1e-5)
    else:
        assert np.abs(inside - dense[1:4, y0:y1, x0:x1]).max() > 1e-3


def _roi_and_dense(scan: Scan, model: networks.LoadedModel) -> tuple[inference.Prediction, inference.Prediction]:
    options = inference.PredictOptions(batch_size=4, precision="float32")
    dense = inference.predict_scan(scan, [model], inference.PredictOptions(batch_size=4, precision="float32",
                                                                           dense=True))
    return inference.predict_scan(scan, [model], options), dense


def test_roi_prediction_matches_dense_on_a_controlled_model():
    prediction, dense = _roi_and_dense(block_scan(), blur_loaded())
    assert prediction.work.mode == "roi" and dense.work.mode == "dense"
    assert prediction.work.slices_fraction < 1 and prediction.work.pixels_fraction < 1
    assert dense.mask.sum() > 1000
    assert dice(prediction.mask, dense.mask) >= 0.99
    assert not (dense.mask & ~prediction.mask.astype(bool)).any()  # no dense voxel lost
    region = prediction.work.roi
    inside = (slice(region.z0, region.z1), slice(*region.box[:2]), slice(*region.box[2:]))
    np.testing.assert_allclose(prediction.probability[inside], dense.probability[inside], atol=1e-5)


def test_default_is_dense_on_a_gpu_and_the_region_elsewhere(monkeypatch):
    scan, model = block_scan(), blur_loaded()
    monkeypatch.setattr(inference, "on_gpu", lambda: True)
    assert inference.predict_scan(scan, [model], inference.PredictOptions(precision="float32")).work.mode == "dense"
    asked = inference.PredictOptions(precision="float32", dense=False)
    assert inference.predict_scan(scan, [model], asked).work.mode == "roi"
    monkeypatch.setattr(inference, "on_gpu", lambda: False)
    assert inference.predict_scan(scan, [model], inference.PredictOptions(precision="float32")).work.mode == "roi"


def test_too_small_a_margin_changes_the_roi_prediction(monkeypatch):
    monkeypatch.setattr(roi, "crop_margin", lambda model: (0, 1))
    prediction, dense = _roi_and_dense(block_scan(), blur_loaded())
    region = prediction.work.roi
    assert prediction.work.mode == "roi" and region.box != (0, SIZE, 0, SIZE)
    inside = (slice(region.z0, region.z1), slice(*region.box[:2]), slice(*region.box[2:]))
    assert np.abs(prediction.probability[inside] - dense.probability[inside]).max() > 1e-3


def test_roi_margin_option_trades_exactness_for_work():
    scan, model = block_scan(), blur_loaded()
    exact = inference.predict_scan(scan, [model], inference.PredictOptions(precision="float32"))
    narrow = inference.predict_scan(scan, [model], inference.PredictOptions(precision="float32", roi_margin=0))
    assert narrow.work.pixels_fraction < exact.work.pixels_fraction
    assert np.abs(narrow.probability - exact.probability).max() > 1e-3


def test_nothing_localised_falls_back_to_dense():
    prediction, dense = _roi_and_dense(block_scan(bright=False), blur_loaded())
    assert prediction.work.mode == "dense_no_pancreas"
    assert prediction.work.slices_fraction == pytest.approx(1.0)  # the localisation slices are reused
    np.testing.assert_allclose(prediction.probability, dense.probability, atol=1e-6)


def test_a_region_costing_nearly_dense_work_is_predicted_densely_at_once(monkeypatch):
    monkeypatch.setattr(roi, "DENSE_INSTEAD_FRACTION", 0.05)  # the block's region costs more than this
    prediction, dense = _roi_and_dense(block_scan(), blur_loaded())
    assert prediction.work.mode == "dense_large_region" and prediction.work.roi is not None
    assert prediction.work.slices_fraction == pytest.approx(1.0)  # no slice computed twice
    np.testing.assert_allclose(prediction.probability, dense.probability, atol=1e-6)


def test_region_share_counts_slices_crops_and_the_birnn_margin():
    region = roi.Roi(10, 20, (0, 32, 0, 32))
    assert roi.region_share(region, [(0, 64, 0, 32)], 40, 64, birnn=False) == pytest.approx(10 * 0.5 / 40)
    with_birnn = (10 + 2 * roi.BIRNN_MARGIN_SLICES) * 0.5 / 40
    assert roi.region_share(region, [(0, 64, 0, 32)], 40, 64, birnn=True) == pytest.approx(with_birnn)
    clipped = roi.region_share(roi.Roi(0, 40, (0, 64, 0, 64)), [(0, 64, 0, 64)], 40, 64, birnn=True)
    assert clipped == pytest.approx(1.0)


def test_a_mask_reaching_the_open_edge_falls_back_to_dense(monkeypatch):
    monkeypatch.setattr(roi, "INPLANE_SLACK_PX", 0)  # the box ends on the localised pixels
    monkeypatch.setattr(roi, "LOCALISE_FRACTION", 1.9)  # 0.95: only the block's core is localised
    prediction, dense = _roi_and_dense(block_scan(), blur_loaded())
    assert prediction.work.mode == "dense_edge"
    assert 1.0 < prediction.work.slices_fraction < 2.0  # the region's work, then dense less the localisation
    np.testing.assert_array_equal(prediction.mask, dense.mask)


def test_tta_roi_matches_dense():
    model = blur_loaded()
    scan = block_scan()
    options = dict(batch_size=4, precision="float32", tta=True)
    roi_tta = inference.predict_scan(scan, [model], inference.PredictOptions(**options))
    dense_tta = inference.predict_scan(scan, [model], inference.PredictOptions(**options, dense=True))
    assert roi_tta.work.mode == "roi"
    np.testing.assert_array_equal(roi_tta.mask, dense_tta.mask)


def test_birnn_is_rebuilt_at_the_crop_size(tmp_path):
    config = preset("testing")
    config = ExperimentConfig(data=config.data, model=ModelConfig(**{**to_dict(config.model), "name": "cnn_rnn"}),
                              train=config.train)
    size = config.data.input_size
    run = export_run(build_model(config.model, size), config, tmp_path / "run")
    model = networks.load_model(run.root)
    sequence = np.random.default_rng(0).random((1, 5, size, size, 1)).astype(np.float32)
    np.testing.assert_allclose(model.birnn_at(size, size).predict_on_batch(sequence),
                               model.birnn.predict_on_batch(sequence), atol=1e-6)
    assert model.birnn_at(32, 48).predict_on_batch(sequence[:, :, :32, :48]).shape == (1, 5, 32, 48, 1)
    volume = np.random.default_rng(1).random((7, size, size)).astype(np.float32)
    any_size = model.any_size_cnn("float32")
    assert any_size.input_shape == (None, None, None, config.data.context_slices)
    np.testing.assert_allclose(networks.cnn_probabilities(any_size, volume, 3, context=3),
                               networks.cnn_probabilities(model.cnn, volume, 3, context=3), atol=1e-5)


def test_bfloat16_copy_computes_in_bfloat16_and_agrees():
    keras.utils.set_random_seed(0)
    cnn = build_pnet_msa(ModelConfig(units=3, convs_per_unit=2, channels=8), None)
    copy = networks.convolutional_copy(cnn, "bfloat16")
    assert {layer.compute_dtype for layer in copy.layers if isinstance(layer, keras.layers.Conv2D)} == {"bfloat16"}
    volume = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    full = networks.cnn_probabilities(cnn, volume, 4, context=3)
    half = networks.cnn_probabilities(copy, volume, 4, context=3)
    assert half.dtype == np.float32 and np.abs(half - full).max() < 0.05


def test_precision_auto_follows_the_cpu_flags(tmp_path, monkeypatch):
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu sse avx512f avx512_bf16\n")  # measured slower in bfloat16
    assert networks.cpu_has_bfloat16(with_bf16) and not networks.cpu_has_bfloat16(without)
    assert not networks.cpu_has_bfloat16(tmp_path / "missing")
    monkeypatch.setattr(networks, "CPUINFO", without)
    assert networks.resolve_precision("auto") == "float32"
    assert networks.resolve_precision("bfloat16") == "bfloat16"
    if keras.backend.backend() == "tensorflow":
        monkeypatch.setattr(networks, "CPUINFO", with_bf16)
        assert networks.resolve_precision("auto") == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        networks.resolve_precision("float16")


def test_precision_auto_keeps_float32_where_the_map_is_upsampled():
    assert networks.resolve_precision("auto", "openvino") == "auto"  # OpenVINO's own CPU default
    assert networks.resolve_precision("auto", "openvino", upsampling=1.25) == "auto"
    assert networks.resolve_precision("auto", "openvino", upsampling=2.1) == "float32"
    assert networks.resolve_precision("auto", "keras", upsampling=2.1) == "float32"
    assert networks.resolve_precision("bfloat16", "openvino", upsampling=3.0) == "bfloat16"  # asked for
    pytest.importorskip("openvino", reason="openvino is part of the default install (setup.py)")
    options = inference.PredictOptions(runtime="openvino")
    assert inference.precision_for_grid(options, 2.08, (2.0, 0.7, 0.8)).precision == "float32"
    assert inference.precision_for_grid(options, 0.39, (2.0, 0.7, 0.8)).precision == "auto"
    assert inference.precision_for_grid(options, 0.85, (2.0, 0.7, 0.8)).precision == "auto"  # 0.85 / 0.7 < 1.25


def test_batch_size_follows_the_memory_of_the_feature_maps():
    cnn = build_pnet_msa(ModelConfig(units=2, convs_per_unit=1, channels=64), None)
    per_slice = 512 * 512 * networks.widest_feature(cnn) * networks.FLOAT32_BYTES * networks.LIVE_FEATURE_MAPS
    assert networks.memory_batch_size(cnn, 512, 512, 64) == networks.CNN_MEMORY_BUDGET_BYTES // per_slice
    assert networks.memory_batch_size(cnn, 16, 16, 5) == 5
    assert networks.memory_batch_size(cnn, 4096, 4096, 8) == 1
    assert networks.memory_batch_size(cnn, 4096, 4096, 8, gpu=True) == 8  # the GPU's memory, not the host's


def test_gpu_is_read_from_the_backend_devices(monkeypatch):
    from pancreas_seg.models import build

    monkeypatch.setattr(keras.distribution, "list_devices", lambda device_type=None: ["cpu:0"])
    assert not build.on_gpu()
    monkeypatch.setattr(keras.distribution, "list_devices", lambda device_type=None: ["gpu:0", "gpu:1"])
    assert build.on_gpu()


def test_cli_dense_and_precision_flags_reach_the_report(tmp_path, runs, capsys):
    from pancreas_seg.cli import main
    from pancreas_seg.io.nifti import read_nifti, write_nifti

    write_nifti(block_scan(), tmp_path / "ct.nii.gz")
    masks = {}
    for name, flags in {"roi": [], "dense": ["--dense", "--precision", "float32"]}.items():
        out = tmp_path / f"{name}.nii.gz"
        assert main(["predict", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--model", str(runs["identity"]),
                     "--quiet", "--modality", "CT", *flags]) == 0, capsys.readouterr().err
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["flags"]["dense"] == (True if name == "dense" else None)  # None: by the device
        assert (report["work"]["mode"] == "dense") == (name == "dense")  # on a CPU the region by default
        if name == "dense":
            assert report["work"]["slices_fraction"] == pytest.approx(1.0)
        assert report["flags"]["precision"] == ("float32" if name == "dense" else "auto")
        masks[name] = read_nifti(out, kind="label").array
    assert masks["dense"].sum() > 0 and dice(masks["roi"], masks["dense"]) >= 0.99
