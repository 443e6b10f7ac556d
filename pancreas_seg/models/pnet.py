"""PNet-MSA (paper Sec. III-A, Fig. 3, Eq. 1-4) and its preliminary version PNet-64 (Sec. IV-A, [13]).

Both take ``[B, H, W, input_slices] float32`` stacks of neighbouring axial slices in ``[0, 1]``
(channels last) and return a dict of sigmoid probability maps ``[B, H, W, 1] float32``:
``"fused"`` (Y-hat, Eq. 3) and the deeply supervised unit outputs ``"side_1" .. "side_K"``
(U_k, Eq. 1-2). The models are fully convolutional when ``input_size`` is ``None``; H and W must
then be divisible by ``2 ** (units - 1)`` (one 2x2 max-pool before every unit but the first).

How we read Fig. 3 (the figure is ambiguous; this is our choice)
-----------------------------------------------------------------
Forward branch F_k: ``convs_per_unit`` x (3x3 conv with ``channels`` outputs, no bias, BN, ReLU),
He-normal ("MSRA", [28]) init; a 2x2 max-pool precedes every unit k > 1, so F_k is at scale
1 / 2**(k-1).

Backward branch B_k (Eq. 1), "concatenating the current forward branch output with former outputs
via deconvolution": a *progressive* UNet-like decoder owned by unit k. Starting from F_k it
repeats, for s = k-1 down to 1::

    Deconv(channels, 4x4, stride 2) -> concat with F_s -> Conv(channels, 3x3) -> BN -> ReLU

and ends with a 1x1 conv to one channel and a sigmoid: U_k at input resolution. B_1 is just the
1x1 conv on F_1. We chose the progressive reading over "deconvolve F_k straight to full resolution
and concatenate with F_1..F_{k-1}" because Fig. 3 annotates every deconvolution with the same
small (channels, kernel, stride) hyper-parameters: a single stride-16 deconvolution for unit 5
would need a 32x32 kernel (4.2 M parameters on its own), breaking the "< 3 M parameters" of
Sec. IV-A, whereas the progressive decoder gives 2,103,434 parameters (2,099,594 trainable; the rest are
BatchNorm moving statistics) at K = 5, 64 channels, 3 input slices (arithmetic in
``tests/models/test_pnet.py``). Each B_k has its own
weights, so B_1..B_k, and hence U_1..U_k, do not change when unit k+1 is added, which is what
the stage-wise training of Sec. III-A ("training starts from k=1, and k is increased by 1 when
the L_k plot converges") needs.

Fusion (Eq. 3): Y-hat = sum_k w_k U_k with w = softmax(v), v learned and initialised to 0
(w_k = 1/K). A convex combination of maps in [0, 1] stays in [0, 1] without clipping. When a
K-unit model is grown to K+1 units, :func:`pancreas_seg.models.build.transfer_weights` copies v_1..v_K
and leaves v_{K+1} = 0.

Layer names are stable across K so weights transfer by name: ``unit{k}_pool``, ``unit{k}_conv{j}``,
``unit{k}_bn{j}``, ``unit{k}_relu{j}``, ``unit{k}_up{s}_deconv``, ``unit{k}_up{s}_concat``,
``unit{k}_up{s}_conv``, ``unit{k}_up{s}_bn``, ``unit{k}_up{s}_relu``, ``unit{k}_side`` (1x1 conv,
logit), ``side_{k}`` (sigmoid), ``fused`` (Eq. 3).

PNet-64 ([13], "implemented as HNN but in a much smaller model size"): the same forward branches;
unit k's side output is a 1x1 conv (logit) at scale 1/2**(k-1), bilinearly upsampled to the input
size, then a sigmoid; ``fused`` is the same learned convex combination (Eq. 3). No multi-scale
aggregation.
"""
from __future__ import annotations

import math

import keras
from keras import layers

from pancreas_seg.config import ModelConfig

POOL_SIZE = 2  # 2x2 max-pool between units (Sec. III-A)
CONV_KERNEL = 3  # 3x3 convs of the forward branch and of the MSA fusion (Fig. 3)
DECONV_KERNEL = 4  # 4x4 deconvolution kernel, stride POOL_SIZE (Fig. 3)
FORWARD_INIT = "he_normal"  # MSRA initialisation [28]
FUSED = "fused"  # name of the Eq. 3 output
BN_MOMENTUM = 0.9  # moving-statistics decay of batch norm: tensorpack's default, which the authors used
# (Keras's 0.99 leaves the inference statistics far from the training ones after a few hundred steps)
FOREGROUND_PRIOR = 0.05  # initial output probability: every 1-channel logit conv starts with bias
# log(p / (1 - p)) (the prior initialisation of Lin et al. 2017, RetinaNet). With p = 0.5 the JAC
# denominator is dominated by the background and training from scratch first drives every pixel to 0.
OUTPUT_BIAS_INIT = keras.initializers.Constant(math.log(FOREGROUND_PRIOR / (1.0 - FOREGROUND_PRIOR)))


def side_name(k: int) -> str:
    """Name of unit k's output U_k (1-based)."""
    return f"side_{k}"


@keras.saving.register_keras_serializable(package="pancreas_seg")
class WeightedFusion(layers.Layer):
    """Eq. 3: Y-hat = sum_k w_k U_k, with w = softmax(v) over K learned scalars v (init 0 -> 1/K).

    Input: a list of K maps ``[B, H, W, 1]`` in [0, 1]; output ``[B, H, W, 1]`` in [0, 1].
    K trainable scalars.
    """

    def build(self, input_shape):
        self.logits = self.add_weight(name="logits", shape=(len(input_shape),), initializer="zeros",
                                      trainable=True)

    def call(self, inputs):
        weights = keras.ops.softmax(self.logits)
        stacked = keras.ops.stack(inputs, axis=-1)
        return keras.ops.sum(stacked * weights, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def fusion_weights(self):
        """w_k of Eq. 3 as a numpy array of shape [K]."""
        return keras.ops.convert_to_numpy(keras.ops.softmax(self.logits))


def forward_branch(x, k: int, config: ModelConfig):
    """F_k (Sec. III-A): optional 2x2 max-pool, then ``convs_per_unit`` x (conv 3x3, BN, ReLU)."""
    if k > 1:
        x = layers.MaxPooling2D(POOL_SIZE, name=f"unit{k}_pool")(x)
    for j in range(1, config.convs_per_unit + 1):
        x = layers.Conv2D(config.channels, CONV_KERNEL, padding="same", use_bias=False,
                          kernel_initializer=FORWARD_INIT, name=f"unit{k}_conv{j}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"unit{k}_bn{j}")(x)
        x = layers.ReLU(name=f"unit{k}_relu{j}")(x)
    return x


def backward_branch(features: list, k: int, config: ModelConfig):
    """B_k of Eq. 1: progressive multi-scale aggregation of F_k with F_{k-1}..F_1, then U_k.

    ``features[s-1]`` is F_s at scale 1/2**(s-1); returns U_k ``[B, H, W, 1]`` probabilities.
    """
    x = features[k - 1]
    for s in range(k - 1, 0, -1):
        x = layers.Conv2DTranspose(config.channels, DECONV_KERNEL, strides=POOL_SIZE, padding="same",
                                   kernel_initializer=FORWARD_INIT, name=f"unit{k}_up{s}_deconv")(x)
        x = layers.Concatenate(name=f"unit{k}_up{s}_concat")([x, features[s - 1]])
        x = layers.Conv2D(config.channels, CONV_KERNEL, padding="same", use_bias=False,
                          kernel_initializer=FORWARD_INIT, name=f"unit{k}_up{s}_conv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"unit{k}_up{s}_bn")(x)
        x = layers.ReLU(name=f"unit{k}_up{s}_relu")(x)
    logit = layers.Conv2D(1, 1, kernel_initializer=FORWARD_INIT, bias_initializer=OUTPUT_BIAS_INIT,
                          name=f"unit{k}_side")(x)
    return layers.Activation("sigmoid", name=side_name(k))(logit)


def _inputs(config: ModelConfig, input_size: int | None):
    return keras.Input((input_size, input_size, config.input_slices), name="slices")


def _check_size(config: ModelConfig, input_size: int | None) -> None:
    factor = POOL_SIZE ** (config.units - 1)
    if config.units < 1:
        raise ValueError(f"units must be >= 1, got {config.units}")
    if input_size is not None and input_size % factor:
        raise ValueError(f"input_size {input_size} is not divisible by 2**(units-1) = {factor}")


def _deeply_supervised(inputs, sides: list, name: str) -> keras.Model:
    # The output layer is named like its output so Keras's output_names are the dict keys.
    fused = WeightedFusion(name=FUSED)(sides) if len(sides) > 1 else layers.Identity(name=FUSED)(sides[0])
    outputs = {FUSED: fused}
    outputs.update({side_name(k): side for k, side in enumerate(sides, start=1)})
    return keras.Model(inputs, outputs, name=name)


def build_pnet_msa(config: ModelConfig, input_size: int | None = None) -> keras.Model:
    """PNet-MSA with K = ``config.units`` unit modules (Sec. III-A, Fig. 3, Eq. 1-3).

    Input ``[B, H, W, input_slices] float32``; outputs ``{"fused", "side_1", ..., "side_K"}``,
    each ``[B, H, W, 1] float32`` in [0, 1]. With K = 1 the fused output is U_1 itself.
    """
    _check_size(config, input_size)
    inputs = _inputs(config, input_size)
    features, x = [], inputs
    for k in range(1, config.units + 1):
        x = forward_branch(x, k, config)
        features.append(x)
    sides = [backward_branch(features, k, config) for k in range(1, config.units + 1)]
    return _deeply_supervised(inputs, sides, name="pnet_msa")


def build_pnet64(config: ModelConfig, input_size: int | None = None) -> keras.Model:
    """PNet-64 ([13]): HNN-style deep supervision over the PNet forward branches, no MSA.

    Side k: 1x1 conv logit at scale 1/2**(k-1) -> bilinear upsampling x 2**(k-1) -> sigmoid.
    Input/outputs as :func:`build_pnet_msa`.
    """
    _check_size(config, input_size)
    inputs = _inputs(config, input_size)
    sides, x = [], inputs
    for k in range(1, config.units + 1):
        x = forward_branch(x, k, config)
        logit = layers.Conv2D(1, 1, kernel_initializer=FORWARD_INIT, bias_initializer=OUTPUT_BIAS_INIT,
                          name=f"unit{k}_side")(x)
        if k > 1:
            logit = layers.UpSampling2D(POOL_SIZE ** (k - 1), interpolation="bilinear",
                                        name=f"unit{k}_upsample")(logit)
        sides.append(layers.Activation("sigmoid", name=side_name(k))(logit))
    return _deeply_supervised(inputs, sides, name="pnet64")
