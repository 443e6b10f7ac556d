"""Registry (build.py): every model builds, trains one step with Eq. 4 losses and round-trips a .keras file."""
import keras
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.losses import deep_supervision_losses, deep_supervision_targets
from pancreas_seg.models.build import MODELS, build_model, output_names

SIZE = 16  # divisible by 16 (HNN, UNet) and by 2**(units-1)
T = 3
TINY = dict(units=3, channels=4, convs_per_unit=2, base_filters=2)
EXPECTED_OUTPUTS = {
    "pnet_msa": ["fused", "side_1", "side_2", "side_3"],
    "pnet64": ["fused", "side_1", "side_2", "side_3"],
    "hnn": ["fused", "side_1", "side_2", "side_3", "side_4", "side_5"],
    "unet": ["fused"],
    "cnn_rnn": ["fused"],
    "birnn": ["fused"],
}


def _batch(name, rng):
    if name == "birnn":
        x = rng.uniform(size=(2, T, SIZE, SIZE, 1))
    elif name == "cnn_rnn":
        x = rng.uniform(size=(2, T, SIZE, SIZE, 3))
    else:
        x = rng.uniform(size=(2, SIZE, SIZE, 3))
    x = x.astype("float32")
    return x, (x[..., :1] > 0.7).astype("float32")


def test_registry_names():
    assert set(MODELS) == set(EXPECTED_OUTPUTS)
    with pytest.raises(ValueError, match="pnet_msa"):
        build_model(ModelConfig(name="resnet"))


def _run(model, x):
    """Inference outputs as ``{name: numpy}``."""
    out = model(x, training=False)
    out = out if isinstance(out, dict) else {"fused": out}
    return {name: keras.ops.convert_to_numpy(value) for name, value in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, loss", [("pnet_msa", "jac"), ("pnet64", "cbce"), ("hnn", "ce"), ("unet", "jac"),
                                        ("cnn_rnn", "jac"), ("birnn", "cbce")])
def test_build_train_save_load(tmp_path, name, loss):
    rng = np.random.default_rng(0)
    model = build_model(ModelConfig(name=name, **TINY), SIZE)
    assert output_names(model) == EXPECTED_OUTPUTS[name]
    x, mask = _batch(name, rng)
    for value in _run(model, x).values():
        assert value.shape == mask.shape
        assert np.all((value >= 0) & (value <= 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=deep_supervision_losses(model, loss), jit_compile=False)
    logs = model.train_on_batch(x, deep_supervision_targets(model, mask), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    trained = _run(model, x)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    again = _run(loaded, x)
    assert sorted(again) == sorted(trained)
    for key, value in trained.items():
        np.testing.assert_allclose(again[key], value, atol=1e-6)


def test_fully_convolutional_2d():
    model = build_model(ModelConfig(**TINY))
    for size in (8, 16):
        assert _run(model, np.zeros((1, size, size, 3), "float32"))["fused"].shape == (1, size, size, 1)
