"""Converters from public pancreas datasets into a :class:`~pancreas_seg.data.store.CaseStore`.

* NIH Pancreas-CT as TCIA distributes it: ``PANCREAS_0001/<study>/<series>/*.dcm`` plus labels
  ``label0001.nii.gz`` anywhere under the same root.
* Medical Segmentation Decathlon Task07 Pancreas: ``imagesTr/pancreas_001.nii.gz`` and
  ``labelsTr/pancreas_001.nii.gz`` (label 1 pancreas, 2 tumour; the pancreas mask is label ≥ 1).
* A plain folder (or two) of image/label NIfTI pairs matched by case id (:func:`find_nifti_pairs`),
  any label values as pancreas (TotalSegmentator's multi-label map: 7, BTCV: 11); a label without
  them is a pancreas-free case.

NIH and MSD labels always hold pancreas, so there a label without any is a broken file and its
case fails; a plain folder may hold scans without pancreas on purpose (the background trains too).

Known quirks of NIH Pancreas-CT handled here: the current TCIA release has 80 scans (the
duplicates PANCREAS_0025 and PANCREAS_0070 were removed, while the label archive still has 82
files), so labels without a scan are reported and skipped; labels are stored in another
orientation than the DICOM series and are reoriented onto the image grid; the SliceThickness
tag of some series disagrees with the spacing of the slice positions, so spacing always comes
from the positions and disagreement is recorded in the case's source ids.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pancreas_seg.data.parallel import pending, run_cases
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.errors import InputError, PancreasSegError
from pancreas_seg.io.dicom import DICOM_MODALITY_TO_SCAN, list_series, read_dicom_series
from pancreas_seg.io.intensity import check_intensities
from pancreas_seg.io.nifti import LABEL_MAX, nifti_case_id, read_nifti, reorient_like, split_nifti_name
from pancreas_seg.io.orientation import to_canonical
from pancreas_seg.io.scan import Scan

log = logging.getLogger(__name__)

NIH_CASE_PATTERN = re.compile(r"^PANCREAS_(\d{4})$")
NIH_LABEL_PATTERN = re.compile(r"^label(\d{4})\.nii(\.gz)?$")
MSD_CASE_PATTERN = re.compile(r"^(pancreas_\d+)\.nii(\.gz)?$")
ID_FIELD = "{id}"  # the case id's place in a file pattern of find_nifti_pairs
NNUNET_CHANNEL_0 = "_0000"  # nnU-Net's image name suffix of channel 0: image case_0000 pairs with label case
UNPAIRED_LISTED = 10  # unpaired files named in a message; the rest are counted
THICKNESS_TOLERANCE = 0.1  # relative disagreement of SliceThickness and position spacing worth recording
INT16 = np.iinfo(np.int16)  # CT cases are stored as int16 HU, clipped to its range


@dataclass(frozen=True)
class SourceCase:
    """One scan to convert: its id, image (DICOM folder or NIfTI file) and label file."""

    case_id: str
    image_path: Path
    label_path: Path
    label_values: tuple[int, ...] = (1,)  # label values that count as pancreas
    pancreas_free_ok: bool = False  # a label without any of label_values is a case without pancreas (else refused)


@dataclass
class ConversionReport:
    """What a conversion did: converted, skipped (already there) and failed cases."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def find_nih_cases(root: str | os.PathLike) -> tuple[list[SourceCase], list[str]]:
    """Pair ``PANCREAS_NNNN`` scan folders with ``labelNNNN.nii.gz`` files under ``root``.

    Returns the pairs and a list of unmatched items (scans without a label, labels without a scan).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    scans = {m.group(1): p for p in root.rglob("PANCREAS_*") if p.is_dir() and (m := NIH_CASE_PATTERN.match(p.name))}
    labels = {m.group(1): p for p in root.rglob("label*.nii*") if (m := NIH_LABEL_PATTERN.match(p.name))}
    if not scans:
        raise InputError(root, "no PANCREAS_NNNN scan folders found (expected the TCIA NIH Pancreas-CT layout)")
    pairs = [SourceCase(f"PANCREAS_{n}", scans[n], labels[n]) for n in sorted(scans.keys() & labels.keys())]
    if not pairs:
        raise InputError(root, f"none of the {len(scans)} PANCREAS_NNNN scan folders has a labelNNNN.nii.gz "
                         f"({len(labels)} label files found)")
    unmatched = [f"PANCREAS_{n}: no label{n}.nii.gz" for n in sorted(scans.keys() - labels.keys())]
    unmatched += [f"label{n}: no PANCREAS_{n} scan (removed duplicate?)" for n in sorted(labels.keys() - scans.keys())]
    return pairs, unmatched


def find_msd_cases(root: str | os.PathLike) -> tuple[list[SourceCase], list[str]]:
    """Pair ``imagesTr/*.nii.gz`` with ``labelsTr/*.nii.gz`` of MSD Task07 (pancreas = label ≥ 1)."""
    root = Path(root)
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(root, "expected imagesTr/ and labelsTr/ folders (Medical Segmentation Decathlon layout)")
    images = {m.group(1): p for p in images_dir.iterdir() if (m := MSD_CASE_PATTERN.match(p.name))}
    labels = {m.group(1): p for p in labels_dir.iterdir() if (m := MSD_CASE_PATTERN.match(p.name))}
    if not images:
        raise InputError(images_dir, "no pancreas_NNN.nii.gz images found")
    pairs = [SourceCase(n, images[n], labels[n], label_values=(1, 2)) for n in sorted(images.keys() & labels.keys())]
    if not pairs:
        raise InputError(root, f"none of the {len(images)} images in imagesTr/ has a label of the same name in labelsTr/")
    unmatched = [f"{n}: no label" for n in sorted(images.keys() - labels.keys())]
    unmatched += [f"{n}: label without image" for n in sorted(labels.keys() - images.keys())]
    return pairs, unmatched


def _files_by_id(folder: Path, pattern: str | None) -> dict[str, list[Path]]:
    """``{case id: files}`` of ``folder``: ``<id>.nii[.gz]`` files without a pattern, else the paths
    (relative to ``folder``, ``/`` between folders) that ``pattern`` matches with its ``{id}`` filled
    by a name part without ``/``. Hidden files (name or id starting with ``.``) are left out."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    found: dict[str, list[Path]] = {}
    if pattern is None:
        files = [(nifti_case_id(p), p) for p in folder.iterdir() if split_nifti_name(p) and not p.is_dir()]
    else:
        if pattern.count(ID_FIELD) != 1 or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ValueError(f"file pattern {pattern!r} must be a relative path holding {ID_FIELD} once")
        head, tail = pattern.split(ID_FIELD)
        regex = re.compile(re.escape(head) + "([^/]+)" + re.escape(tail))
        files = [(m.group(1), p) for p in folder.glob(glob.escape(head) + "*" + glob.escape(tail))
                 if (m := regex.fullmatch(p.relative_to(folder).as_posix()))]
    for case_id, path in files:
        if not case_id.startswith(".") and not path.name.startswith("."):
            found.setdefault(case_id, []).append(path)
    return found


def _one_file_per_id(files: dict[str, list[Path]]) -> dict[str, Path]:
    for case_id, paths in files.items():
        if len(paths) > 1:
            raise InputError(paths[0], f"{len(paths)} files give case id {case_id!r} "
                             f"({', '.join(str(p) for p in sorted(paths))}); keep one")
    return {case_id: paths[0] for case_id, paths in files.items()}


def _pairing_id(image_id: str, label_ids: set[str]) -> str:
    """The label id an image id pairs with: itself, else without nnU-Net's channel-0 suffix when
    there is a label of that name."""
    stripped = image_id.removesuffix(NNUNET_CHANNEL_0)
    return stripped if image_id not in label_ids and stripped in label_ids else image_id


def find_nifti_pairs(images: str | os.PathLike, labels: str | os.PathLike | None = None,
                     image_pattern: str | None = None, label_pattern: str | None = None,
                     label_values: Sequence[int] = (1,)) -> tuple[list[SourceCase], list[str]]:
    """Pair the image and label NIfTI files of a plain folder, or of an image and a label folder,
    by case id; ``label_values`` of a label are pancreas, a label without them a pancreas-free case.

    Without a pattern a folder's files are ``<id>.nii`` or ``<id>.nii.gz`` (not its subfolders);
    an image ``<id>_0000`` (nnU-Net's channel 0) pairs with a label ``<id>`` when no label is
    named ``<id>_0000``. A pattern is a path relative to its folder holding ``{id}`` once, which
    stands for a name part without ``/``: ``{id}_ct.nii.gz``, ``{id}/ct.nii.gz``. Images and labels
    in one folder need both patterns; a file the label pattern matches is never an image. Hidden
    files (``._x.nii.gz``) are left out.

    Args:
        images: folder of the images.
        labels: folder of the labels (default ``images``).
        image_pattern, label_pattern: file patterns (default: the NIfTI file names).
        label_values: label values that are pancreas, in 1..255.

    Returns:
        the pairs sorted by case id (the label's id), and the unpaired files, each
        ``"<file>: image without a label"`` or ``"<file>: label without an image"``.

    Raises:
        InputError: a folder missing, no image file, two files of one case id, no pair at all,
            one folder for images and labels without both patterns.
        ValueError: a pattern without ``{id}`` or outside its folder, a label value outside 1..255.
    """
    images = Path(images)
    labels = images if labels is None else Path(labels)
    values = tuple(sorted({int(v) for v in label_values}))
    if not values or values[0] < 1 or values[-1] > LABEL_MAX:
        raise ValueError(f"pancreas label values must be in 1..{LABEL_MAX} (0 is background), got {list(label_values)}")
    if images.resolve() == labels.resolve() and (image_pattern is None or label_pattern is None
                                                 or image_pattern == label_pattern):
        raise InputError(images, "images and labels in one folder need an image and a label pattern "
                         f"that differ (e.g. {ID_FIELD}_ct.nii.gz and {ID_FIELD}_seg.nii.gz)")
    label_files = _one_file_per_id(_files_by_id(labels, label_pattern))
    claimed = {path.resolve() for path in label_files.values()}
    image_lists = {case_id: kept for case_id, paths in _files_by_id(images, image_pattern).items()
                   if (kept := [p for p in paths if p.resolve() not in claimed])}
    if not image_lists:
        raise InputError(images, f"no image files ({image_pattern or '*.nii, *.nii.gz'}) found")
    if image_pattern is None:
        renamed: dict[str, list[Path]] = {}
        for case_id, paths in image_lists.items():
            renamed.setdefault(_pairing_id(case_id, set(label_files)), []).extend(paths)
        image_lists = renamed
    image_files = _one_file_per_id(image_lists)
    paired = sorted(image_files.keys() & label_files.keys())
    if not paired:
        raise InputError(images, f"none of the {len(image_files)} images has a label of the same case id in "
                         f"{labels} ({len(label_files)} label files)")
    pairs = [SourceCase(n, image_files[n], label_files[n], label_values=values, pancreas_free_ok=True) for n in paired]
    unmatched = [f"{image_files[n]}: image without a label" for n in sorted(image_files.keys() - label_files.keys())]
    unmatched += [f"{label_files[n]}: label without an image" for n in sorted(label_files.keys() - image_files.keys())]
    return pairs, unmatched


def describe_unpaired(unmatched: Sequence[str]) -> str:
    """The unpaired files of :func:`find_nifti_pairs` on one line, at most :data:`UNPAIRED_LISTED` named."""
    listed = "; ".join(unmatched[:UNPAIRED_LISTED])
    more = len(unmatched) - UNPAIRED_LISTED
    return listed + (f"; and {more} more" if more > 0 else "")


def _read_image(source: SourceCase, modality: str | None) -> Scan:
    if source.image_path.is_dir():
        series = list_series(source.image_path)
        if len(series) > 1:  # read_dicom_series would suggest --series, which the converters do not have
            listing = "; ".join(info.summary() for info in series)
            raise InputError(source.image_path, f"{len(series)} image series in one scan folder ({listing}); "
                             "keep only the series to convert")
        return read_dicom_series(source.image_path, modality=modality)
    return read_nifti(source.image_path, modality=modality or "CT")


def load_source_case(source: SourceCase, modality: str | None = None) -> Case:
    """Read a scan and its label, put the label on the image grid and build a :class:`Case`
    stored in the canonical orientation (axial slices, :mod:`pancreas_seg.io.orientation`), the
    one prediction uses too.

    Raises :class:`InputError` for intensities unlike the modality (:func:`check_intensities`), a
    label whose physical grid differs from the image's, non-integer label values, and a label
    without pancreas voxels unless ``source.pancreas_free_ok`` (then the mask is empty).
    """
    image = _read_image(source, modality)
    check_intensities(image, source.image_path)  # a shifted or corrupt scan must not become training data
    image, _ = to_canonical(image)
    label = read_nifti(source.label_path, modality=image.modality, kind="label")
    label = reorient_like(label, image.affine, image.shape)
    mask = np.isin(label.array, source.label_values).astype(np.uint8)
    if not mask.any() and not source.pancreas_free_ok:
        raise InputError(source.label_path, f"label has no pancreas voxels (values {list(source.label_values)})")
    ids = dict(image.source)
    ids.update({"image_path": str(source.image_path), "label_path": str(source.label_path)})
    thickness = ids.get("SliceThickness")
    if thickness and abs(float(thickness) - image.spacing[0]) > THICKNESS_TOLERANCE * image.spacing[0]:
        ids["spacing_note"] = f"SliceThickness {thickness} mm disagrees with position spacing {image.spacing[0]:.3f} mm"
    array = image.array
    if image.modality == "CT":
        array = np.clip(np.round(array), INT16.min, INT16.max).astype(np.int16)
    else:
        array = array.astype(np.float32)
    scan = Scan(array, image.affine, image.modality, {k: str(v) for k, v in ids.items()})
    return Case(source.case_id, scan, mask)


def _convert_one(args: tuple[SourceCase, Path, str | None]) -> tuple[str, dict | None, str | None]:
    source, store_root, modality = args
    try:
        case = load_source_case(source, modality)
        return source.case_id, CaseStore(store_root).write_case_file(case), None
    except PancreasSegError as err:
        return source.case_id, None, str(err)


def convert_cases(sources: Sequence[SourceCase], store_root: str | os.PathLike, modality: str,
                  jobs: int = 1, overwrite: bool = False, progress: bool = True,
                  on_result: Callable[[str, str | None], None] | None = None) -> ConversionReport:
    """Convert ``sources`` into the store at ``store_root`` (created if needed).

    Idempotent: cases already in the store are skipped unless ``overwrite``. A case that fails
    is reported in :attr:`ConversionReport.failed` and leaves nothing behind; the others go on.
    ``jobs`` > 1 converts in that many processes; the manifest is only written by this process.
    """
    store = CaseStore.create(store_root, modality)
    report = ConversionReport()
    todo, skipped = pending(sources, lambda source: store.has_case(source.case_id), overwrite)
    report.skipped = [source.case_id for source in skipped]
    work = [(source, store.root, modality) for source in todo]
    for case_id, entry, error in run_cases(_convert_one, work, jobs=jobs, desc="convert", progress=progress):
        if entry is not None:
            store.add_entries({case_id: entry})
            report.converted.append(case_id)
        else:
            report.failed[case_id] = error
            log.debug("%s failed: %s", case_id, error)  # reported to the caller in report.failed
        if on_result:
            on_result(case_id, error)
    return report


def detect_modality(source: SourceCase) -> str:
    """``"CT"`` or ``"MRI"`` from the first scan's DICOM Modality tag (NIfTI images: CT)."""
    if not source.image_path.is_dir():
        return "CT"
    series = list_series(source.image_path)
    tag = series[0].modality if series else ""
    if tag not in DICOM_MODALITY_TO_SCAN:
        raise InputError(source.image_path, f"modality {tag!r} is neither CT nor MR")
    return DICOM_MODALITY_TO_SCAN[tag]


def detect_set_modality(sources: Sequence[SourceCase]) -> str:
    """:func:`detect_modality` of the first source whose modality can be read.

    A broken first case must not stop the conversion of the others: it fails later, alone,
    in :func:`convert_cases`. Raises the first case's :class:`InputError` when no source has one.
    """
    if not sources:
        raise ValueError("no sources to detect the modality of")
    first_error = None
    for source in sources:
        try:
            return detect_modality(source)
        except InputError as err:
            first_error = first_error or err
    raise first_error
