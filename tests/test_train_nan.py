"""NaN in training: every stage stops with TrainingCollapsed, and no NaN weights are saved."""
from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest

from pancreas_seg import train as train_module
from pancreas_seg.collapse import CollapseGuard
from pancreas_seg.config import apply_overrides, preset
from pancreas_seg.data.splits import Fold
from pancreas_seg.errors import TrainingCollapsed
from pancreas_seg.train import LAST_NAME, train

FOLD = Fold(0, train=("CASE_00", "CASE_01"), validation=("CASE_02",), test=("CASE_03",))
SAVERS = (keras.callbacks.BackupAndRestore, keras.callbacks.CSVLogger, train_module.AtomicCheckpoint)


@pytest.mark.parametrize("patience", [3, None], ids=["selects", "fine-tunes"])
def test_nan_stops_come_before_everything_that_saves(tmp_path, patience):
    guard = CollapseGuard("full", "jac", "fused_loss", np.zeros((1, 8, 8, 3), np.float32))
    callbacks = train_module._callbacks(preset("testing"), tmp_path / "full", "val_dice", "max", patience, guard)
    kinds = [type(callback) for callback in callbacks]
    first_saver = min(i for i, kind in enumerate(kinds) if issubclass(kind, SAVERS))
    assert kinds.index(keras.callbacks.TerminateOnNaN) < first_saver
    assert callbacks.index(guard) < first_saver


class BlowUp(keras.callbacks.Callback):
    """Turns every weight into NaN in epoch ``epoch`` (counted from 0) of the stage, before or
    after its first step (an update that blew up). The logged loss may stay finite (a clipped
    probability is), so only a check of the weights themselves sees it."""

    def __init__(self, epoch: int, when: str):
        super().__init__()
        self.epoch, self.when, self._current = epoch, when, -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def _poison(self):
        if self._current == self.epoch:
            for weight in self.model.trainable_weights:
                weight.assign(np.full(weight.shape, np.nan, weight.dtype))

    def on_train_batch_begin(self, batch, logs=None):
        if self.when == "before_step":
            self._poison()

    def on_train_batch_end(self, batch, logs=None):
        if self.when == "after_step":
            self._poison()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before_step", "after_step"])
def test_a_nan_run_stops_and_keeps_the_last_finite_model(tiny_store, tmp_path, when):
    config = apply_overrides(preset("testing"), ["data.input_size=32", "data.focus_fraction=1.0",
                                                 "model.name=pnet_msa", "train.stagewise=false",
                                                 "train.epochs_finetune=0", "train.epochs_full=3",
                                                 "train.patience=3"])
    config = replace(config, train=replace(config.train, steps_per_epoch=1, workers=0))
    with pytest.raises(TrainingCollapsed, match="stage full, epoch 2: non-finite"):
        train(config, tmp_path / "run", tiny_store, FOLD, progress=False, callbacks=[BlowUp(1, when)])
    last = keras.saving.load_model(tmp_path / "run" / "full" / LAST_NAME, safe_mode=True, compile=False)
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(weight))) for weight in last.weights)
