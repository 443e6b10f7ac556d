"""The ``paper`` preset on one fold of the phantoms within a time budget, then its test scans (run by hand, on a GPU).

Builds the built-in CT store (``--jobs`` processes), trains the ``paper`` preset's PNet-MSA
(512 px, 5 units, 64 channels; ``--set`` overrides as for ``pancreas-seg train``) until the epoch
that passes ``--minutes`` (a callback stops it; the stage's best epoch is kept as always), then
predicts the fold's test scans densely and on the region of interest, with the receptive-field
margin and with each ``--margins`` value. Printed: seconds per epoch (training steps and validation
apart), slices/s, the bound on a whole ``paper`` fold at that speed, and per test scan the
prediction seconds (the first call of each shape includes compilation), the DSC of each mask with
the truth and with the dense mask, and the dense voxels a region lost. Phantom results, not the paper's.

The run measured on one H100 (docs/PERFORMANCE.md; it trained 3.4 minutes)::

    KERAS_BACKEND=jax python benchmarks/paper_fold.py --out /tmp/paper_fold --minutes 3.2 --margins 64 \\
        --jobs 16 --set train.stagewise=false train.epochs_full=20 train.steps_per_epoch=100 \\
        train.epochs_finetune=0 train.learning_rate=1e-3 train.lr_schedule=cosine train.workers=4 \\
        data.focus_fraction=0.5 train.patience=40
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from pancreas_seg import inference, networks
from pancreas_seg.config import apply_overrides, preset
from pancreas_seg.data import builtin
from pancreas_seg.data.dataflow import prepare_cases
from pancreas_seg.data.splits import select_fold, store_folds
from pancreas_seg.distribute import describe_devices
from pancreas_seg.metrics import dice
from pancreas_seg.train import dice_log_name, train

SECONDS_PER_HOUR = 3600.0


class EpochClock(keras.callbacks.Callback):
    """Seconds of every epoch (validation apart) of every stage; stops a stage's training after the
    epoch that passes ``budget_s`` since the clock was made (so every later stage runs one epoch)."""

    def __init__(self, budget_s: float):
        super().__init__()
        self.budget_s, self.start = budget_s, time.perf_counter()
        self.epochs: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._validation_s = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._validation_s = time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._epoch_start
        record = {"seconds": seconds, "validation_s": self._validation_s,
                  "val_dice": float((logs or {}).get(dice_log_name(self.model), np.nan))}
        self.epochs.append(record)
        print(f"epoch {len(self.epochs)}: {seconds:.1f} s ({self._validation_s:.1f} s validation), "
              f"validation DSC {record['val_dice']:.3f}", flush=True)
        if time.perf_counter() - self.start > self.budget_s:
            self.model.stop_training = True


def paper_fold_bound_hours(step_s: float, steps_per_epoch: int) -> tuple[int, float]:
    """``(epochs, hours)``: the most epochs the unchanged ``paper`` preset trains one fold for (every
    stage to its maximum, every epoch at the full network's step time ``step_s``) and their time."""
    train_cfg = preset("paper").train
    epochs = ((preset("paper").model.units - 1) * train_cfg.epochs_per_unit + train_cfg.epochs_full
              + train_cfg.epochs_finetune + train_cfg.epochs_rnn + train_cfg.epochs_end_to_end)
    return epochs, epochs * steps_per_epoch * step_s / SECONDS_PER_HOUR


def _training_speed(epochs: list[dict[str, float]], batch_size: int, steps_per_epoch: int) -> dict[str, float]:
    """Seconds per training step (median over the epochs after the first, which compiles), slices/s
    and the paper-fold bound at that speed."""
    later = epochs[1:] or epochs
    step_s = statistics.median((e["seconds"] - e["validation_s"]) / steps_per_epoch for e in later)
    bound_epochs, hours = paper_fold_bound_hours(step_s, preset("paper").train.steps_per_epoch)
    return {"step_s": step_s, "slices_per_s": batch_size / step_s, "paper_fold_epochs": bound_epochs,
            "paper_fold_hours": hours}


def _predict(models, prepared, spacing_mm: float, options: inference.PredictOptions) -> tuple[np.ndarray, float, dict]:
    start = time.perf_counter()
    total, threshold, work = inference.network_probability(prepared.image, spacing_mm, models, options)
    return prepared.transform.invert(total) > threshold, time.perf_counter() - start, {
        "mode": work.mode, "slices_fraction": work.slices_fraction, "pixels_fraction": work.pixels_fraction}


def predict_test_scans(run: Path, store, case_ids, config, margins, jobs: int) -> list[dict]:
    """Dense and region-of-interest predictions of the test scans: seconds, work, DSC, voxels lost."""
    models = networks.load_models([run])
    prepared = prepare_cases(store, case_ids, config.data, progress=False, jobs=jobs)
    variants = {"dense": inference.PredictOptions(dense=True), "roi": inference.PredictOptions(dense=False)}
    variants.update({f"roi:{m}": inference.PredictOptions(dense=False, roi_margin=m) for m in margins})
    rows = []
    for case_id, ready in zip(case_ids, prepared):
        case = store.read_case(case_id)
        truth = case.mask.astype(bool)
        masks, row = {}, {"case_id": case_id, "slices": int(truth.shape[0])}
        for name, options in variants.items():
            masks[name], seconds, work = _predict(models, ready, case.spacing[0], options)
            row[name] = {"seconds": seconds, **work, "dice_truth": dice(masks[name], truth)}
            if name != "dense":
                row[name]["dice_dense"] = dice(masks[name], masks["dense"])
                row[name]["dense_voxels_lost"] = int((masks["dense"] & ~masks[name]).sum())
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (the run is in OUT/run)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget; stops after the epoch passing it")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the paper preset")
    parser.add_argument("--margins", type=int, nargs="*", default=[], help="region margins (px) to measure too")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes building and preparing data")
    args = parser.parse_args(argv)

    config = apply_overrides(preset("paper"), args.set)
    config = replace(config, model=replace(config.model, name="pnet_msa"))
    print(describe_devices(), flush=True)
    start = time.perf_counter()
    store = builtin.ensure_store(config.data.modality, config.data.builtin_set, jobs=args.jobs, progress=False)
    fold = select_fold(store_folds(store, config.data), args.fold)
    data_s = time.perf_counter() - start
    prepare_cases(store, sorted(set(fold.train) | set(fold.validation)), config.data, progress=False, jobs=args.jobs)
    prepare_s = time.perf_counter() - start - data_s
    print(f"store {store.root} in {data_s:.0f} s, cases prepared in {prepare_s:.0f} s", flush=True)

    clock = EpochClock(60.0 * args.minutes)
    start = time.perf_counter()
    result = train(config, args.out / "run", store, fold, progress=False, callbacks=[clock])
    train_s = time.perf_counter() - start
    summary = {"devices": describe_devices(), "overrides": args.set, "train_s": train_s, "epochs": clock.epochs,
               "selected_dice": result.selected_dice, "final_dice": result.final_dice}
    if clock.epochs:
        summary.update(_training_speed(clock.epochs, config.train.batch_size, config.train.steps_per_epoch))
        print(f"trained {len(clock.epochs)} epochs in {train_s:.0f} s (first epoch {clock.epochs[0]['seconds']:.0f} s, "
              f"with compilation); {summary['step_s'] * 1000:.0f} ms per step of {config.train.batch_size} slices = "
              f"{summary['slices_per_s']:.0f} slices/s; validation DSC of the selected model "
              f"{result.final_dice:.3f}", flush=True)
        print(f"the unchanged paper preset: at most {summary['paper_fold_epochs']} epochs of "
              f"{preset('paper').train.steps_per_epoch} steps = at most {summary['paper_fold_hours']:.1f} h "
              f"per fold at this speed", flush=True)
    else:
        print(f"{result.workdir} was trained before: delete it to time training", flush=True)
    summary["test"] = predict_test_scans(result.workdir, store, fold.test, config, args.margins, args.jobs)
    for name in summary["test"][0]:
        if isinstance(summary["test"][0][name], dict):
            rows = [row[name] for row in summary["test"]]
            line = f"{name}: DSC with truth {np.mean([r['dice_truth'] for r in rows]):.3f}"
            if "dice_dense" in rows[0]:
                line += (f", with dense min {min(r['dice_dense'] for r in rows):.4f}, "
                         f"dense voxels lost {sum(r['dense_voxels_lost'] for r in rows)}")
            seconds = ", ".join(f"{r['seconds']:.2f}" for r in rows)
            print(f"{line}, seconds {seconds}", flush=True)
    (args.out / "paper_fold.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
