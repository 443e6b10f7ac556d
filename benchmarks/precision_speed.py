"""Forward speed of the paper PNet-MSA in float32 or bfloat16 on this CPU (run by hand; prints s/slice).

Builds the paper CNN (5 units x 4 convs, 64 channels; random weights: speed does not depend on
them) or takes a run's CNN, makes its any-size copy in ``--precision``
(:func:`pancreas_seg.networks.convolutional_copy`), traces it on one batch and times ``--repeats``
batches of ``--batch-size`` slices of ``--size`` px. Compare two precisions by running it twice.

    python benchmarks/precision_speed.py --precision bfloat16
    python benchmarks/precision_speed.py --precision float32
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


from pancreas_seg.config import ModelConfig
from pancreas_seg.models.pnet import build_pnet_msa
from pancreas_seg.networks import convolutional_copy, load_model

CONTEXT = 3  # slices stacked as channels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("float32", "bfloat16"), required=True)
    parser.add_argument("--model", type=Path, help="run folder (default: the paper PNet-MSA, random weights)")
    parser.add_argument("--size", type=int, default=512, help="slice side, px")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed batches after one traced batch")
    args = parser.parse_args(argv)
    cnn = load_model(args.model).cnn if args.model else build_pnet_msa(ModelConfig(), args.size)
    copy = convolutional_copy(cnn, args.precision)
    batch = np.random.default_rng(0).random((args.batch_size, args.size, args.size, CONTEXT)).astype(np.float32)
    copy.predict_on_batch(batch)
    start = time.perf_counter()
    for _ in range(args.repeats):
        copy.predict_on_batch(batch)
    per_slice = (time.perf_counter() - start) / (args.repeats * args.batch_size)
    print(f"{args.precision}: {per_slice:.3f} s/slice at {args.size} px, batch {args.batch_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
