"""Collapse detection while training: a run that stopped learning is an error, not a result.

A network trained from scratch can die in its first epoch: activations grow without bound, the
sigmoid output saturates and the Jaccard loss sits at 1 with a vanishing gradient (what UNet and
HNN did here without batch normalisation). Model selection would then quietly keep a snapshot of
the dead network. :class:`CollapseGuard` checks each epoch and raises
:class:`~pancreas_seg.errors.TrainingCollapsed` naming the stage, the epoch and the symptom:

* a non-finite loss or metric (checked after every step, as ``keras.callbacks.TerminateOnNaN``,
  and at the epoch's end), or a non-finite weight (an update that turned the weights into NaN
  can leave the loss finite: a clipped probability is);
* the Jaccard loss of the fused output pinned at its ceiling for the whole epoch
  (epoch mean >= ``1 - SATURATION_TOLERANCE``) and on the probe batch too: an epoch whose few
  batches held no pancreas has a Jaccard loss of exactly 1 whatever the network answers, so only
  a probe with pancreas that scores no overlap either confirms the saturation;
* a constant output: the fused probability on a fixed validation batch spans less than
  ``CONSTANT_SPAN`` (e.g. exactly 0 everywhere).

The guard goes before the backup and the checkpoints (``train._callbacks``): Keras runs the
epoch-end callbacks in order, so a collapsed or NaN network is never saved as ``last.keras``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import keras
import numpy as np

from pancreas_seg.errors import TrainingCollapsed
from pancreas_seg.losses import batch_jaccard_loss

SATURATION_TOLERANCE = 1e-3  # Jaccard loss within this of 1 for a whole epoch = saturated
CONSTANT_SPAN = 1e-4  # max - min of the fused probability on the probe batch below this = constant output
JACCARD_LOSSES = ("jac", "jac_slice")  # losses whose ceiling is 1
SHOWN_WEIGHTS = 3  # non-finite weights named in the message


def _fused(outputs: Any) -> np.ndarray:
    """The fused probability of a model's outputs (a dict of maps, or one map)."""
    if isinstance(outputs, Mapping):
        outputs = outputs["fused"]
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)


def non_finite(logs: Mapping[str, Any] | None) -> list[str]:
    """Names of the logged values that are NaN or infinite."""
    bad = []
    for name, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad.append(name)
    return sorted(bad)


class CollapseGuard(keras.callbacks.Callback):
    """Raise :class:`TrainingCollapsed` when the stage's network has collapsed (module docstring).

    Args:
        stage: the stage's name, for the message.
        loss: ``TrainConfig.loss``; the saturation check applies to the Jaccard losses.
        fused_loss: the log key of the fused output's training loss (``"fused_loss"`` or ``"loss"``).
        probe: one validation input batch, predicted at each epoch end for the constant-output check.
        probe_mask: its masks, which confirm a saturated training loss (``None``: the loss alone decides).

    Epochs are named from 1, as a person counts them (``history.csv`` counts from 0).
    """

    def __init__(self, stage: str, loss: str, fused_loss: str, probe: np.ndarray, probe_mask: np.ndarray | None = None):
        super().__init__()
        self.stage, self.loss, self.fused_loss, self.probe, self.probe_mask = stage, loss, fused_loss, probe, probe_mask
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = non_finite(logs)
        if bad:
            raise TrainingCollapsed(self.stage, self._epoch + 1, f"non-finite {', '.join(bad)} at step {batch}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = non_finite(logs)
        if bad:
            raise TrainingCollapsed(self.stage, epoch + 1, f"non-finite {', '.join(bad)}")
        weights = [weight.path for weight in self.model.weights
                   if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight)))]
        if weights:
            shown = ", ".join(weights[:SHOWN_WEIGHTS]) + (", ..." if len(weights) > SHOWN_WEIGHTS else "")
            raise TrainingCollapsed(self.stage, epoch + 1, f"non-finite weights ({len(weights)}: {shown})")
        fused = _fused(self.model(self.probe, training=False))
        value = logs.get(self.fused_loss)
        if self.loss in JACCARD_LOSSES and value is not None and _saturated(float(value)) \
                and not self._probe_overlaps(fused):
            raise TrainingCollapsed(self.stage, epoch + 1, f"the Jaccard loss of the fused output was {float(value):.4f} "
                                                       "over the whole epoch (its ceiling: the output is saturated)")
        span = float(fused.max() - fused.min())
        if span < CONSTANT_SPAN:
            raise TrainingCollapsed(self.stage, epoch + 1, f"the fused output is constant ({float(fused.mean()):.4f} "
                                                       "everywhere) on a validation batch")

    def _probe_overlaps(self, fused: np.ndarray) -> bool:
        """Whether the probe's pancreas gets a Jaccard loss (the training one) below the ceiling:
        the network answers. Without pancreas in the probe its loss is 1 whatever the output."""
        if self.probe_mask is None or self.probe_mask.shape != fused.shape or not np.any(self.probe_mask > 0):
            return False
        loss = keras.ops.convert_to_numpy(batch_jaccard_loss(self.probe_mask.astype(np.float64), fused))
        return not _saturated(float(loss[0]))


def _saturated(jaccard: float) -> bool:
    return jaccard >= 1.0 - SATURATION_TOLERANCE
