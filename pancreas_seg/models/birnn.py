"""Bidirectional ConvLSTM "BiRNN" (paper Sec. III-B, Eq. 5-10, Sec. IV-D) and the stacked CNN-RNN.

BiRNN: input ``[B, T, H, W, 1] float32`` CNN probabilities Y-hat_tau of T consecutive axial slices in
slice order; output ``[B, T, H, W, 1] float32`` probabilities Y-bar_tau in (0, 1), same order.

Recurrence (Eq. 5-9) is ``keras.layers.ConvLSTM2D(filters=rnn_hidden, kernel_size=rnn_kernel,
padding="same", use_bias=False)``: Keras's cell has no peephole terms (the W_c. ⊙ C of Eq. 5, 6, 8
are dropped, as in Sec. IV-D's parameter count) and no bias b_. here, so with one hidden channel and
3x3 kernels each layer holds 4 gates x (3*3*1*1 input + 3*3*1*1 recurrent) = 72 variables, the
paper's count (Sec. I). Layer ``clstm_down`` runs top-down (tau-, slice 1 -> T); ``clstm_up`` runs
bottom-up (tau+, ``go_backwards=True``) and its output sequence is flipped back to slice order.

Eq. 10 mapping. The ConvLSTM output H_tau = o_tau ⊙ tanh(C_tau) (Eq. 9) lies in (-1, 1), so it is not a
probability; we take Eq. 10's O^i_tau to be H^i_tau and put the weighted sum through a sigmoid:

    Y-bar_tau = sigmoid(lambda^- H^-_tau + lambda^+ H^+_tau + beta)

i.e. a ``Dense(1)`` (layer ``eq10_fusion``) on the channel-concatenated [H^-, H^+] followed by a
sigmoid (layer ``fused``). Extra scalars beyond the 2 x 72: lambda^-, lambda^+ and beta = 3
(with ``rnn_hidden`` = F channels: 2F weights + 1 bias). BiRNN total at the paper's setting: 147.

Initialisation (near-identity start). Without gate biases the gates are exactly 0.5 when input and
state are 0, so an exact identity is out of reach; instead only the kernels' centre taps are set
(off-centre taps 0: no spatial mixing at the start) to per-gate values (order i, f, c, o)
``INPUT_TAPS`` and ``RECURRENT_TAPS``, with lambda^- = lambda^+ = ``LAMBDA_INIT``, beta = ``BETA_INIT``.
These were fitted once offline (least squares with a 1e-4 L2 penalty on the 10 scalars,
Nelder-Mead then Powell, rounded) so that Y-bar ≈ Y-hat per pixel on synthetic T = 5 runs of
constant, on/off and uniformly random probabilities: RMS error 0.049; a constant map of 0 / 0.5 / 1
comes out as about 0.08 / 0.51 / 0.92, and a 0.5 threshold of Y-bar reproduces that of Y-hat. The
forget gate stays near 0.45 and the negative recurrent tap of the cell candidate (-1.15) cancels
most of what the previous slice left in the cell, so the untrained BiRNN roughly passes the CNN
probability through while every gate still has a gradient; training then learns to use the
neighbours (Sec. III-B). See ``tests/models/test_birnn.py::test_initial_birnn_roughly_passes_through``.

CNN-RNN (Fig. 1, Sec. IV-D): input ``[B, T, H, W, input_slices]`` -> the 2D CNN (a nested model named
``cnn``, its ``"fused"`` output) on the B*T slices at once (layers ``merge_time`` / ``split_time``
reshape, so BatchNorm sees one batch) -> BiRNN -> ``[B, T, H, W, 1]`` (output layer ``fused``).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from pancreas_seg.config import ModelConfig
from pancreas_seg.models.pnet import build_pnet_msa

# Fitted near-identity initialisation, see the module docstring; gate order i, f, c, o (Keras's).
INPUT_TAPS = (1.5, -0.2, 1.45, 1.9)  # centre tap of W_y{i,f,c,o}
RECURRENT_TAPS = (0.25, -0.6, -1.15, -0.1)  # centre tap of W_h{i,f,c,o}
LAMBDA_INIT = 4.15  # lambda^- = lambda^+ of Eq. 10 (divided by rnn_hidden when it exceeds 1)
BETA_INIT = -2.4  # beta, the offset inside the sigmoid
GATES = 4
OUTPUT = "fused"
CNN_LAYER = "cnn"


@keras.saving.register_keras_serializable(package="pancreas_seg")
class CentreTap(keras.initializers.Initializer):
    """ConvLSTM kernel initialiser ``[kh, kw, C_in, 4 F]``: zeros except the centre tap.

    Gate g's block (Keras order i, f, c, o) gets ``values[g]`` at the centre, for every input
    channel when ``diagonal`` is False (input kernel), or only from hidden channel f to f when
    ``diagonal`` is True (recurrent kernel).
    """

    def __init__(self, values, diagonal: bool = False):
        self.values = tuple(float(v) for v in values)
        self.diagonal = bool(diagonal)

    def __call__(self, shape, dtype=None):
        kh, kw, c_in, out = shape
        filters = out // GATES
        kernel = np.zeros(shape, dtype="float32")
        for g, value in enumerate(self.values):
            for f in range(filters):
                rows = [f] if self.diagonal else range(c_in)
                for c in rows:
                    kernel[kh // 2, kw // 2, c, g * filters + f] = value
        return keras.ops.convert_to_tensor(kernel, dtype=dtype)

    def get_config(self):
        return {"values": list(self.values), "diagonal": self.diagonal}


@keras.saving.register_keras_serializable(package="pancreas_seg")
class ReverseTime(layers.Layer):
    """Flip a sequence ``[B, T, ...]`` along T (re-aligns the bottom-up ConvLSTM to slice order)."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="pancreas_seg")
class MergeTime(layers.Layer):
    """``[B, T, H, W, C]`` -> ``[B*T, H, W, C]``, slices of a sequence consecutive."""

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        return keras.ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))

    def compute_output_shape(self, input_shape):
        b, t = input_shape[:2]
        return (None if b is None or t is None else b * t, *input_shape[2:])


@keras.saving.register_keras_serializable(package="pancreas_seg")
class SplitTime(layers.Layer):
    """Inverse of :class:`MergeTime`: ``([B*T, H, W, C], reference [B, T, ...])`` -> ``[B, T, H, W, C]``."""

    def call(self, inputs):
        merged, reference = inputs
        t = keras.ops.shape(reference)[1]
        shape = keras.ops.shape(merged)
        return keras.ops.reshape(merged, (-1, t, shape[1], shape[2], shape[3]))

    def compute_output_shape(self, input_shape):
        merged, reference = input_shape
        return (reference[0], reference[1], *merged[1:])


def _check_rnn(config: ModelConfig, input_size: int | None) -> None:
    if input_size is None:
        raise ValueError("the BiRNN needs a fixed input_size: keras.layers.ConvLSTM2D builds with static H, W; "
                         "build at the size you need and copy weights with build.transfer_weights")
    if config.rnn_kernel % 2 == 0:
        raise ValueError(f"rnn_kernel must be odd for a centred 'same' convolution, got {config.rnn_kernel}")
    if config.rnn_hidden < 1:
        raise ValueError(f"rnn_hidden must be >= 1, got {config.rnn_hidden}")


def _clstm(config: ModelConfig, name: str, go_backwards: bool) -> layers.ConvLSTM2D:
    return layers.ConvLSTM2D(
        filters=config.rnn_hidden, kernel_size=config.rnn_kernel, padding="same", use_bias=False,
        return_sequences=True, go_backwards=go_backwards,
        kernel_initializer=CentreTap(INPUT_TAPS),
        recurrent_initializer=CentreTap(RECURRENT_TAPS, diagonal=True),
        name=name)


def birnn_head(probabilities, config: ModelConfig):
    """Eq. 5-10 on a symbolic ``[B, T, H, W, 1]`` probability tensor; returns Y-bar ``[B, T, H, W, 1]``."""
    _check_rnn(config, probabilities.shape[2])
    down = _clstm(config, "clstm_down", go_backwards=False)(probabilities)  # tau- (top-down)
    up = _clstm(config, "clstm_up", go_backwards=True)(probabilities)  # tau+, in reversed order
    up = ReverseTime(name="clstm_up_realign")(up)
    both = layers.Concatenate(name="directions")([down, up])
    logit = layers.Dense(1, kernel_initializer=keras.initializers.Constant(LAMBDA_INIT / config.rnn_hidden),
                         bias_initializer=keras.initializers.Constant(BETA_INIT), name="eq10_fusion")(both)
    return layers.Activation("sigmoid", name=OUTPUT)(logit)


def build_birnn(config: ModelConfig, input_size: int | None = None,
                sequence_length: int | None = None) -> keras.Model:
    """The BiRNN alone: ``[B, T, H, W, 1]`` CNN probabilities -> ``[B, T, H, W, 1]`` probabilities."""
    inputs = keras.Input((sequence_length, input_size, input_size, 1), name="cnn_probabilities")
    return keras.Model(inputs, birnn_head(inputs, config), name="birnn")


def build_cnn_rnn(config: ModelConfig, cnn: keras.Model | None = None, input_size: int | None = None,
                  sequence_length: int | None = None) -> keras.Model:
    """CNN-RNN (Fig. 1): ``[B, T, H, W, input_slices]`` -> ``[B, T, H, W, 1]`` probabilities.

    ``cnn`` is a (trained) 2D model with a ``"fused"`` output; ``None`` builds a fresh PNet-MSA
    from ``config``. It is nested under the name ``"cnn"`` (see :func:`cnn_of`), sharing its layers
    and weights with ``cnn``. ``input_size`` defaults to the CNN's input size and must be fixed.
    """
    if input_size is None and cnn is not None:
        input_size = cnn.input.shape[1]
    if cnn is None:
        cnn = build_pnet_msa(config, input_size)
    _check_rnn(config, input_size)
    cnn = keras.Model(cnn.input, cnn.output, name=CNN_LAYER)  # same layers and weights, nested as "cnn"
    inputs = keras.Input((sequence_length, input_size, input_size, config.input_slices), name="slice_stacks")
    merged = MergeTime(name="merge_time")(inputs)
    outputs = cnn(merged)
    fused = outputs[OUTPUT] if isinstance(outputs, dict) else outputs
    probabilities = SplitTime(name="split_time")([fused, inputs])
    return keras.Model(inputs, birnn_head(probabilities, config), name="cnn_rnn")


def cnn_of(model: keras.Model) -> keras.Model:
    """The nested 2D CNN of a CNN-RNN model (all its outputs, weights shared with ``model``)."""
    return model.get_layer(CNN_LAYER)


def set_cnn_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze (``False``, the RNN-only stage of Sec. IV-D) or unfreeze the CNN; recompile afterwards.

    A frozen Keras BatchNormalization also runs in inference mode (moving statistics).
    """
    cnn_of(model).trainable = trainable


def freeze_cnn_batch_norm(model: keras.Model) -> int:
    """Put every batch norm of a CNN-RNN's CNN in inference mode (moving statistics, not updated)
    while the rest stays trainable: end-to-end fine-tuning on one or two slice runs per step would
    otherwise replace the statistics the CNN was trained with. Returns how many were frozen;
    recompile afterwards."""
    frozen = 0
    pending = list(cnn_of(model).layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
        elif isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen
