"""Collapse detection (collapse.py): a dead network stops training with one clear error."""
import keras
import numpy as np
import pytest

from pancreas_seg.collapse import CollapseGuard, non_finite
from pancreas_seg.errors import TrainingCollapsed


def constant_model(value: float, size: int = 8) -> keras.Model:
    """A model whose fused output is ``value`` everywhere, whatever the input."""
    inputs = keras.Input((size, size, 3))
    zero = keras.layers.Lambda(lambda x: 0.0 * x[..., :1])(inputs)
    fused = keras.layers.Lambda(lambda x: x + value)(zero)
    return keras.Model(inputs, {"fused": fused})


def guard(model, loss="jac"):
    probe = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    callback = CollapseGuard("full", loss, "fused_loss", probe)
    callback.set_model(model)
    return callback


def test_constant_output_is_a_collapse_named_by_stage_and_epoch():
    callback = guard(constant_model(0.0))
    with pytest.raises(TrainingCollapsed, match=r"stage full, epoch 3: the fused output is constant \(0.0000"):
        callback.on_epoch_end(2, {"fused_loss": 0.7})


def test_saturated_jaccard_loss_is_a_collapse_but_not_for_cross_entropy():
    identity = keras.Model(*(lambda i: (i, {"fused": keras.layers.Lambda(lambda x: x[..., :1])(i)}))(
        keras.Input((8, 8, 3))))
    with pytest.raises(TrainingCollapsed, match="epoch 1: the Jaccard loss of the fused output was 1.0000"):
        guard(identity).on_epoch_end(0, {"fused_loss": 0.99995})
    guard(identity, loss="ce").on_epoch_end(0, {"fused_loss": 0.99995})  # CE has no ceiling at 1
    guard(identity).on_epoch_end(0, {"fused_loss": 0.95})  # learning: no error


def test_a_saturated_epoch_is_confirmed_on_the_probe_with_pancreas():
    # An epoch whose batches held no pancreas has a Jaccard loss of exactly 1 whatever the output;
    # the probe's pancreas tells a network that answers from a dead one.
    probe = np.zeros((2, 8, 8, 3), np.float32)
    mask = np.zeros((2, 8, 8, 1), np.float32)
    mask[:, 2:5, 2:5] = 1.0
    answering = CollapseGuard("full", "jac", "fused_loss", probe, mask)
    answering.set_model(keras.Model(*(lambda i: (i, {"fused": keras.layers.Lambda(
        lambda x: keras.ops.ones_like(x[..., :1]) * keras.ops.reshape(keras.ops.linspace(0.2, 0.8, 64), (8, 8, 1))
    )(i)}))(keras.Input((8, 8, 3)))))
    answering.on_epoch_end(0, {"fused_loss": 1.0})
    dead = CollapseGuard("full", "jac", "fused_loss", probe, mask)
    dead.set_model(keras.Model(*(lambda i: (i, {"fused": keras.layers.Lambda(
        lambda x: 1e-7 * keras.ops.reshape(keras.ops.linspace(0.0, 1.0, 64), (8, 8, 1)) + 0.0 * x[..., :1]
    )(i)}))(keras.Input((8, 8, 3)))))
    with pytest.raises(TrainingCollapsed, match="the Jaccard loss of the fused output was 1.0000"):
        dead.on_epoch_end(0, {"fused_loss": 1.0})
    no_pancreas = CollapseGuard("full", "jac", "fused_loss", probe, np.zeros_like(mask))
    no_pancreas.set_model(answering.model)
    with pytest.raises(TrainingCollapsed, match="the Jaccard loss"):  # nothing to confirm on: the loss decides
        no_pancreas.on_epoch_end(0, {"fused_loss": 1.0})


def test_non_finite_values_stop_at_the_step():
    assert non_finite({"loss": float("nan"), "dice": 0.5, "val_loss": float("inf")}) == ["loss", "val_loss"]
    callback = guard(constant_model(0.3))
    callback.on_epoch_begin(4)
    with pytest.raises(TrainingCollapsed, match="epoch 5: non-finite loss at step 7"):
        callback.on_train_batch_end(7, {"loss": float("nan")})
