"""Convert a folder of image/label NIfTI pairs into a case store.

Two layouts (pancreas_seg.data.convert.find_nifti_pairs):

* an image and a label folder, files matched by name: --images imagesTr --labels labelsTr pairs
  imagesTr/case7.nii.gz with labelsTr/case7.nii.gz (.nii or .nii.gz on either side); nnU-Net's
  image name imagesTr/case7_0000.nii.gz pairs with labelsTr/case7.nii.gz too;
* one folder (or two) with file patterns holding {id} once: --images data --image-pattern
  '{id}_ct.nii.gz' --label-pattern '{id}_seg.nii.gz'; a pattern may name subfolders, as in
  TotalSegmentator's layout: --image-pattern '{id}/ct.nii.gz' --label-pattern
  '{id}/segmentations/pancreas.nii.gz'.

--label chooses the label values that are pancreas (default 1; TotalSegmentator's multi-label map:
7, BTCV: 11). A label file holding none of them is converted as a pancreas-free case (an empty
mask: it trains the background). Unpaired files (images without a label, labels without an image)
are refused before anything is converted, listed, unless --skip-unpaired. A case whose
label is on another grid than its image (shape, spacing, origin or direction beyond 1/1000 of a
voxel, axis flips aside), holds non-integer values or values outside 0..255, fails alone with one
line naming the file; the others are converted and the exit code is 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.data.convert import convert_cases, describe_unpaired, detect_set_modality, find_nifti_pairs
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError, UsageError
from pancreas_seg.io.nifti import LABEL_MAX
from pancreas_seg.vocabulary import MODALITIES


def label_value(text: str) -> int:
    """An argparse type: a label value in 1..255 (0 is background)."""
    value = int(text)
    if not 1 <= value <= LABEL_MAX:
        raise argparse.ArgumentTypeError(f"label values are 1..{LABEL_MAX} (0 is background), got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of the images")
    parser.add_argument("--labels", type=Path, help="folder of the labels (default: --images, which then needs "
                        "both patterns)")
    parser.add_argument("--image-pattern", help="image path relative to --images with {id} once, e.g. "
                        "'{id}_ct.nii.gz' (default: <id>.nii[.gz], or <id>_0000.nii[.gz] as nnU-Net names them)")
    parser.add_argument("--label-pattern", help="label path relative to --labels with {id} once, e.g. "
                        "'{id}_seg.nii.gz' (default: <id>.nii[.gz])")
    parser.add_argument("--label", type=label_value, nargs="+", default=[1], metavar="V",
                        help="label values that are pancreas (default 1; TotalSegmentator 7, BTCV 11); a label "
                             "without any of them is stored as a pancreas-free case")
    parser.add_argument("--skip-unpaired", action="store_true",
                        help="convert the pairs and list the unpaired files (default: refuse, listing them)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="case store folder")
    parser.add_argument("--modality", choices=["auto", *MODALITIES], default="auto",
                        help="modality of the store (auto: CT, as NIfTI has no modality tag)")
    parser.add_argument("--jobs", type=int, default=1, help="conversion processes")
    parser.add_argument("--overwrite", action="store_true", help="convert cases already in the store again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        sources, unmatched = find_nifti_pairs(args.images, args.labels, args.image_pattern, args.label_pattern,
                                              args.label)
    except InputError:
        raise
    except ValueError as err:  # a pattern without {id}
        raise UsageError(f"--image-pattern/--label-pattern: {err}") from None
    if unmatched and not args.skip_unpaired:
        raise InputError(None, f"{len(unmatched)} unpaired file(s): {describe_unpaired(unmatched)}; "
                               f"give --skip-unpaired to convert the {len(sources)} pair(s) alone")
    for item in unmatched:
        print(f"skipped {item}", file=sys.stderr)
    modality = detect_set_modality(sources) if args.modality == "auto" else args.modality
    report = convert_cases(sources, args.out, modality, jobs=args.jobs, overwrite=args.overwrite,
                           progress=not args.quiet)
    for error in report.failed.values():
        print(f"error: {error}", file=sys.stderr)
    store = CaseStore(args.out)
    entries = store.manifest
    free = [case_id for case_id in report.converted if entries[case_id]["pancreas_slices"] is None]
    print(f"converted {len(report.converted)}, already there {len(report.skipped)}, failed {len(report.failed)}")
    if free:
        print(f"pancreas-free (no label value {args.label}): {len(free)} case(s): {', '.join(free)}")
    if report.converted and len(free) == len(report.converted):
        print(f"warning: none of the {len(free)} converted cases has label values {args.label}; is --label right?",
              file=sys.stderr)
    print(store.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
