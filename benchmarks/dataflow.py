"""Dataflow throughput on the built-in phantoms (run by hand; prints samples/s).

    python benchmarks/dataflow.py [--data STORE] [--sizes 256 512] [--workers 0 2] [--seconds 10]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from pancreas_seg.config import DataConfig
from pancreas_seg.data import builtin
from pancreas_seg.data.dataflow import SequenceFlow, SliceStackFlow, as_generator, batched, prepare_cases
from pancreas_seg.data.store import CaseStore


def measure(flow, batch_size: int, workers: int, seconds: float) -> float:
    """Samples per second delivered by ``flow`` batched and prefetched as in training."""
    generator = as_generator(batched(flow, batch_size, workers=workers))
    next(generator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        inputs, _ = next(generator)
        count += inputs.shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="case store (default: the built-in CT phantoms)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    store = CaseStore(args.data) if args.data else builtin.ensure_store("CT")
    for size in args.sizes:
        config = replace(DataConfig(), input_size=size, augment=True)
        start = time.perf_counter()
        cases = prepare_cases(store, store.case_ids, config)
        print(f"{size}px: prepared {len(cases)} cases in {time.perf_counter() - start:.1f} s (cached after the first run)")
        for workers in args.workers:
            stacks = measure(SliceStackFlow(cases, config), args.batch_size, workers, args.seconds)
            runs = measure(SequenceFlow(cases, config), 1, workers, args.seconds)
            print(f"  workers={workers}: 3-slice stacks {stacks:8.1f} samples/s, "
                  f"{config.sequence_length}-slice runs {runs:6.1f} runs/s")


if __name__ == "__main__":
    main()
