"""The trainer end to end on a tiny store: every registry model, resume after interruption."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

import keras
import numpy as np
import pytest

from pancreas_seg import train as train_module
from pancreas_seg.config import apply_overrides, preset
from pancreas_seg.data.splits import Fold
from pancreas_seg.train import train

pytestmark = pytest.mark.slow  # every test here trains real models

FOLD = Fold(0, train=("CASE_00", "CASE_01"), validation=("CASE_02",), test=("CASE_03",))


def tiny_config(model: str, *overrides: str):
    config = apply_overrides(preset("testing"), ["data.input_size=32", "data.focus_fraction=1.0",
                                                 f"model.name={model}", *overrides])
    return replace(config, train=replace(config.train, steps_per_epoch=1, workers=0))


@pytest.mark.parametrize("model", ["pnet_msa", "pnet64", "hnn", "unet", "cnn_rnn"])
def test_every_model_trains_and_writes_a_loadable_run(model, tiny_store, tmp_path):
    config = tiny_config(model, "train.stagewise=false", "train.epochs_finetune=0")
    result = train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    for name in ("config.json", "model.keras", "last.keras", "validation.json", "state.json"):
        assert (tmp_path / "run" / name).is_file(), name
    loaded = keras.saving.load_model(result.model_path, safe_mode=True, compile=False)
    shape = (1, 3, 32, 32, 3) if model == "cnn_rnn" else (1, 32, 32, 3)
    outputs = loaded.predict(np.full(shape, 0.5, np.float32), verbose=0)
    fused = outputs["fused"] if isinstance(outputs, dict) else outputs
    assert fused.shape == shape[:-1] + (1,) and np.all((fused >= 0) & (fused <= 1))
    assert 0.0 <= result.final_dice <= 1.0
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["config"]["model"]["name"] == model


def test_stagewise_growth_runs_one_stage_per_unit(tiny_store, tmp_path):
    config = tiny_config("pnet_msa", "model.units=3", "train.epochs_finetune=1")
    train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["order"] == ["unit_1", "unit_2", "full", "finetune"]


class _Interrupt(keras.callbacks.Callback):
    """Stops the process after the first epoch of the ``full`` stage, like a killed job."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_interrupted_run_resumes_where_it_stopped(tiny_store, tmp_path, monkeypatch, caplog):
    config = tiny_config("pnet_msa", "model.units=2", "train.epochs_full=2", "train.patience=5",
                         "train.epochs_finetune=0")
    original = train_module._callbacks

    def interrupting(config, stage_dir, *args):
        callbacks = original(config, stage_dir, *args)
        return callbacks + [_Interrupt()] if stage_dir.name == "full" else callbacks

    monkeypatch.setattr(train_module, "_callbacks", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    unit_model = (tmp_path / "run" / "unit_1" / "best.keras").stat().st_mtime
    assert (tmp_path / "run" / "full" / "backup").is_dir()
    monkeypatch.setattr(train_module, "_callbacks", original)
    with caplog.at_level(logging.INFO, logger="pancreas_seg.train"):
        train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    assert "finished stages unit_1 are kept" in caplog.text and "resuming stage full after epoch 1 of 2" in caplog.text
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["stages"]["full"]["epochs"] == 2, "resumed run must continue at epoch 2, not start over"
    assert (tmp_path / "run" / "unit_1" / "best.keras").stat().st_mtime == unit_model, "finished stage retrained"
    history = (tmp_path / "run" / "full" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1"]


class _OneEpochPerStage(keras.callbacks.Callback):
    """Counts epochs and stops every stage after its first (what a time budget does)."""

    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        self.model.stop_training = True


def test_callbacks_join_every_stage(tiny_store, tmp_path):
    config = tiny_config("pnet_msa", "model.units=2", "train.epochs_per_unit=3", "train.epochs_full=3",
                         "train.patience=5", "train.epochs_finetune=0")
    clock = _OneEpochPerStage()
    train(config, tmp_path / "run", tiny_store, FOLD, progress=False, callbacks=[clock])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["order"] == ["unit_1", "full"]
    assert [state["stages"][stage]["epochs"] for stage in state["order"]] == [1, 1]
    assert clock.epochs == 2


def test_resume_with_another_config_is_refused(tiny_store, tmp_path):
    config = tiny_config("unet", "train.epochs_finetune=0")
    train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    with pytest.raises(ValueError, match="another config"):
        train(apply_overrides(config, ["train.loss=ce"]), tmp_path / "run", tiny_store, FOLD, progress=False)


def test_mixed_precision_trains_and_restores_the_policy(tiny_store, tmp_path):
    config = tiny_config("unet", "train.mixed_precision=true", "train.epochs_finetune=0")
    result = train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    assert keras.mixed_precision.global_policy().name == "float32"
    loaded = keras.saving.load_model(result.model_path, safe_mode=True, compile=False)
    assert np.isfinite(result.final_dice)
    outputs = loaded.predict(np.full((1, 32, 32, 3), 0.5, np.float32), verbose=0)
    assert outputs["fused"].shape == (1, 32, 32, 1) and np.all(np.isfinite(outputs["fused"]))


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_stage():
    config = apply_overrides(preset("testing"), ["train.lr_schedule=cosine", "train.steps_per_epoch=10"])
    optimizer = train_module._optimizer(config, 1e-3, stage_steps=30)
    schedule = optimizer._learning_rate  # the schedule object, evaluated at a step below
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(15)) == pytest.approx(0.5e-3, rel=1e-5)  # half-way down the cosine
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-9)
    constant = train_module._optimizer(preset("testing"), 1e-3, stage_steps=30)
    assert float(constant.learning_rate) == pytest.approx(1e-3)
    no_stage = train_module._optimizer(config, 1e-3)  # evaluation, benchmarks: no stage to decay over
    assert float(no_stage.learning_rate) == pytest.approx(1e-3)


def _fitted_weights(prebuild: bool) -> tuple[list[np.ndarray], int, int]:
    """A tiny PNet-MSA fitted on fixed batches: (weights, variables before fit, variables after)."""
    config = preset("testing")
    keras.utils.set_random_seed(0)
    model = train_module.compile_model(train_module.build_model(config.model, 32), config, 1e-3)
    rng = np.random.default_rng(0)
    batches = [(rng.random((2, 32, 32, 3), dtype=np.float32),
                (rng.random((2, 32, 32, 1)) > 0.8).astype(np.float32)) for _ in range(3)]
    if prebuild:
        train_module.build_training_state(model, batches[0][0][:1], batches[0][1][:1])

    def variables() -> int:
        return len(model.optimizer.variables) + len(model.metrics_variables)

    before = variables()
    targets = ((x, train_module.deep_supervision_targets(model, y)) for x, y in batches)
    model.fit(targets, steps_per_epoch=3, epochs=1, verbose=0)
    return [w.numpy() for w in model.weights], before, variables()


def test_training_state_built_before_fit_changes_no_result():
    built, before, after = _fitted_weights(prebuild=True)
    assert after == before  # nothing left for the traced train step to create (it would be traced twice)
    plain, plain_before, plain_after = _fitted_weights(prebuild=False)
    assert plain_after > plain_before  # without it Keras creates them while tracing
    assert all(np.array_equal(a, b) for a, b in zip(built, plain))


def _batch_norm_statistics(model) -> list[np.ndarray]:
    return [np.array(w) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.non_trainable_weights]


def _conv_kernels(model) -> list[np.ndarray]:
    return [np.array(layer.kernel) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_end_to_end_stage_keeps_the_cnn_batch_norm_statistics(tiny_store, tmp_path):
    from pancreas_seg.models.birnn import cnn_of

    config = tiny_config("cnn_rnn", "train.stagewise=false", "train.epochs_finetune=0", "train.epochs_end_to_end=2")
    train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["order"] == ["full", "rnn", "end_to_end"]
    load = lambda stage: keras.saving.load_model(tmp_path / "run" / state["stages"][stage]["model"], compile=False)
    before, after = cnn_of(load("rnn")), cnn_of(load("end_to_end"))
    statistics = list(zip(_batch_norm_statistics(before), _batch_norm_statistics(after)))
    assert statistics, "the CNN has batch norms to check"
    for old, new in statistics:
        np.testing.assert_array_equal(old, new)
    moved = [not np.array_equal(a, b) for a, b in zip(_conv_kernels(before), _conv_kernels(after))]
    assert any(moved), "the end-to-end stage must still train the CNN's kernels"
    # trained on training + validation: the last epoch is kept, never one chosen on its own training data
    assert state["stages"]["end_to_end"]["selected_by"] == "last epoch"
    assert state["stages"]["full"]["selected_by"] == "validation"
    full = state["stages"]["full"]
    assert 1 <= full["selected_epoch"] <= full["epochs"]
    assert full["selected_slices"] == full["selected_epoch"] * config.train.steps_per_epoch * config.train.batch_size


def test_untrained_birnn_passes_the_cnn_probabilities_nearly_unchanged():
    from pancreas_seg.config import ModelConfig
    from pancreas_seg.models.birnn import build_birnn

    rng = np.random.default_rng(0)
    probabilities = np.clip(rng.normal(0.5, 0.35, size=(2, 5, 16, 16, 1)), 0, 1).astype("float32")
    refined = build_birnn(ModelConfig(), 16, 5).predict(probabilities, verbose=0)
    assert np.sqrt(np.mean((refined - probabilities) ** 2)) < 0.1
    assert np.mean((refined > 0.5) == (probabilities > 0.5)) > 0.95


class _Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("stdout_tty, stderr_tty, expected", [
    (True, True, 1),    # an interactive terminal: Keras's per-step bar
    (False, True, 2),   # `train ... > log` in a terminal: Keras writes to stdout, so one line per epoch
    (True, False, 1),
    (False, False, 2),  # nohup, CI, a job scheduler
])
def test_progress_bar_only_when_stdout_is_a_terminal(monkeypatch, stdout_tty, stderr_tty, expected):
    monkeypatch.setattr(train_module.sys, "stdout", _Stream(stdout_tty))
    monkeypatch.setattr(train_module.sys, "stderr", _Stream(stderr_tty))
    assert train_module._fit_verbosity(progress=True) == expected
    assert train_module._fit_verbosity(progress=False) == 0


def test_training_log_without_a_terminal_has_one_line_per_epoch(tiny_store, tmp_path, capfd):
    config = tiny_config("pnet64", "train.stagewise=false", "train.epochs_finetune=0", "train.epochs_full=2")
    train(config, tmp_path / "run", tiny_store, FOLD, progress=True)
    stdout = capfd.readouterr().out
    assert "\r" not in stdout and "\x1b[" not in stdout
    epoch_lines = [line for line in stdout.splitlines() if " - loss: " in line or "- loss:" in line]
    assert len(epoch_lines) == 2, stdout


class _ListFlow:
    """A validation flow over fixed points, as the trainer sees one."""

    def __init__(self, points):
        self.points = points

    def reset_state(self):
        pass

    def __iter__(self):
        return iter(self.points)


def _point(label: float, pancreas: bool):
    mask = np.zeros((4, 4, 1), np.float32)
    mask[1, 1] = float(pancreas)
    return [np.full((4, 4, 3), label, np.float32), mask]


def test_collapse_probe_takes_slices_with_pancreas():
    # Validation flows start at the pancreas-free bottom of the first case: a network that
    # answers 0 there is right, so probing those slices would call a working network collapsed.
    flow = _ListFlow([_point(0, False), _point(1, False), _point(2, True), _point(3, False), _point(4, True),
                      _point(5, True)])
    probe, masks = train_module._probe_batch(flow, 2)
    assert [float(p[0, 0, 0]) for p in probe] == [2.0, 4.0]
    assert masks.shape == (2, 4, 4, 1) and masks.sum() == 2


def test_collapse_probe_falls_back_to_the_first_slices_without_enough_pancreas():
    flow = _ListFlow([_point(0, False), _point(1, True), _point(2, False)])
    probe, masks = train_module._probe_batch(flow, 2)
    assert [float(p[0, 0, 0]) for p in probe] == [0.0, 1.0]
    assert masks.sum() == 1


def test_an_end_to_end_stage_that_never_gets_back_to_acc_t_keeps_the_rnn_model(tiny_store, tmp_path, monkeypatch,
                                                                               caplog):
    from pancreas_seg.run_folder import RunState

    finish = RunState.finish

    def unreachable_acc_t(self, stage, **values):  # an rnn stage no fine-tuning epoch can match
        finish(self, stage, **({**values, "best": 2.0} if stage == "rnn" else values))

    monkeypatch.setattr(RunState, "finish", unreachable_acc_t)
    config = tiny_config("cnn_rnn", "train.stagewise=false", "train.epochs_finetune=0", "train.epochs_end_to_end=1")
    with caplog.at_level(logging.WARNING, logger="pancreas_seg.train"):
        result = train(config, tmp_path / "run", tiny_store, FOLD, progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["order"] == ["full", "rnn", "end_to_end"]
    weights = lambda path: keras.saving.load_model(path, compile=False).get_weights()
    final, rnn = weights(result.model_path), weights(tmp_path / "run" / state["stages"]["rnn"]["model"])
    tuned = weights(tmp_path / "run" / state["stages"]["end_to_end"]["model"])
    assert all(np.array_equal(a, b) for a, b in zip(final, rnn))
    assert not all(np.array_equal(a, b) for a, b in zip(final, tuned))
    assert "below Acc_t" in caplog.text and "rnn stage's model is kept" in caplog.text
