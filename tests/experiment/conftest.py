"""Shared by the experiment tests: stubs of the trainer and the predictor (the experiments layer
is under test, not the networks) and the testing preset's config of a table row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pancreas_seg.experiment import crossval
from pancreas_seg.experiment.rows import experiment_config
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.vocabulary import BASE_CNN, RNN_MODEL

STUB_PROBABILITY = 0.8  # stub predictor: this probability inside the blob, 0 outside
STUB_HISTORY = "epoch,loss,val_fused_dice\n0,0.9,0.25\n1,0.5,0.5\n"  # what Keras's CSVLogger writes
STUB_RNN_HISTORY = "epoch,loss,val_dice\n0,0.4,0.6\n"
BLOB_HU = 70  # between the blob's 100 HU and the body's 40 HU (tests/conftest.py blob_case)


class StubTrainer:
    """Leaves what the real trainer leaves behind, through its RunFolder: the finished CNN stage
    (and the BiRNN stage of ``cnn_rnn``) in state.json, then model.keras."""

    def __init__(self):
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, config, workdir, store, fold, progress=True):
        run = RunFolder(workdir)
        self.calls.append((config.model.name, run.root))
        state = run.state
        if not state.done("full"):
            run.stage_dir("full").mkdir(parents=True, exist_ok=True)
            (run.stage_dir("full") / "best.keras").write_bytes(b"cnn")
            (run.stage_dir("full") / "history.csv").write_text(STUB_HISTORY)
            state.finish("full", model="full/best.keras", best=0.5, epochs=2, selected_epoch=2,
                         selected_slices=2 * config.train.steps_per_epoch * config.train.batch_size,
                         selected_by="validation")
        if config.model.name == RNN_MODEL:
            run.stage_dir("rnn").mkdir(parents=True, exist_ok=True)
            (run.stage_dir("rnn") / "history.csv").write_text(STUB_RNN_HISTORY)
            state.finish("rnn", model="rnn/best.keras", best=0.6, epochs=1, selected_epoch=1,
                         selected_slices=config.train.steps_per_epoch * config.train.sequence_batch_size,
                         selected_by="validation")
        run.model_path.write_bytes(config.model.name.encode())


class StubPredictor:
    """``STUB_PROBABILITY`` where the blob's HU is high; BiRNN models add a little in the slices' ring."""

    def __init__(self):
        self.loads = 0
        self.scans = 0

    def __call__(self, model_path, config):
        self.loads += 1

        def predict(case, prepared):
            self.scans += 1
            return np.where(case.image > BLOB_HU, STUB_PROBABILITY, 0.0).astype(np.float32)

        return predict


def testing_config(model=BASE_CNN, loss="jac"):
    """The testing preset's CT config of one table row."""
    return experiment_config("testing", "ct", model, loss)


def stub_localiser(run_dir, config, store, progress=True):
    """Leaves what train_localiser leaves: localiser/model.keras and its margin."""
    folder = RunFolder(RunFolder(run_dir).localiser_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.model_path.write_bytes(b"localiser")
    folder.margin_path.write_text('{"through_plane_mm": 10.0, "inplane_mm": 10.0, "coverage_target": 0.995}')


@pytest.fixture
def stubs(monkeypatch):
    trainer, predictor = StubTrainer(), StubPredictor()
    monkeypatch.setattr(crossval, "_default_train", trainer)
    monkeypatch.setattr(crossval, "_default_predictor", predictor)
    monkeypatch.setattr(crossval, "_default_localiser", stub_localiser)
    return trainer, predictor
