"""Training (paper Sec. III-A, IV-A, IV-D): a typed :func:`train` plus its stages.

Stages of one run, each resumable:

1. ``unit_k`` (PNet-MSA with ``stagewise``): grow the network from scratch one unit at a time;
   unit k+1 is added when the validation loss of U_k (L_k, Eq. 2) stops improving.
2. ``full``: the whole CNN with the deep-supervision objective of Eq. 4; the epoch with the best
   validation DSC of Ŷ is selected (its DSC is Acc_t).
3. ``finetune``: training + validation subsets together until the validation DSC is back at
   Acc_t (Sec. IV-A); a run that never gets back there keeps the stage-2 model.
4. ``rnn`` and ``end_to_end`` (model ``cnn_rnn``): the BiRNN on slice runs with the CNN frozen,
   then the CNN-RNN stack end to end (Sec. IV-D), kept only if it gets back to the ``rnn``
   stage's validation DSC, as in stage 3.

Every epoch is checkpointed (``keras.callbacks.BackupAndRestore``), so an interrupted run
resumes within the epoch it was in; finished stages are recorded in ``state.json`` and their
models kept, so they are not trained again.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np

from pancreas_seg.collapse import CollapseGuard
from pancreas_seg.config import ExperimentConfig
from pancreas_seg.data.dataflow import (SequenceFlow, SliceStackFlow, as_generator, batched, close_flow,
                                        prepare_cases)
from pancreas_seg.data.preprocess import PreparedCase
from pancreas_seg.data.splits import Fold
from pancreas_seg.data.store import CaseStore
from pancreas_seg.distribute import Worker, describe_devices, distribution_scope, weights_digest, worker_folder
from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write, atomic_write_json
from pancreas_seg.losses import BinaryDice, deep_supervision_losses, deep_supervision_targets
from pancreas_seg.models.birnn import build_cnn_rnn, freeze_cnn_batch_norm, set_cnn_trainable
from pancreas_seg.models.build import build_model, default_jit_compile, transfer_weights
from pancreas_seg.models.pnet import FUSED
from pancreas_seg.run_folder import (BACKUP_DIR, BEST_NAME, FINE_TUNED_FROM, HISTORY_NAME, LAST_NAME,
                                     TENSORBOARD_DIR, RunFolder, RunIdentity, read_history)
from pancreas_seg.vocabulary import BASE_CNN, OPTIMIZER_NAMES, RNN_MODEL

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the run's outputs are and what model selection found."""

    workdir: Path
    model_path: Path
    selected_dice: float | None
    final_dice: float | None
    worker: Worker = Worker()  # this process among the workers of multi_worker training (module distribute)
    weights_digest: str = ""  # short hash of the final weights: equal on every worker


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Keras's ``mixed_float16`` policy while training when ``mixed``; the previous policy after."""
    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _learning_rate(config: ExperimentConfig, learning_rate: float,
                   stage_steps: int | None) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``learning_rate``, or its cosine decay to zero over the ``stage_steps`` optimiser steps of a
    stage; constant when no stage length is given (evaluation, benchmarks)."""
    if config.train.lr_schedule == "cosine" and stage_steps is not None:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, stage_steps))
    return learning_rate


def _optimizer(config: ExperimentConfig, learning_rate: float,
               stage_steps: int | None = None) -> keras.optimizers.Optimizer:
    learning_rate = _learning_rate(config, learning_rate, stage_steps)
    if config.train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    if config.train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.train.momentum)
    raise ValueError(f"unknown optimizer {config.train.optimizer!r}; choose one of {OPTIMIZER_NAMES}")


def compile_model(model: keras.Model, config: ExperimentConfig, learning_rate: float,
                  epochs: int | None = None) -> keras.Model:
    """Eq. 4: the chosen loss on Ŷ plus on every side output U_k; DSC of Ŷ as the metric.
    ``epochs``: the stage's length, over which a cosine learning-rate schedule decays."""
    dice = [BinaryDice(config.train.threshold)]
    stage_steps = None if epochs is None else epochs * config.train.steps_per_epoch
    model.compile(optimizer=_optimizer(config, learning_rate, stage_steps),
                  loss=deep_supervision_losses(model, config.train.loss),
                  metrics={FUSED: dice} if isinstance(model.output, dict) else dice,
                  jit_compile=default_jit_compile())
    return model


def build_training_state(model: keras.Model, inputs: np.ndarray, mask: np.ndarray) -> None:
    """Create a compiled model's optimizer state and loss and metric trackers from one batch,
    eagerly, before ``fit``.

    Under TensorFlow without a distribution strategy Keras creates them while tracing the train
    step, and a ``tf.function`` that creates variables is traced twice (~10 s per stage on the
    ``cpu`` preset). Weights and batch-norm statistics are untouched; the trackers are reset.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    targets = deep_supervision_targets(model, mask)
    predicted = model(inputs, training=False)
    model.compute_loss(inputs, targets, predicted)
    model.compute_metrics(inputs, targets, predicted, sample_weight=None)
    model.reset_metrics()


def _state_built_while_tracing() -> bool:
    """Whether Keras would create the loss and metric trackers inside the traced train step."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    return not tf.distribute.has_strategy()


def dice_log_name(model: keras.Model, validation: bool = True) -> str:
    """Name Keras logs the DSC of Ŷ under: prefixed by the output name only when there are several."""
    name = f"{FUSED}_dice" if len(model.outputs) > 1 else "dice"
    return f"val_{name}" if validation else name


def _supervised(model: keras.Model, flow_batches: Iterator) -> Iterator:
    """``(inputs, targets)`` batches with the mask given to every output (Eq. 4)."""
    for inputs, mask in flow_batches:
        yield inputs, deep_supervision_targets(model, mask)


def _callbacks(config: ExperimentConfig, stage_dir: Path, monitor: str, mode: str,
               patience: int | None, guard: CollapseGuard) -> list[keras.callbacks.Callback]:
    """NaN and collapse stops, checkpoints, history and, for a stage that selects on validation
    (``patience`` given), early stopping and the ``"plateau"`` learning-rate drops.

    ``TerminateOnNaN`` stops at the step whose loss is non-finite and ``guard`` raises
    :class:`~pancreas_seg.errors.TrainingCollapsed`; both come before the backup, the history
    and the checkpoints, whose epoch-end saves then never see a NaN or collapsed network."""
    seen = read_history(stage_dir / HISTORY_NAME).get(monitor)  # a resumed stage keeps its best so far
    best = (max(seen) if mode == "max" else min(seen)) if seen else None
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        guard,
        keras.callbacks.BackupAndRestore(str(stage_dir / BACKUP_DIR)),
        keras.callbacks.CSVLogger(str(stage_dir / HISTORY_NAME), append=True),
        AtomicCheckpoint(stage_dir / BEST_NAME, monitor=monitor, mode=mode, best=best),
        AtomicCheckpoint(stage_dir / LAST_NAME),
    ]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
        if config.train.lr_schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=config.train.lr_factor, patience=config.train.lr_patience,
                min_lr=config.train.min_learning_rate, min_delta=0.0))
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(stage_dir / TENSORBOARD_DIR), write_graph=False))
    return callbacks


@dataclass
class _Data:
    """Prepared cases of the fold: training, validation."""

    train: list[PreparedCase]
    validation: list[PreparedCase]


class Trainer:
    """Runs the stages of :func:`train` for one fold in one work folder."""

    def __init__(self, config: ExperimentConfig, run: RunFolder, data: _Data, progress: bool,
                 callbacks: Sequence[keras.callbacks.Callback] = ()):
        self.config = config
        self.run = run
        self.data = data
        self.progress = progress
        self.callbacks = list(callbacks)
        self.state = run.state

    def _fit(self, stage: str, model: keras.Model, flow_cls, train_cases: Sequence[PreparedCase],
             epochs: int, batch_size: int, patience: int | None, monitor: str | None = None,
             mode: str = "max", stop_at: float | None = None) -> keras.Model:
        """Fit ``model`` on ``train_cases`` for one stage.

        A stage trained on the training cases returns its best epoch by ``monitor`` (default:
        validation DSC of Ŷ) and stops after ``patience`` epochs without a better one. A stage
        that also trains on the validation cases (``stop_at`` given: Sec. IV-A's "until the
        validation accuracy is back at Acc_t") returns its last epoch: a model is never chosen on
        data it trained on. A collapse raises :class:`~pancreas_seg.errors.TrainingCollapsed`.
        """
        monitor = monitor or dice_log_name(model)
        selects = stop_at is None
        stage_dir = self.run.stage_dir(stage)
        stage_dir.mkdir(parents=True, exist_ok=True)
        if (stage_dir / BACKUP_DIR).is_dir():
            done = len(read_history(stage_dir / HISTORY_NAME).get("epoch", []))
            log.info("%s: resuming stage %s after epoch %d of %d", self.run.root, stage, done, epochs)
        train_cfg = self.config.train
        train_flow = batched(flow_cls(train_cases, self.config.data, shuffle=True), batch_size,
                             workers=train_cfg.workers)
        val_flow = flow_cls(self.data.validation, self.config.data, shuffle=False, augment=False)
        val_steps = max(1, math.ceil(len(val_flow) / batch_size))
        val_batches = batched(val_flow, batch_size, repeat=True, remainder=True)
        probe, probe_mask = _probe_batch(val_flow, batch_size)
        guard = CollapseGuard(stage, train_cfg.loss, _fused_loss_name(model), probe, probe_mask)
        callbacks = _callbacks(self.config, stage_dir, monitor, mode, patience if selects else None, guard)
        callbacks += self.callbacks
        if _state_built_while_tracing():
            inputs, mask = next(iter(val_flow))
            build_training_state(model, inputs[None], mask[None])
        if stop_at is not None:
            callbacks.append(_StopWhenReached(monitor, stop_at))
        try:
            model.fit(_supervised(model, as_generator(train_flow)), steps_per_epoch=train_cfg.steps_per_epoch,
                      epochs=epochs, validation_data=_supervised(model, as_generator(val_batches)),
                      validation_steps=val_steps, callbacks=callbacks, shuffle=False,  # the dataflow shuffles
                      verbose=_fit_verbosity(self.progress))
        finally:
            close_flow(train_flow)
        best = stage_dir / BEST_NAME
        chosen_path = best if selects and best.is_file() else stage_dir / LAST_NAME
        chosen = keras.saving.load_model(chosen_path, safe_mode=True, compile=False)
        history = read_history(self.run.history_path(stage))
        values = np.asarray(history.get(monitor, [np.nan]), dtype=np.float64)
        if not selects:
            selected = len(values) - 1
        else:
            selected = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
        slices_per_epoch = train_cfg.steps_per_epoch * batch_size
        self.state.finish(stage, model=str(chosen_path.relative_to(self.run.root)),
                          epochs=len(history.get("epoch", [])), best=float(values[selected]),
                          selected_epoch=selected + 1, selected_slices=(selected + 1) * slices_per_epoch,
                          samples_per_step=batch_size, selected_by="validation" if selects else "last epoch")
        shutil.rmtree(stage_dir / BACKUP_DIR, ignore_errors=True)
        return chosen

    def _stage_model(self, stage: str) -> keras.Model:
        return keras.saving.load_model(self.state.model_path(stage), safe_mode=True, compile=False)

    def train_cnn(self) -> keras.Model:
        """Stages 1–3 for a 2D CNN; returns the fine-tuned CNN."""
        model_cfg = self.config.model
        cnn_cfg = replace(model_cfg, name=BASE_CNN) if model_cfg.name == RNN_MODEL else model_cfg
        train_cfg = self.config.train
        model = None
        if cnn_cfg.name == BASE_CNN and train_cfg.stagewise:
            for k in range(1, cnn_cfg.units):
                stage = f"unit_{k}"
                if self.state.done(stage):
                    model = self._stage_model(stage)
                    continue
                grown = build_model(replace(cnn_cfg, units=k), self.config.data.input_size)
                if model is not None:
                    transfer_weights(model, grown)
                compile_model(grown, self.config, train_cfg.learning_rate, train_cfg.epochs_per_unit)
                model = self._fit(stage, grown, SliceStackFlow, self.data.train, train_cfg.epochs_per_unit,
                                  train_cfg.batch_size, train_cfg.patience, f"val_side_{k}_loss", "min")
        if self.state.done("full"):
            model = self._stage_model("full")
        else:
            full = build_model(cnn_cfg, self.config.data.input_size)
            if model is not None:
                transfer_weights(model, full)
            compile_model(full, self.config, train_cfg.learning_rate, train_cfg.epochs_full)
            model = self._fit("full", full, SliceStackFlow, self.data.train, train_cfg.epochs_full,
                              train_cfg.batch_size, train_cfg.patience)
        if train_cfg.epochs_finetune > 0:
            if not self.state.done("finetune"):
                target = self.state.get("full")["best"]
                compile_model(model, self.config, train_cfg.learning_rate, train_cfg.epochs_finetune)
                self._fit("finetune", model, SliceStackFlow, self.data.train + self.data.validation,
                          train_cfg.epochs_finetune, train_cfg.batch_size, None, stop_at=target)
            model = self._kept_model("finetune")
        return model

    def train_rnn(self, cnn: keras.Model) -> keras.Model:
        """Stage 4: BiRNN with the CNN frozen, selected on validation (its DSC is Acc_t), then the
        CNN-RNN stack end to end on training + validation until the validation DSC is back at
        Acc_t (Sec. IV-A, IV-D), the CNN's batch norm in inference mode (its statistics frozen:
        a batch of one or two slice runs would replace them)."""
        train_cfg = self.config.train
        if self.state.done("rnn"):
            model = self._stage_model("rnn")
        else:
            model = build_cnn_rnn(self.config.model, cnn, self.config.data.input_size)
            set_cnn_trainable(model, False)
            compile_model(model, self.config, train_cfg.rnn_learning_rate, train_cfg.epochs_rnn)
            model = self._fit("rnn", model, SequenceFlow, self.data.train, train_cfg.epochs_rnn,
                              train_cfg.sequence_batch_size, train_cfg.patience)
        if train_cfg.epochs_end_to_end <= 0:
            return model
        if not self.state.done("end_to_end"):
            set_cnn_trainable(model, True)
            freeze_cnn_batch_norm(model)
            compile_model(model, self.config, train_cfg.finetune_learning_rate, train_cfg.epochs_end_to_end)
            self._fit("end_to_end", model, SequenceFlow, self.data.train + self.data.validation,
                      train_cfg.epochs_end_to_end, train_cfg.sequence_batch_size, None,
                      stop_at=self.state.best("rnn"))
        return self._kept_model("end_to_end")

    def _kept_model(self, stage: str) -> keras.Model:
        """What a fine-tuning stage leaves: its last epoch once the validation DSC is back at
        Acc_t, otherwise the model it started from (:meth:`RunState.kept`)."""
        if self.state.kept(stage):
            return self._stage_model(stage)
        earlier = FINE_TUNED_FROM[stage]
        log.warning("%s: stage %s ended at validation DSC %.3f, below Acc_t = %.3f of stage %s; "
                    "the %s stage's model is kept", self.run.root, stage, self.state.best(stage),
                    self.state.best(earlier), earlier, earlier)
        return self._stage_model(earlier)


def _probe_batch(flow, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch_size`` validation inputs with pancreas in their mask, and their masks,
    stacked: what the collapse check predicts. Pancreas-free slices would not do: a network that
    has learned to answer 0 on them is working, not collapsed. Falls back to the first inputs when
    fewer than ``batch_size`` hold pancreas."""
    flow.reset_state()
    with_pancreas, first = [], []
    for inputs, mask in flow:
        if len(first) < batch_size:
            first.append((inputs, mask))
        if np.any(mask > 0):
            with_pancreas.append((inputs, mask))
            if len(with_pancreas) == batch_size:
                break
    chosen = with_pancreas if len(with_pancreas) == batch_size else first
    return np.stack([inputs for inputs, _ in chosen]), np.stack([mask for _, mask in chosen])


def _fused_loss_name(model: keras.Model) -> str:
    """Log key of the training loss of Ŷ: ``fused_loss`` when the model has several outputs."""
    return f"{FUSED}_loss" if len(model.outputs) > 1 else "loss"


def _fit_verbosity(progress: bool) -> int:
    """Keras's per-step bar when stdout (where Keras writes it) is a terminal; one line per epoch
    when stdout goes to a file or pipe (a log, ``nohup``, a job scheduler), even if stderr is a terminal."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model at each epoch end (or only when ``monitor`` improves), atomically, so a
    run killed mid-save never leaves a damaged ``.keras`` file."""

    def __init__(self, path: Path, monitor: str | None = None, mode: str = "max", best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.best = best if best is not None else (-np.inf if mode == "max" else np.inf)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not (value > self.best if self.mode == "max" else value < self.best):
                return
            self.best = value
        atomic_save(self.model, self.path)


class _StopWhenReached(keras.callbacks.Callback):
    """Stop once ``monitor`` reaches ``target`` (fine-tuning until Acc_t is met again, Sec. IV-A)."""

    def __init__(self, monitor: str, target: float):
        super().__init__()
        self.monitor, self.target = monitor, target

    def on_epoch_end(self, epoch, logs=None):
        if logs and logs.get(self.monitor, -np.inf) >= self.target:
            self.model.stop_training = True


def train(config: ExperimentConfig, workdir: str | os.PathLike, store: CaseStore, fold: Fold,
          progress: bool = True, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train ``config.model`` on one cross-validation fold; resumable in ``workdir``.

    ``callbacks`` join every stage's own (e.g. a benchmark's timer).

    Writes ``config.json``, per-stage folders (``history.csv``, ``best.keras``, ``last.keras``,
    TensorBoard logs), ``model.keras`` (the selected final model), ``last.keras`` and
    ``validation.json`` (loss and DSC of the final model on the validation subset).
    """
    if store.modality != config.data.modality:
        raise InputError(store.root, f"store holds {store.modality} cases, the config is for {config.data.modality}")
    with distribution_scope(config.train.distribute) as worker, worker_folder(workdir, worker) as folder:
        log.info("%s%s", describe_devices(), f", worker {worker.index} of {worker.count}" if worker.count > 1 else "")
        run = RunFolder(folder)
        run.start(config, RunIdentity.of(store, fold), keras.backend.backend())
        if run.state.stages:
            log.info("%s: resuming; finished stages %s are kept", run.root, ", ".join(run.state.stages))
        keras.utils.set_random_seed(config.train.seed)
        cases = prepare_cases(store, sorted(set(fold.train) | set(fold.validation)), config.data, progress=progress)
        by_id = {c.case_id: c for c in cases}
        data = _Data([by_id[c] for c in fold.train], [by_id[c] for c in fold.validation])
        with precision_policy(config.train.mixed_precision):
            trainer = Trainer(_worker_config(config, worker), run, data, progress, callbacks)
            model = trainer.train_cnn()
            if config.model.name == RNN_MODEL:
                model = trainer.train_rnn(model)
        result = _finish(config, run, trainer, model)
        result = replace(result, worker=worker, weights_digest=weights_digest(model))
        if worker.count > 1:
            log.info("worker %d of %d: final weights %s", worker.index, worker.count, result.weights_digest)
    return result


def _worker_config(config: ExperimentConfig, worker: Worker) -> ExperimentConfig:
    """The config a worker's dataflows use: its own sample stream (``data.seed`` + worker index)."""
    if worker.count == 1:
        return config
    return replace(config, data=replace(config.data, seed=config.data.seed + worker.index))


def _finish(config: ExperimentConfig, run: RunFolder, trainer: Trainer, model: keras.Model) -> TrainResult:
    atomic_save(model, run.model_path)
    last = run.stage_dir(trainer.state.last_stage) / LAST_NAME
    atomic_write(run.last_path, lambda tmp: shutil.copyfile(last, tmp))
    flow_cls = SequenceFlow if config.model.name == RNN_MODEL else SliceStackFlow
    batch = config.train.sequence_batch_size if flow_cls is SequenceFlow else config.train.batch_size
    val_flow = flow_cls(trainer.data.validation, config.data, shuffle=False, augment=False)
    compile_model(model, config, config.train.learning_rate)
    scores = model.evaluate(_supervised(model, as_generator(batched(val_flow, batch, repeat=True, remainder=True))),
                            steps=max(1, math.ceil(len(val_flow) / batch)), return_dict=True, verbose=0)
    atomic_write_json(run.validation_path, {k: float(v) for k, v in scores.items()})
    selected = trainer.state.best("full")
    return TrainResult(run.root, run.model_path, selected, float(scores.get(dice_log_name(model, False), np.nan)))


def atomic_save(model: keras.Model, path: Path) -> Path:
    """Save a ``.keras`` file under a temporary name, then rename it into place."""
    return atomic_write(path, model.save)


def export_run(model: keras.Model, config: ExperimentConfig, folder: str | os.PathLike) -> RunFolder:
    """A run folder holding ``model`` as its selected model, for a model not trained by :func:`train`
    (imported weights, a benchmark's untrained network): ``predict`` then loads it like any run."""
    run = RunFolder(folder)
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_config(config, backend=keras.backend.backend())
    atomic_save(model, run.model_path)
    return run
