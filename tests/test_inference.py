"""Inference library: mask placement on the scan grid, TTA, model averaging, largest component,
bounded CNN batches, input discovery, model loading checks, the BiRNN stage (all tiny, no training)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from pancreas_seg import inference, networks
from pancreas_seg.config import DataConfig, ExperimentConfig, ModelConfig, preset, to_dict
from pancreas_seg.data.preprocess import InplaneTransform, plan_inplane, prepare_volume
from pancreas_seg.errors import InputError
from pancreas_seg.io.orientation import to_canonical
from pancreas_seg.io.scan import Scan
from pancreas_seg.train import export_run
from tests.conftest import OBLIQUE_AFFINE, middle_slice_model
from tests.io.test_orientation import stored_as

BLOCK = (slice(2, 4), slice(10, 20), slice(5, 15))  # expected mask voxels [Z, Y, X], asymmetric in X
SHAPE = (6, 32, 48)  # [Z, Y, X]: not square, so the in-plane box is padded
AIR_HU, BRIGHT_HU = -1000, 400


def loaded(cnn: keras.Model, config: ExperimentConfig, birnn: keras.Model | None = None, name: str = "m") -> networks.LoadedModel:
    return networks.LoadedModel(Path(name), config, "hash", cnn, birnn)


def identity_config(size: int, modality: str = "CT") -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(modality=modality, crop="none", input_size=size))


def bright_block_scan() -> Scan:
    array = np.full(SHAPE, AIR_HU, np.int16)
    array[BLOCK] = BRIGHT_HU
    return Scan(array, OBLIQUE_AFFINE, "CT", {"path": "synthetic"})


def test_known_probability_map_lands_on_expected_voxels():
    # crop "none" on 32 x 48: square box rows -8..40, cols 0..48, resized to 96 (2x): scan voxel (y, x)
    # covers network pixels [2(y+8), 2(y+8)+2) x [2x, 2x+2). Downsampling 2x with linear interpolation
    # samples between those two pixels, so a block of whole voxels comes back exactly.
    transform = plan_inplane(np.zeros(SHAPE), (2.5, 0.7, 0.9), "CT", DataConfig(crop="none", input_size=96))
    assert transform.box == (-8, 40, 0, 48)
    network = np.zeros((SHAPE[0], 96, 96), np.float32)
    network[2:4, 2 * (10 + 8):2 * (20 + 8), 2 * 5:2 * 15] = 0.9
    probability, mask = inference.postprocess(network, transform, threshold=0.5)
    expected = np.zeros(SHAPE, np.uint8)
    expected[BLOCK] = 1
    assert probability.shape == SHAPE and probability.dtype == np.float32
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("tta", [False, True])
def test_predict_scan_puts_mask_on_the_bright_block(tta):
    # middle-slice model: probability = normalised HU (400 HU -> 1, air -> 0); with TTA a wrong flip-back
    # would mirror the (X-asymmetric) block and average it to 0.5, which fails the > 0.5 threshold.
    scan = bright_block_scan()
    config = identity_config(96)
    prediction = inference.predict_scan(scan, [loaded(middle_slice_model(96), config)],
                                        inference.PredictOptions(tta=tta, batch_size=4))
    expected = np.zeros(SHAPE, np.uint8)
    expected[BLOCK] = 1
    np.testing.assert_array_equal(prediction.mask, expected)
    assert prediction.threshold == config.train.threshold
    assert set(prediction.timings) >= {"preprocess", "cnn", "birnn", "postprocess"}


def test_models_are_averaged():
    scan = bright_block_scan()
    config = identity_config(96)
    zeros = keras.Model(inputs := keras.Input((96, 96, 3)), {"fused": keras.layers.Conv2D(
        1, 1, use_bias=False, kernel_initializer="zeros")(inputs)})
    models = [loaded(middle_slice_model(96), config), loaded(zeros, config)]
    prediction = inference.predict_scan(scan, models)
    assert prediction.probability.max() == pytest.approx(0.5, abs=1e-6)  # (1 + 0) / 2
    assert prediction.mask.sum() == 0  # 0.5 is not > 0.5
    # averaged map: inside 1/2, edge voxels 0.875/2, corners 0.875^2/2 = 0.38, outside <= 0.125/2 (see the
    # test above): a 0.35 threshold keeps exactly the block
    assert inference.predict_scan(scan, models, inference.PredictOptions(threshold=0.35)).mask.sum() == 2 * 10 * 10


def test_cnn_runs_in_bounded_batches():
    seen = []

    class Spy:
        def predict_on_batch(self, batch):
            seen.append(batch.shape)
            return {"fused": batch[..., 1:2]}

    volume = np.random.default_rng(0).random((11, 8, 8)).astype(np.float32)
    out = networks.cnn_probabilities(Spy(), volume, batch_size=4, context=3)
    assert [s[0] for s in seen] == [4, 4, 4] and all(s[1:] == (8, 8, 3) for s in seen)
    np.testing.assert_array_equal(out, volume)


def test_modality_mismatch_is_refused():
    scan = bright_block_scan()
    with pytest.raises(InputError, match="scan is CT but model .* trained on MRI"):
        inference.predict_scan(scan, [loaded(middle_slice_model(96), identity_config(96, "MRI"))])


def test_birnn_stage_of_cnn_rnn_runs_on_windows_of_its_training_length(tmp_path):
    from pancreas_seg.models.build import build_model

    config = preset("testing")
    config = ExperimentConfig(data=config.data, model=ModelConfig(**{**to_dict(config.model), "name": "cnn_rnn"}),
                              train=config.train)
    size, length = config.data.input_size, config.data.sequence_length
    model = build_model(config.model, size)
    run = export_run(model, config, tmp_path / "run")
    loaded_model = networks.load_model(run.root)
    assert loaded_model.birnn is not None
    volume = np.random.default_rng(0).random((7, size, size)).astype(np.float32)
    timings: dict[str, float] = {}
    both = inference.model_probabilities(networks.ModelRunner(loaded_model, "float32", 3, timings), volume)
    assert both.shape == (7, size, size) and both.dtype == np.float32 and timings["birnn"] > 0
    # the BiRNN part is the one inside the saved model: the whole CNN-RNN on each window, averaged
    stacks = np.stack([np.moveaxis(volume[np.clip([k - 1, k, k + 1], 0, 6)], 0, -1) for k in range(7)])
    full = keras.saving.load_model(run.model_path, safe_mode=True, compile=False)
    sums, counts = np.zeros_like(both), np.zeros(7)
    for start in networks.birnn_windows(7, length):
        sums[start:start + length] += np.asarray(full.predict_on_batch(stacks[None, start:start + length]))[0, ..., 0]
        counts[start:start + length] += 1
    np.testing.assert_allclose(both, sums / counts[:, None, None], atol=1e-4)


# --- models ----------------------------------------------------------------------

def _save_run(folder: Path, config: ExperimentConfig, model: keras.Model) -> Path:
    return export_run(model, config, folder).root


def test_load_models_refuses_different_preprocessing(tmp_path):
    a = _save_run(tmp_path / "a", identity_config(16), middle_slice_model(16))
    b = _save_run(tmp_path / "b", ExperimentConfig(data=DataConfig(crop="body", input_size=16)), middle_slice_model(16))
    assert len(networks.load_models([a, a / "model.keras"])) == 2
    with pytest.raises(InputError, match="crop 'body' vs 'none'"):
        networks.load_models([a, b])


def test_load_model_refusals(tmp_path):
    run = _save_run(tmp_path / "run", identity_config(16), middle_slice_model(16))
    lonely = tmp_path / "lonely" / "model.keras"
    lonely.parent.mkdir()
    lonely.write_bytes((run / "model.keras").read_bytes())
    with pytest.raises(InputError, match="no config.json beside the model"):
        networks.load_model(lonely)
    (run / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="damaged model file"):
        networks.load_model(run)
    with pytest.raises(InputError, match="does not exist"):
        networks.load_model(tmp_path / "nope")


def test_inplane_transform_roundtrip_sanity():
    # invert() of a transform with a box past the image keeps only the in-image part
    transform = InplaneTransform((4, 6), (-1, 5, 0, 6), 6)
    probability = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    np.testing.assert_array_equal(transform.invert(probability)[0], probability[0, 1:5])


def neighbourhood_model(size: int) -> keras.Model:
    """A fixed random 3x3 convolution over the 3-slice stack: its output depends on which plane
    the slices are and on in-plane direction, so storage order would show."""
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                               kernel_initializer=keras.initializers.RandomNormal(seed=3))
    return keras.Model(inputs, {"fused": conv(inputs)})


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "A", "S"), ("S", "P", "L"), ("P", "I", "R")])
def test_storage_orientation_does_not_change_the_prediction(axcodes):
    rng = np.random.default_rng(0)
    reference = Scan(rng.integers(-200, 300, (8, 32, 32)).astype(np.int16), np.diag([-0.8, -0.8, 2.0, 1.0]), "CT")
    model = loaded(neighbourhood_model(32), identity_config(32))
    expected = inference.predict_scan(reference, [model]).probability
    stored = stored_as(reference, axcodes)
    probability = inference.predict_scan(stored, [model]).probability
    assert probability.shape == stored.shape
    in_reference_storage, _ = to_canonical(Scan(probability, stored.affine, "CT"))
    assert np.max(np.abs(in_reference_storage.array - expected)) <= 1e-3


@pytest.mark.parametrize("dense", [False, True])
def test_network_probability_of_a_prepared_volume_is_predict_scans(dense):
    # cross-validation predicts from cached prepared cases: the same probability as from the scan
    rng = np.random.default_rng(1)
    scan = Scan(rng.integers(-200, 300, (8, 32, 40)).astype(np.int16), np.diag([-0.8, -0.8, 2.0, 1.0]), "CT")
    model = loaded(neighbourhood_model(48), identity_config(48))
    options = inference.PredictOptions(dense=dense)
    expected = inference.predict_scan(scan, [model], options).probability
    volume, transform = prepare_volume(scan.array, scan.spacing, "CT", model.config.data)
    volume.flags.writeable = False  # prepared cases are read-only memory maps
    total, threshold, _ = inference.network_probability(volume, transform.grid_mm(scan.spacing), [model], options)
    assert threshold == model.config.train.threshold
    np.testing.assert_array_equal(transform.invert(total), expected)
