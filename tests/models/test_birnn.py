"""BiRNN (Sec. III-B, Eq. 5-10, IV-D) and the stacked CNN-RNN: counts, golden outputs, init, freezing."""
import keras
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.losses import deep_supervision_losses, deep_supervision_targets
from pancreas_seg.models.birnn import build_birnn, build_cnn_rnn, cnn_of, set_cnn_trainable
from pancreas_seg.models.build import build_model, count_parameters

SIZE = 8
TINY_CNN = ModelConfig(name="cnn_rnn", units=2, channels=4, convs_per_unit=1)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def conv_same(image, kernel):
    """3x3 'same' cross-correlation of one channel, zero padding, ``[H, W]``."""
    padded = np.pad(image, 1)
    h, w = image.shape
    return sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))


def clstm_numpy(sequence, w_y, w_h):
    """Eq. 5-9 without peepholes or biases for one channel; ``w_y[g], w_h[g]`` 3x3 per gate i, f, c, o."""
    h = np.zeros_like(sequence[0])
    c = np.zeros_like(sequence[0])
    out = []
    for y in sequence:
        pre = [conv_same(y, w_y[g]) + conv_same(h, w_h[g]) for g in range(4)]
        i, f, o = sigmoid(pre[0]), sigmoid(pre[1]), sigmoid(pre[3])
        c = f * c + i * np.tanh(pre[2])  # Eq. 7
        h = o * np.tanh(c)  # Eq. 9
        out.append(h)
    return np.stack(out)


def test_parameter_counts():
    model = build_birnn(ModelConfig(), SIZE)
    for name in ("clstm_down", "clstm_up"):
        # 4 gates x (3*3*1*1 input + 3*3*1*1 recurrent) = 72 (Sec. I, IV-D)
        assert count_parameters(model.get_layer(name)) == 72
    assert count_parameters(model) == 144 + 3  # + lambda^-, lambda^+, beta of Eq. 10


def test_golden_output_against_numpy():
    model = build_birnn(ModelConfig(), 4, sequence_length=3)
    for name in ("clstm_down", "clstm_up"):
        layer = model.get_layer(name)
        layer.set_weights([np.full(w.shape, 0.1, "float32") for w in layer.get_weights()])
    lam_down, lam_up, beta = 0.7, -1.3, 0.2  # unequal lambdas catch a mis-aligned direction
    model.get_layer("eq10_fusion").set_weights([np.array([[lam_down], [lam_up]], "float32"),
                                                np.array([beta], "float32")])
    y = np.random.default_rng(0).uniform(size=(3, 4, 4)).astype("float32")
    kernels = np.full((4, 3, 3), 0.1)
    down = clstm_numpy(y, kernels, kernels)  # tau-: slices 1 -> T
    up = clstm_numpy(y[::-1], kernels, kernels)[::-1]  # tau+: T -> 1, re-aligned
    expected = sigmoid(lam_down * down + lam_up * up + beta)  # Eq. 10 as defined in birnn.py
    got = model.predict(y[None, ..., None], verbose=0)[0, ..., 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_initial_birnn_roughly_passes_through():
    model = build_birnn(ModelConfig(), SIZE, sequence_length=5)
    levels = np.linspace(0, 1, 11, dtype="float32")
    constant = np.broadcast_to(levels[:, None, None, None, None], (11, 5, SIZE, SIZE, 1))
    out = model.predict(constant, verbose=0)
    assert np.abs(out - constant).max() < 0.1  # 0 -> ~0.08, 0.5 -> ~0.51, 1 -> ~0.92
    masks = (np.random.default_rng(0).uniform(size=(2, 5, SIZE, SIZE, 1)) < 0.3).astype("float32")
    np.testing.assert_array_equal(model.predict(masks, verbose=0) > 0.5, masks > 0.5)


def test_needs_fixed_size():
    with pytest.raises(ValueError, match="fixed input_size"):
        build_birnn(ModelConfig(), None)


@pytest.mark.slow
def test_cnn_rnn_wraps_freezes_and_saves(tmp_path):
    cnn = build_model(ModelConfig(units=2, channels=4, convs_per_unit=1), SIZE)
    model = build_cnn_rnn(TINY_CNN, cnn=cnn, input_size=SIZE)
    inner = cnn_of(model)
    assert list(inner.output) == ["fused", "side_1", "side_2"]
    assert inner.get_layer("unit1_conv1") is cnn.get_layer("unit1_conv1")  # weights shared
    x = np.random.default_rng(0).uniform(size=(2, 3, SIZE, SIZE, 3)).astype("float32")
    mask = (x[..., :1] > 0.6).astype("float32")
    set_cnn_trainable(model, False)  # RNN-only stage (Sec. IV-D)
    assert count_parameters(model, trainable_only=True) == 147
    model.compile(optimizer="adam", loss=deep_supervision_losses(model, "jac"), jit_compile=False)
    frozen = [w.copy() for w in inner.get_weights()]
    logs = model.train_on_batch(x, deep_supervision_targets(model, mask), return_dict=True)
    assert np.isfinite(logs["loss"])
    for before, after in zip(frozen, inner.get_weights()):
        np.testing.assert_array_equal(before, after)
    set_cnn_trainable(model, True)  # end-to-end stage
    assert count_parameters(model, trainable_only=True) > 147
    path = tmp_path / "cnn_rnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The 2D CNN inside agrees with the CNN run slice by slice.
    per_slice = cnn.predict(x.reshape(-1, SIZE, SIZE, 3), verbose=0)["fused"]
    np.testing.assert_allclose(cnn_of(loaded).predict(x.reshape(-1, SIZE, SIZE, 3), verbose=0)["fused"],
                               per_slice, atol=1e-6)
