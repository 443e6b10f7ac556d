"""Losses (Sec. III-C): Eq. 14 value, Eq. 15 gradient, finite differences, CE/CBCE golden values, empty slices."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.losses import (LOSSES, BinaryDice, batch_jaccard_loss, class_balanced_cross_entropy, cross_entropy,
                                 deep_supervision_losses, get_loss, jaccard_loss)
from pancreas_seg.models.build import build_model


def value_and_grad(loss, y_true, y_pred):
    """Mean over the batch of ``loss`` and its gradient w.r.t. ``y_pred``, on the active backend."""
    y_true = keras.ops.convert_to_tensor(y_true, "float32")
    if keras.backend.backend() == "jax":
        import jax
        value, grad = jax.value_and_grad(lambda p: keras.ops.mean(loss(y_true, p)))(
            keras.ops.convert_to_tensor(y_pred, "float32"))
        return float(value), np.asarray(grad)
    import tensorflow as tf  # test-only: the library itself is backend-agnostic
    p = tf.Variable(y_pred, dtype="float32")
    with tf.GradientTape() as tape:
        value = keras.ops.mean(loss(y_true, p))
    return float(value), tape.gradient(value, p).numpy()


# 2x2 hand-worked case, y = [[1, 0], [0, 0]], p = [[0.8, 0.2], [0.4, 0.1]]
Y = np.array([[1, 0], [0, 0]], "float32").reshape(1, 2, 2, 1)
P = np.array([[0.8, 0.2], [0.4, 0.1]], "float32").reshape(1, 2, 2, 1)
GOLDEN = [
    # JAC: I = 0.8, D = |Y+| + sum_{Y-} p = 1 + 0.2 + 0.4 + 0.1 = 1.7 -> 1 - 0.8 / 1.7 = 0.5294118
    (jaccard_loss, 1 - 0.8 / 1.7),
    (batch_jaccard_loss, 1 - 0.8 / 1.7),  # one sample: the batch is the slice
    # CE: -(ln 0.8 + ln 0.8 + ln 0.6 + ln 0.9) / 4 = (0.22314 + 0.22314 + 0.51083 + 0.10536) / 4 = 0.2656183
    (cross_entropy, -(np.log(0.8) + np.log(0.8) + np.log(0.6) + np.log(0.9)) / 4),
    # CBCE: beta = |Y-|/|Y| = 3/4; -(0.75 ln 0.8 + 0.25 (ln 0.8 + ln 0.6 + ln 0.9)) / 4
    #     = (0.167358 + 0.25 * 0.839329) / 4 = 0.0942977
    (class_balanced_cross_entropy, -(0.75 * np.log(0.8) + 0.25 * (np.log(0.8) + np.log(0.6) + np.log(0.9))) / 4),
]


@pytest.mark.parametrize("loss, expected", GOLDEN)
def test_golden_values(loss, expected):
    value = keras.ops.convert_to_numpy(loss(keras.ops.convert_to_tensor(Y), keras.ops.convert_to_tensor(P)))
    assert value.shape == (1,)
    np.testing.assert_allclose(value[0], expected, rtol=1e-5)


def eq15(y, p):
    """Closed-form Eq. 15 for one sample."""
    inter = (y * p).sum()
    union = y.sum() + ((1 - y) * p).sum()
    return np.where(y > 0, -1.0 / union, inter / union ** 2)


def random_case(seed, shape=(3, 6, 5, 1)):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=shape) < 0.3).astype("float32")
    y[:, 0, 0] = 1  # every sample has foreground
    return y, rng.uniform(0.05, 0.95, size=shape).astype("float32")


def test_jaccard_gradient_is_eq15():
    y, p = random_case(0)
    _, grad = value_and_grad(jaccard_loss, y, p)
    expected = np.stack([eq15(y[b], p[b]) for b in range(len(y))]) / len(y)  # mean over the batch
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_batch_jaccard_gradient_is_eq15_over_the_batch():
    y, p = random_case(2)
    y[1] = 0  # a slice without pancreas inside a batch that has some
    value, grad = value_and_grad(batch_jaccard_loss, y, p)
    np.testing.assert_allclose(value, 1 - (y * p).sum() / (y.sum() + ((1 - y) * p).sum()), rtol=1e-6)
    np.testing.assert_allclose(grad, eq15(y, p), rtol=1e-5, atol=1e-7)
    assert np.all(grad[1] > 0), "false positives on the empty slice must be pushed down"


def test_cbce_penalises_false_positives_on_a_pancreas_free_slice():
    """beta over the batch: |Y-| / |Y| = 7 / 8 for one foreground pixel in two 2x2 slices."""
    y = np.zeros((2, 2, 2, 1), "float32")
    y[0, 0, 0] = 1  # slice 0 has pancreas, slice 1 has none
    p = np.full((2, 2, 2, 1), 0.9, "float32")  # false positives everywhere else
    per_sample = keras.ops.convert_to_numpy(class_balanced_cross_entropy(y, p))
    beta = 7 / 8
    # slice 1: -(1 - beta) * 4 ln(0.1) / 4 = 0.125 * 2.302585 = 0.2878231
    np.testing.assert_allclose(per_sample[1], -(1 - beta) * np.log(0.1), rtol=1e-5)
    # slice 0: -(beta ln 0.9 + (1 - beta) 3 ln 0.1) / 4 = (0.0921950 + 0.8634694) / 4 = 0.2389161
    np.testing.assert_allclose(per_sample[0], -(beta * np.log(0.9) + (1 - beta) * 3 * np.log(0.1)) / 4, rtol=1e-5)
    _, grad = value_and_grad(class_balanced_cross_entropy, y, p)
    assert np.all(grad[1] > 0), "false positives on the pancreas-free slice must be pushed down"


@pytest.mark.parametrize("loss", list(LOSSES.values()))
def test_gradient_matches_finite_differences(loss):
    y, p = random_case(1, shape=(2, 3, 3, 1))
    _, grad = value_and_grad(loss, y.astype("float64"), p)
    step = 1e-3
    numeric = np.zeros_like(p, dtype="float64")
    for index in np.ndindex(p.shape):
        plus, minus = p.astype("float64"), p.astype("float64")
        plus[index] += step
        minus[index] -= step
        f_plus = keras.ops.convert_to_numpy(keras.ops.mean(loss(y, keras.ops.convert_to_tensor(plus, "float32"))))
        f_minus = keras.ops.convert_to_numpy(keras.ops.mean(loss(y, keras.ops.convert_to_tensor(minus, "float32"))))
        numeric[index] = (f_plus - f_minus) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-4)


@pytest.mark.parametrize("loss", list(LOSSES.values()))
def test_empty_slices_are_finite(loss):
    empty = np.zeros((2, 4, 4, 1), "float32")
    prediction = np.stack([np.zeros((4, 4, 1)), np.full((4, 4, 1), 0.3)]).astype("float32")
    value, grad = value_and_grad(loss, empty, prediction)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if loss is jaccard_loss:
        per_sample = keras.ops.convert_to_numpy(loss(empty, prediction))
        np.testing.assert_allclose(per_sample, [0.0, 1.0])  # empty-empty := 0; empty GT, p > 0: 1 - 0/D
        np.testing.assert_array_equal(grad, 0.0)  # Eq. 15 with no foreground: I = 0


def test_registry_and_deep_supervision():
    assert get_loss("jac") is batch_jaccard_loss and get_loss("jac_slice") is jaccard_loss
    with pytest.raises(ValueError, match="cbce"):
        get_loss("dice")
    model = build_model(ModelConfig(units=2, channels=4, convs_per_unit=1), 8)
    losses = deep_supervision_losses(model, "ce")
    assert list(losses) == ["fused", "side_1", "side_2"]  # Eq. 4: L(Y-hat) + sum_k L(U_k)
    assert all(fn is cross_entropy for fn in losses.values())


def test_compiled_model_reloads(tmp_path):
    model = build_model(ModelConfig(units=2, channels=4, convs_per_unit=1), 8)
    model.compile(optimizer="adam", loss=deep_supervision_losses(model, "jac"))
    path = tmp_path / "compiled.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # compile=True resolves the registered losses
    assert loaded.compiled


def test_importing_the_models_is_enough_to_load_a_saved_model(tmp_path):
    """A fresh interpreter: only ``import pancreas_seg.models``, then Keras's own loader, safe mode on."""
    from pancreas_seg.config import preset
    from pancreas_seg.models.build import build_model

    config = preset("testing")
    model = build_model(replace(config.model, name="cnn_rnn"), config.data.input_size)
    model.compile(optimizer="adam", loss=deep_supervision_losses(model, "jac"), metrics=[BinaryDice()])
    model.save(tmp_path / "m.keras")
    script = ("import keras, pancreas_seg.models, sys; "
              "m = keras.saving.load_model(sys.argv[1], safe_mode=True); print(type(m).__name__, m.compiled)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.keras")], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["Functional", "True"]
