"""Registry (build.py): every model builds, trains one step with Eq. 4 losses and round-trips a .keras file;
golden parameter counts of the presets' models."""
import dataclasses

import keras
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig, preset
from pancreas_seg.losses import deep_supervision_losses, deep_supervision_targets
from pancreas_seg.models.build import MODELS, build_model, output_names

SIZE = 16  # divisible by 16 (HNN, UNet) and by 2**(units-1)
T = 3
TINY = dict(units=3, channels=4, convs_per_unit=2, base_filters=2)
PAPER_PARAMETER_LIMIT = 3_000_000  # Sec. III-A: PNet-MSA has fewer than 3 M parameters
# model.count_params() (trainable + BatchNorm moving statistics) of each preset's model at its
# data.input_size, as measured; a change means the architecture or a preset changed.
PARAMETER_COUNTS = {
    ("paper", "pnet_msa"): 2_103_434,
    ("paper", "pnet64"): 707_594,
    ("quick", "pnet_msa"): 133_418,
    ("quick", "cnn_rnn"): 133_565,
    ("testing", "pnet_msa"): 13_614,
    ("testing", "pnet64"): 6_966,
    ("testing", "hnn"): 58_723,  # 57,931 without batch norm: + 3 per conv output channel (BN 4, no conv bias)
    ("testing", "unet"): 122_829,  # 121,725 without batch norm
    ("testing", "cnn_rnn"): 13_761,
    ("testing", "birnn"): 147,
}
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


@pytest.mark.parametrize("preset_name, name", sorted(PARAMETER_COUNTS))
def test_parameter_count_of_presets(preset_name, name):
    config = preset(preset_name)
    model = build_model(dataclasses.replace(config.model, name=name), config.data.input_size)
    assert model.count_params() == PARAMETER_COUNTS[preset_name, name]


def test_paper_pnet_msa_under_three_million_parameters():
    assert preset("paper").model.name == "pnet_msa"
    assert PARAMETER_COUNTS["paper", "pnet_msa"] < PAPER_PARAMETER_LIMIT
