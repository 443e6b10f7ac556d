"""Training throughput of PNet-MSA against the dataflow feeding it (run by hand; prints slices/s).

For each input size: slices/s of ``model.train_on_batch`` on PNet-MSA (paper config: 5 units,
64 channels, Eq. 4 deep supervision, compiled by :func:`pancreas_seg.train.compile_model`) on
batches drawn from the training dataflow (:class:`SliceStackFlow` + :func:`batched`, the same
batch size), and beside it the slices/s the dataflow alone delivers, and their ratio. The
dataflow must keep up with at least ``MIN_FLOW_RATIO`` times the model's consumption, or
training waits for data.

    python benchmarks/train_speed.py                                  # 256 and 512 px, built-in phantoms
    python benchmarks/train_speed.py --sizes 128 256 --steps 3 --data STORE
    KERAS_BACKEND=jax python benchmarks/train_speed.py --sizes 256

Imports no TensorFlow itself (tensorpack, under the dataflow, still does), so it runs under any
Keras backend.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from pancreas_seg.config import ExperimentConfig, preset
from pancreas_seg.data import builtin
from pancreas_seg.data.dataflow import SliceStackFlow, as_generator, batched, prepare_cases
from pancreas_seg.data.store import CaseStore
from pancreas_seg.models.build import build_model
from pancreas_seg.train import compile_model

WARMUP_STEPS = 2  # train steps before timing (tracing / compilation, allocator warm-up)
FLOW_MIN_BATCHES = 20  # the dataflow is timed over at least this many batches ...
FLOW_MIN_SECONDS = 3.0  # ... and at least this long
MIN_FLOW_RATIO = 3.0  # the dataflow must deliver this many times what training consumes


def targets_for(model: keras.Model, mask: np.ndarray):
    """The same mask for every output (Ŷ and the side outputs U_k of Eq. 4), as the trainer does."""
    names = list(model.output_names)
    return mask if len(names) == 1 else {name: mask for name in names}


def flow_rate(batches, batch_size: int) -> float:
    """Slices per second the batched flow delivers (first batch, the flow's start-up, not timed)."""
    next(batches)
    count, start = 0, time.perf_counter()
    while count < FLOW_MIN_BATCHES * batch_size or time.perf_counter() - start < FLOW_MIN_SECONDS:
        inputs, _ = next(batches)
        count += inputs.shape[0]
    return count / (time.perf_counter() - start)


def train_rate(config: ExperimentConfig, batches, batch_size: int, steps: int) -> tuple[float, int]:
    """Slices per second of ``train_on_batch`` after ``WARMUP_STEPS``; also the parameter count.

    The batches are drawn from the flow before timing, so this is the model's speed alone.
    """
    model = build_model(config.model, config.data.input_size)
    compile_model(model, config, config.train.learning_rate)
    data = [next(batches) for _ in range(WARMUP_STEPS + steps)]
    for inputs, mask in data[:WARMUP_STEPS]:
        model.train_on_batch(inputs, targets_for(model, mask))
    start = time.perf_counter()
    for inputs, mask in data[WARMUP_STEPS:]:
        model.train_on_batch(inputs, targets_for(model, mask))  # returns host floats: the step has finished
    seconds = time.perf_counter() - start
    return steps * batch_size / seconds, model.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="case store (default: the built-in standard CT phantoms)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="input sizes, px")
    parser.add_argument("--batch-size", type=int, default=4, help="3-slice stacks per step")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps per size")
    parser.add_argument("--channels", type=int, default=64, help="PNet-MSA channels (paper: 64)")
    parser.add_argument("--units", type=int, default=5, help="PNet-MSA units K (paper: 5)")
    parser.add_argument("--workers", type=int, default=0, help="dataflow prefetch processes (0: in-process)")
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.batch_size < 1 or args.steps < 1 or args.workers < 0:
        parser.error("sizes, --batch-size and --steps must be positive, --workers >= 0")

    store = CaseStore(args.data) if args.data else builtin.ensure_store("CT")
    base = preset("paper")
    base = replace(base, model=replace(base.model, name="pnet_msa", units=args.units, channels=args.channels),
                   train=replace(base.train, batch_size=args.batch_size))
    print(f"backend {keras.backend.backend()}, store {store.root} ({len(store.case_ids)} cases), "
          f"PNet-MSA {args.units} units x {args.channels} channels, batch {args.batch_size}, "
          f"loss {base.train.loss}, {args.steps} timed steps after {WARMUP_STEPS}, dataflow workers {args.workers}")
    for size in args.sizes:
        config = replace(base, data=replace(base.data, input_size=size))
        start = time.perf_counter()
        cases = prepare_cases(store, store.case_ids, config.data, progress=False)
        prepare_s = time.perf_counter() - start
        flow = SliceStackFlow(cases, config.data, shuffle=True)
        batches = as_generator(batched(flow, args.batch_size, workers=args.workers))
        data_rate = flow_rate(batches, args.batch_size)
        model_rate, params = train_rate(config, batches, args.batch_size, args.steps)
        ratio = data_rate / model_rate
        verdict = "ok" if ratio >= MIN_FLOW_RATIO else f"TOO SLOW (< {MIN_FLOW_RATIO:g}x)"
        print(f"{size:4d} px: train {model_rate:8.2f} slices/s ({args.batch_size / model_rate:6.2f} s/step, "
              f"{params:,} params) | dataflow {data_rate:8.1f} slices/s | dataflow/train {ratio:7.1f}x {verdict} "
              f"| cases prepared in {prepare_s:.1f} s")


if __name__ == "__main__":
    main()
