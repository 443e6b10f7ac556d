"""Generate synthetic abdominal CT / T1 MRI phantoms in the NIH Pancreas-CT layout (or a case store).

Thin wrapper over :func:`pancreas_seg.data.phantom.write_phantom_set`. Idempotent: a case whose
series folder and label already exist (or that the store already holds) is skipped unless
--overwrite. Phantoms are not patients: nothing trained or measured on them is a paper number.

    python data_prep/make_phantoms.py                     # the built-in set, in the cache folder
    python data_prep/make_phantoms.py --out /tmp/nih --cases 12 --modality ct
    python data_prep/make_phantoms.py --store /tmp/store-mri --modality mri --matrix 256 --jobs 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.data import builtin
from pancreas_seg.data.phantom import PhantomConfig, write_phantom_set
from pancreas_seg.errors import UsageError
from pancreas_seg.vocabulary import MODALITY_BY_FLAG as MODALITY_FLAGS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="root of the NIH layout (default: the built-in set's cache folder)")
    parser.add_argument("--store", type=Path, help="write a case store here instead of DICOM + NIfTI files")
    parser.add_argument("--set", choices=sorted(builtin.PHANTOM_SETS), default="standard",
                        help="built-in set whose size and matrix are the defaults (default standard)")
    parser.add_argument("--cases", type=int, help="number of cases (default: the set's)")
    parser.add_argument("--first", type=int, default=1, help="case number of the first case (default 1)")
    parser.add_argument("--modality", type=str.lower, choices=sorted(MODALITY_FLAGS), default="ct")
    parser.add_argument("--matrix", type=int, help="in-plane pixels (default: the set's, 512 for standard)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate cases that are already there")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.out is not None and args.store is not None:
        raise UsageError("give at most one of --out DIR (NIH layout) or --store DIR (case store)")
    spec = builtin.PHANTOM_SETS[args.set]
    args.cases = spec.cases if args.cases is None else args.cases
    args.matrix = spec.matrix if args.matrix is None else args.matrix
    if args.out is None and args.store is None:
        args.out = builtin.raw_dir(MODALITY_FLAGS[args.modality], args.set)
    if args.cases < 1:
        raise UsageError(f"--cases must be >= 1, got {args.cases}")
    if args.first < 0:
        raise UsageError(f"--first must be >= 0, got {args.first}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        config = PhantomConfig(modality=MODALITY_FLAGS[args.modality], matrix=args.matrix)
    except ValueError as err:
        raise UsageError(f"bad argument: {err}") from None
    root = args.store if args.store is not None else args.out
    report = write_phantom_set(root, range(args.first, args.first + args.cases), config, seed=args.seed,
                               jobs=args.jobs, progress=not args.no_progress, overwrite=args.overwrite,
                               store=args.store is not None)
    print(f"{config.modality} phantoms in {root}: {len(report.written)} written, {len(report.skipped)} already "
          f"there, {report.seconds_per_case:.2f} s per case")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
