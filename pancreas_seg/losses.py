"""Segmentation losses (paper Sec. III-C, Eq. 11-15; Table I): Jaccard (JAC), CE and HED's CBCE,
and :class:`BinaryDice`, the DSC of Ŷ monitored in training for model selection (Sec. IV-A).

Every loss takes ``y_true`` (binary mask, float {0, 1}) and ``y_pred`` (probabilities in [0, 1]) of
the same shape ``[B, H, W, 1]`` or ``[B, T, H, W, 1]`` float32 and returns per-sample values ``[B]``
(all non-batch axes reduced); Keras's ``compile`` then takes their mean over the batch
(``"sum_over_batch_size"``). The functions are registered Keras serializables, so a model compiled
with them also reloads with ``compile=True``; the trainer loads with ``compile=False`` and recompiles
with :func:`deep_supervision_losses`.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import ops

Loss = Callable[..., "keras.KerasTensor"]


def _sample_sum(x):
    """Sum over every axis but the batch axis: ``[B, ...] -> [B]``."""
    return ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)), axis=1)


def _sample_mean(x):
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package="pancreas_seg")
def jaccard_loss(y_true, y_pred):
    """Eq. 14 per sample: ``1 - sum_{f in Y+} y_f / (|Y+| + sum_{b in Y-} y_b)``, shape ``[B]``.

    Written as ``1 - I / D`` with ``I = sum y * p`` and ``D = sum y + sum (1 - y) * p``, so for binary
    ``y`` automatic differentiation gives exactly Eq. 15: ``-1 / D`` on Y+ and ``I / D**2`` on Y-.
    No epsilon is added (it would change Eq. 15): D >= |Y+| >= 1 whenever the slice has foreground,
    and when it has none I = 0. The only 0 / 0 is an empty mask with an all-zero prediction, defined
    as loss 0 with zero gradient (a "safe" denominator inside ``where`` keeps gradients finite).
    Note Eq. 15 itself: on a slice without foreground the loss is 1 - 0 = 1 for any non-zero
    prediction and its gradient is 0, so Eq. 14 does not push down false positives there.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    intersection = _sample_sum(y_true * y_pred)
    union = _sample_sum(y_true) + _sample_sum((1.0 - y_true) * y_pred)
    defined = union > 0
    safe_union = ops.where(defined, union, ops.ones_like(union))
    return ops.where(defined, 1.0 - intersection / safe_union, ops.zeros_like(union))


@keras.saving.register_keras_serializable(package="pancreas_seg")
def batch_jaccard_loss(y_true, y_pred):
    """Eq. 14 over the whole mini-batch: the pixels of all its slices form the set Y.

    Returns the batch's loss once per sample (``[B]``, all equal), so Keras's mean over the batch
    is that loss and its gradient is exactly Eq. 15 with the sums taken over the batch. This is the
    ``"jac"`` loss used in training: with the per-slice form (:func:`jaccard_loss`) a slice without
    pancreas has loss 1 and zero gradient for any prediction, so false positives on the many
    pancreas-free slices of a volume would never be penalised; over a batch that holds some
    foreground they are. Only a batch with no foreground and an all-zero prediction is 0 / 0,
    defined as loss 0.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    intersection = ops.sum(y_true * y_pred)
    union = ops.sum(y_true) + ops.sum((1.0 - y_true) * y_pred)
    defined = union > 0
    loss = ops.where(defined, 1.0 - intersection / ops.where(defined, union, 1.0), 0.0)
    return ops.zeros_like(_sample_sum(y_pred)) + loss


def _clipped(y_pred):
    eps = keras.config.epsilon()
    return ops.clip(y_pred, eps, 1.0 - eps)


@keras.saving.register_keras_serializable(package="pancreas_seg")
def cross_entropy(y_true, y_pred):
    """Pixel-wise binary cross-entropy, mean over pixels per sample, ``[B]``.

    ``-mean(y log p + (1 - y) log(1 - p))`` with p clipped to ``[eps, 1 - eps]``,
    ``eps = keras.config.epsilon()``.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    p = _clipped(y_pred)
    return -_sample_mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))


@keras.saving.register_keras_serializable(package="pancreas_seg")
def class_balanced_cross_entropy(y_true, y_pred):
    """HED's class-balanced cross-entropy [12] over the mini-batch, per sample ``[B]``.

    ``beta = |Y-| / |Y|`` with Y the pixels of the whole batch, as HED takes it over the image it
    is given and as the batch Jaccard loss takes its sums: a volume of slices, not one slice. Per
    sample ``-(beta sum_{Y+} log p + (1 - beta) sum_{Y-} log(1 - p)) / |Y_s|`` (|Y_s| its pixel count;
    HED sums, we divide so the scale matches :func:`cross_entropy`). With a per-slice beta a slice
    without pancreas has beta = 1 and loss 0 whatever it predicts, so false positives there would
    never be penalised; over a batch holding some pancreas they are. A batch without any
    foreground still has beta = 1 and loss 0. p clipped as in :func:`cross_entropy`.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    p = _clipped(y_pred)
    beta = 1.0 - ops.mean(y_true)  # |Y-| / |Y| over the batch, a scalar
    pixel = beta * y_true * ops.log(p) + (1.0 - beta) * (1.0 - y_true) * ops.log(1.0 - p)
    return -_sample_mean(pixel)


LOSSES: dict[str, Loss] = {
    "jac": batch_jaccard_loss,
    "jac_slice": jaccard_loss,
    "ce": cross_entropy,
    "cbce": class_balanced_cross_entropy,
}


def get_loss(name: str) -> Loss:
    """The loss named ``name`` (``TrainConfig.loss``); unknown names raise ``ValueError``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None


def deep_supervision_losses(model: keras.Model, name: str) -> dict[str, Loss]:
    """Eq. 4, ``L(Y-hat, Y) + sum_k L(U_k, Y)``, as ``{output name: loss}`` for ``model.compile``.

    Every output (``"fused"``, ``"side_1"``, ...) gets the same loss with weight 1; Keras sums them.
    Feed the same mask to every output, :func:`deep_supervision_targets`.
    """
    loss = get_loss(name)
    return {output: loss for output in model.output_names}


def deep_supervision_targets(model: keras.Model, mask):
    """The ground truth ``mask`` in the structure ``model`` expects for ``fit``/``train_on_batch``:
    ``{name: mask}`` for every output of a dict-output model (PNet-MSA, PNet-64, HNN, UNet), the
    mask itself for a single-output model (BiRNN, CNN-RNN)."""
    if isinstance(model.output, dict):
        return {name: mask for name in model.output}
    return mask


@keras.saving.register_keras_serializable(package="pancreas_seg")
class BinaryDice(keras.metrics.Metric):
    """DSC of the thresholded prediction, pooled over all pixels seen (Sec. IV-A)."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = keras.ops.cast(y_true > 0.5, "float32")
        pred = keras.ops.cast(y_pred > self.threshold, "float32")
        self.intersection.assign_add(keras.ops.sum(truth * pred))
        self.total.assign_add(keras.ops.sum(truth) + keras.ops.sum(pred))

    def result(self):
        return keras.ops.where(self.total > 0, 2.0 * self.intersection / keras.ops.maximum(self.total, 1.0), 1.0)

    def reset_state(self):
        self.intersection.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
