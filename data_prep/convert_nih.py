"""Convert NIH Pancreas-CT (TCIA layout: PANCREAS_NNNN/<study>/<series>/*.dcm + labelNNNN.nii.gz)
into a pancreas_seg case store.

Without --data it converts the built-in synthetic phantom set (written in the same layout by
data_prep/make_phantoms.py, generated first if missing) into the built-in store.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.data import builtin
from pancreas_seg.data.convert import convert_cases, detect_set_modality, find_nih_cases
from pancreas_seg.data.store import CaseStore
from pancreas_seg.vocabulary import MODALITIES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="download root holding PANCREAS_NNNN folders and labelNNNN.nii.gz "
                        "files (default: the built-in phantom set)")
    parser.add_argument("-o", "--out", type=Path, help="case store folder (default: the built-in store)")
    parser.add_argument("--modality", choices=["auto", *MODALITIES], default="auto",
                        help="modality of the store (auto: the DICOM Modality tag of the first scan)")
    parser.add_argument("--jobs", type=int, default=1, help="conversion processes")
    parser.add_argument("--overwrite", action="store_true", help="convert cases already in the store again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the first-use phantom build's neither)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    modality_flag = None if args.modality == "auto" else args.modality
    if args.data is None:
        args.data = builtin.ensure_phantom_set(modality_flag or "CT", progress=not args.quiet)
    sources, unmatched = find_nih_cases(args.data)
    modality = modality_flag or detect_set_modality(sources)
    out = args.out or builtin.store_dir(modality)
    for item in unmatched:
        print(f"skipped {item}", file=sys.stderr)
    report = convert_cases(sources, out, modality, jobs=args.jobs, overwrite=args.overwrite,
                            progress=not args.quiet)
    for case_id, error in report.failed.items():
        print(f"error: {error}", file=sys.stderr)
    print(f"converted {len(report.converted)}, already there {len(report.skipped)}, failed {len(report.failed)}")
    print(CaseStore(out).summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
