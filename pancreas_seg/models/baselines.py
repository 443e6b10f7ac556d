"""Baseline 2D networks of Table II (paper Sec. IV-A, IV-C): HNN [12] and UNet [16].

Both take ``[B, H, W, input_slices] float32`` in ``[0, 1]`` (channels last); H and W must be
divisible by 16 (four 2x2 max-pools). Outputs are sigmoid probability maps ``[B, H, W, 1] float32``.

HNN (Xie & Tu 2015, "holistically-nested edge detection", adapted to pancreas as in [8]):
VGG16 trunk, 5 stages of widths ``base_filters * (1, 2, 4, 8, 8)`` (64-128-256-512-512 at
``base_filters = 64``) with (2, 2, 3, 3, 3) 3x3 conv + ReLU layers, a 2x2 max-pool between stages
(VGG16's fifth pool is dropped, as in HED). Side output k: 1x1 conv logit at stage k's scale,
bilinear upsampling to the input size ("side_k" = sigmoid of it). Fused: 1x1 conv over the
5 concatenated side logits (initialised to 1/5 each as in HED), sigmoid -> "fused".
Layers are named like ``keras.applications.VGG16`` (``block{s}_conv{j}``), so
``transfer_weights(keras.applications.VGG16(include_top=False, ...), hnn)`` copies an ImageNet
trunk when ``input_slices == 3`` (the paper fine-tunes HNN from VGG16, Sec. IV-A).

UNet (Ronneberger et al. 2015): 4 down / 4 up levels, two 3x3 'same' conv + ReLU per level,
widths ``base_filters * 2**i`` (i = 0..4), 2x2 max-pool down, 2x2 stride-2 up-convolution halving
the width, concatenation with the encoder skip, 1x1 conv + sigmoid -> "fused". He-normal init
(the original's Gaussian with std sqrt(2/N)). 'same' padding replaces the original's 'valid' so
output and input sizes agree.

Batch normalisation (ours, ``ModelConfig.baseline_batch_norm``, on by default): every 3x3 conv is
followed by BN (no conv bias) before its ReLU, named ``block{s}_bn{j}`` / ``<level>_bn{j}``. The
paper fine-tunes both from released weights; trained from scratch without normalisation, their
activations grow without bound in the first epoch and the sigmoid output saturates at 0
(docs/REPRODUCTION.md). With ``baseline_batch_norm=False`` the layers are the originals' exactly.
"""
from __future__ import annotations

import keras
from keras import layers

from pancreas_seg.config import ModelConfig
from pancreas_seg.models.pnet import BN_MOMENTUM, FUSED, OUTPUT_BIAS_INIT, side_name

REFERENCE_WIDTH = 64  # base width of the original VGG16 / UNet; widths scale by base_filters / 64
VGG16_STAGES = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))  # (width multiple of base, convs) per stage
UNET_DEPTH = 4  # down-sampling steps
CONV_KERNEL = 3
POOL_SIZE = 2
INIT = "he_normal"


def _scaled(base_filters: int, multiple: int) -> int:
    return max(1, base_filters * multiple)


def _check_size(input_size: int | None, depth: int) -> None:
    factor = POOL_SIZE ** depth
    if input_size is not None and input_size % factor:
        raise ValueError(f"input_size {input_size} is not divisible by {factor}")


def _conv_relu(x, filters: int, conv_name: str, bn_name: str, batch_norm: bool):
    """3x3 'same' conv + ReLU, with batch normalisation between them when ``batch_norm``."""
    x = layers.Conv2D(filters, CONV_KERNEL, padding="same", use_bias=not batch_norm, kernel_initializer=INIT,
                      name=conv_name)(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=bn_name)(x)
    return layers.ReLU(name=f"{conv_name}_relu")(x)


def build_hnn(config: ModelConfig, input_size: int | None = None) -> keras.Model:
    """HNN: outputs ``{"fused", "side_1", ..., "side_5"}``, each ``[B, H, W, 1]`` in [0, 1]."""
    _check_size(input_size, len(VGG16_STAGES) - 1)
    inputs = keras.Input((input_size, input_size, config.input_slices), name="slices")
    x, logits = inputs, []
    for s, (multiple, convs) in enumerate(VGG16_STAGES, start=1):
        if s > 1:
            x = layers.MaxPooling2D(POOL_SIZE, name=f"block{s - 1}_pool")(x)
        for j in range(1, convs + 1):
            x = _conv_relu(x, _scaled(config.base_filters, multiple), f"block{s}_conv{j}", f"block{s}_bn{j}",
                           config.baseline_batch_norm)
        logit = layers.Conv2D(1, 1, bias_initializer=OUTPUT_BIAS_INIT, name=f"side{s}_conv")(x)
        if s > 1:
            logit = layers.UpSampling2D(POOL_SIZE ** (s - 1), interpolation="bilinear",
                                        name=f"side{s}_upsample")(logit)
        logits.append(logit)
    outputs = {}
    stacked = layers.Concatenate(name="side_logits")(logits)
    fused_logit = layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(1.0 / len(logits)),
                                name="fusion_conv")(stacked)
    outputs[FUSED] = layers.Activation("sigmoid", name=FUSED)(fused_logit)
    for s, logit in enumerate(logits, start=1):
        outputs[side_name(s)] = layers.Activation("sigmoid", name=side_name(s))(logit)
    return keras.Model(inputs, outputs, name="hnn")


def _double_conv(x, filters: int, prefix: str, batch_norm: bool):
    for j in (1, 2):
        x = _conv_relu(x, filters, f"{prefix}_conv{j}", f"{prefix}_bn{j}", batch_norm)
    return x


def build_unet(config: ModelConfig, input_size: int | None = None) -> keras.Model:
    """UNet: output ``{"fused": [B, H, W, 1]}`` in [0, 1]."""
    _check_size(input_size, UNET_DEPTH)
    inputs = keras.Input((input_size, input_size, config.input_slices), name="slices")
    x, skips = inputs, []
    for i in range(UNET_DEPTH):
        x = _double_conv(x, _scaled(config.base_filters, 2 ** i), f"enc{i + 1}", config.baseline_batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(POOL_SIZE, name=f"enc{i + 1}_pool")(x)
    x = _double_conv(x, _scaled(config.base_filters, 2 ** UNET_DEPTH), "bottom", config.baseline_batch_norm)
    for i in reversed(range(UNET_DEPTH)):
        x = layers.Conv2DTranspose(_scaled(config.base_filters, 2 ** i), POOL_SIZE, strides=POOL_SIZE,
                                   kernel_initializer=INIT, name=f"dec{i + 1}_up")(x)
        x = layers.Concatenate(name=f"dec{i + 1}_concat")([skips[i], x])
        x = _double_conv(x, _scaled(config.base_filters, 2 ** i), f"dec{i + 1}", config.baseline_batch_norm)
    fused = layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=OUTPUT_BIAS_INIT, name=FUSED)(x)
    return keras.Model(inputs, {FUSED: fused}, name="unet")
