"""Convert Medical Segmentation Decathlon Task07 Pancreas (imagesTr/, labelsTr/) into a case store.

The pancreas mask is label >= 1 (1 pancreas, 2 tumour).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.data.convert import convert_cases, find_msd_cases
from pancreas_seg.data.store import CaseStore


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Task07_Pancreas folder (holds imagesTr, labelsTr)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="case store folder")
    parser.add_argument("--jobs", type=int, default=1, help="conversion processes")
    parser.add_argument("--overwrite", action="store_true", help="convert cases already in the store again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the first-use phantom build's neither)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    sources, unmatched = find_msd_cases(args.data)
    for item in unmatched:
        print(f"skipped {item}", file=sys.stderr)
    report = convert_cases(sources, args.out, "CT", jobs=args.jobs, overwrite=args.overwrite,
                            progress=not args.quiet)
    for error in report.failed.values():
        print(f"error: {error}", file=sys.stderr)
    print(f"converted {len(report.converted)}, already there {len(report.skipped)}, failed {len(report.failed)}")
    print(CaseStore(args.out).summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
