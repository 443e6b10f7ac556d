"""Phantoms written as the NIH Pancreas-CT set is distributed (DICOM + NIfTI labels) or into a case store."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from pydicom.uid import generate_uid

from pancreas_seg.data.parallel import pending, run_cases
from pancreas_seg.data.phantom.config import PhantomConfig
from pancreas_seg.data.phantom.rendering import generate_case
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.scan import Scan

logger = logging.getLogger(__name__)

NIH_PATIENT_FMT = "PANCREAS_{:04d}"  # PatientID and folder of NIH Pancreas-CT
NIH_IMAGE_DIR = "Pancreas-CT"  # top folder of the NIH images as TCIA ships them
NIH_LABEL_DIR = "TCIA_pancreas_labels-02-05-2017"  # label folder of the NIH set
NIH_LABEL_FMT = "label{:04d}.nii.gz"  # label file name of the NIH set
NIH_FILE_FMT = "1-{:03d}.dcm"  # DICOM file name from the InstanceNumber, as in the TCIA download
NIH_DESCENDING_EVERY = 3  # every 3rd case has InstanceNumber descending (sorting test)
NIH_FLIP_LABEL_EVERY = 2  # every 2nd case stores its label with the row axis flipped


def _digits(text: str, n: int) -> int:
    """Deterministic ``n``-digit number from ``text`` (folder names)."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % (10 ** n)


def nih_paths(root: str | os.PathLike, case_number: int) -> tuple[Path, Path]:
    """Series folder and label path of case ``case_number`` in the NIH Pancreas-CT layout.

    ``root/Pancreas-CT/PANCREAS_0001/<MM-DD-YYYY>-PANCREAS0001-Pancreas-<5 digits>/Pancreas-<5 digits>/``
    and ``root/TCIA_pancreas_labels-02-05-2017/label0001.nii.gz`` as TCIA distributes them.
    """
    if case_number < 0:
        raise ValueError(f"case_number must be >= 0, got {case_number}")
    pid = NIH_PATIENT_FMT.format(case_number)
    key = f"case{case_number}"
    month, day, year = 1 + _digits(key + "m", 3) % 12, 1 + _digits(key + "d", 3) % 28, 2015
    study = f"{month:02d}-{day:02d}-{year}-PANCREAS{case_number:04d}-Pancreas-{_digits(key + 'st', 5):05d}"
    series = f"Pancreas-{_digits(key + 'se', 5):05d}"
    root = Path(root)
    return root / NIH_IMAGE_DIR / pid / study / series, root / NIH_LABEL_DIR / NIH_LABEL_FMT.format(case_number)


def flip_rows(scan: Scan) -> Scan:
    """Same physical grid, row axis of the array reversed (affine adjusted)."""
    affine = scan.affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, 1] * (scan.array.shape[1] - 1)
    affine[:3, 1] = -affine[:3, 1]
    return Scan(np.ascontiguousarray(scan.array[:, ::-1, :]), affine, scan.modality, dict(scan.source))


def write_nih_layout(image: Scan, mask: np.ndarray, root: str | os.PathLike, case_number: int) -> tuple[Path, Path]:
    """Write a case as the NIH Pancreas-CT set is distributed by TCIA.

    DICOM series (PatientID ``PANCREAS_0001``; InstanceNumber descending for
    every third case) under ``root/Pancreas-CT/...`` and the label as uint8
    NIfTI under ``root/TCIA_pancreas_labels-02-05-2017/``. Like the real set,
    the label is not always stored in the DICOM's orientation: for every
    other case its row axis is flipped (affine adjusted, same physical grid).
    MRI phantoms use the same layout with Modality MR.

    Args:
        image: scan from :func:`generate_case`.
        mask: ``[Z, Y, X]`` uint8 label on ``image``'s grid.
        root: dataset root folder (created).
        case_number: NIH case number (folder and file names).

    Returns:
        ``(series_folder, label_path)``.
    """
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    series_dir, label_path = nih_paths(root, case_number)
    pid = NIH_PATIENT_FMT.format(case_number)
    order = "descending" if case_number % NIH_DESCENDING_EVERY == 0 else "ascending"
    files = write_dicom_series(image, series_dir, patient_id=pid,
                               study_uid=generate_uid(entropy_srcs=[f"study{case_number}{image.modality}"]),
                               series_uid=generate_uid(entropy_srcs=[f"series{case_number}{image.modality}"]),
                               series_description="Pancreas", instance_number_order=order)
    for path in files:  # TCIA names files <series number>-<instance number>.dcm
        if path.stem.isdigit():
            path.rename(path.with_name(NIH_FILE_FMT.format(int(path.stem))))
    label = Scan(np.asarray(mask, dtype=np.uint8), image.affine.copy(), image.modality, {"PatientID": pid})
    if case_number % NIH_FLIP_LABEL_EVERY == 0:
        label = flip_rows(label)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(label, label_path, dtype=np.uint8)
    logger.debug("wrote NIH-layout case %d: %s, %s", case_number, series_dir, label_path)
    return series_dir, label_path


def case_id_of(case_number: int) -> str:
    """Case id of a phantom, as the NIH converter names it: ``PANCREAS_0001``."""
    return NIH_PATIENT_FMT.format(case_number)


def write_case_to_store(image: Scan, mask: np.ndarray, store: CaseStore, case_id: str) -> dict:
    """Write a phantom straight into a :class:`~pancreas_seg.data.store.CaseStore` (no files in between).

    Returns the manifest entry. The store's modality must match ``image.modality``.
    """
    scan = Scan(image.array, image.affine, image.modality, {**image.source, "PatientID": case_id})
    case = Case(case_id, scan, np.asarray(mask, np.uint8))
    return store.write_case(case)


@dataclass
class PhantomSetReport:
    """What :func:`write_phantom_set` did."""

    written: list[int] = field(default_factory=list)  # case numbers generated and written
    skipped: list[int] = field(default_factory=list)  # case numbers already present
    seconds: float = 0.0  # wall-clock time of the whole run

    @property
    def seconds_per_case(self) -> float:
        """Wall-clock seconds per written case (0 when none was written)."""
        return self.seconds / len(self.written) if self.written else 0.0


def _nih_present(root: Path, case_number: int) -> bool:
    series_dir, label_path = nih_paths(root, case_number)
    return label_path.is_file() and series_dir.is_dir() and any(series_dir.glob("*.dcm"))


def _make_nih(job: tuple[Path, int, PhantomConfig, int]) -> int:
    root, case_number, config, seed = job
    image, mask = generate_case(case_number, config.modality, seed, config)
    write_nih_layout(image, mask, root, case_number)
    return case_number


def _make_store_case(job: tuple[Path, int, PhantomConfig, int]) -> tuple[int, dict]:
    root, case_number, config, seed = job
    image, mask = generate_case(case_number, config.modality, seed, config)
    case_id = case_id_of(case_number)
    case = Case(case_id, Scan(image.array, image.affine, image.modality, {**image.source, "PatientID": case_id}), mask)
    return case_number, CaseStore(root).write_case_file(case)


def write_phantom_set(root: str | os.PathLike, case_numbers: Iterable[int], config: PhantomConfig | None = None,
                      *, seed: int = 0, jobs: int = 1, progress: bool = True, overwrite: bool = False,
                      store: bool = False) -> PhantomSetReport:
    """Generate phantoms ``case_numbers`` of ``config.modality`` into ``root``; idempotent.

    Args:
        root: output folder: the NIH Pancreas-CT layout (:func:`write_nih_layout`), or
            with ``store=True`` a :class:`~pancreas_seg.data.store.CaseStore` (created).
        case_numbers: NIH-style case numbers (>= 0).
        config: phantom config (modality, matrix, ...); default ``PhantomConfig()``.
        seed: dataset seed.
        jobs: worker processes (1 = in this process).
        progress: show a tqdm bar.
        overwrite: regenerate cases that are already there (otherwise skipped).
        store: write a case store instead of the NIH layout.

    Returns:
        a :class:`PhantomSetReport` (written and skipped case numbers, seconds).
    """
    config = config if config is not None else PhantomConfig()
    root = Path(root)
    numbers = [int(n) for n in case_numbers]
    if any(n < 0 for n in numbers):
        raise ValueError(f"case numbers must be >= 0, got {min(numbers)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    start = time.perf_counter()
    report = PhantomSetReport()
    if store:
        case_store = CaseStore.create(root, config.modality)
        present = lambda n: case_store.has_case(case_id_of(n))  # noqa: E731
        worker = _make_store_case
    else:
        present = lambda n: _nih_present(root, n)  # noqa: E731
        worker = _make_nih
    todo, report.skipped = pending(numbers, present, overwrite)
    work = [(root, n, config, seed) for n in todo]
    entries = {}
    for result in run_cases(worker, work, jobs=jobs, desc=f"phantoms {config.modality}", progress=progress):
        if store:
            n, entry = result
            entries[case_id_of(n)] = entry
        else:
            n = result
        report.written.append(n)
    if store and entries:
        case_store.add_entries(entries)
    report.seconds = time.perf_counter() - start
    logger.info("phantoms in %s: %d written, %d already there, %.1f s per case",
                root, len(report.written), len(report.skipped), report.seconds_per_case)
    return report
