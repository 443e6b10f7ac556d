"""The case store: converted scans, one compressed ``.npz`` file per case plus a manifest.

Layout of a store folder::

    manifest.json        {"format": 1, "modality": "CT", "cases": {case_id: entry, ...}}
    manifest.lock        empty; held (``flock``) while the manifest is created or updated
    cases/<case_id>.npz  image [Z, Y, X] (int16 HU for CT, float32 for MRI), mask [Z, Y, X] uint8,
                         affine 4x4 (col, row, slice) -> RAS mm, modality, source ids (JSON)

Every file is written to a temporary name and renamed into place, so an interrupted
conversion never leaves a half-written case or manifest behind. The manifest is updated under
a lock, re-read from disk and merged, so several conversions into one store (processes, even
on other machines where the file system supports ``flock``) add up instead of overwriting
each other's entries.
"""
from __future__ import annotations

import fcntl
import json
import os
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import atomic_write, atomic_write_json
from pancreas_seg.io.scan import MODALITIES, Scan
from pancreas_seg.metrics import volume_ml

STORE_FORMAT = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "manifest.lock"
CASES_DIR = "cases"


@dataclass
class Case:
    """One converted scan with its pancreas mask on the same grid.

    ``scan.array`` (also ``image``) is ``[Z, Y, X]`` int16 HU (CT) or float32 (MRI), ``mask``
    ``[Z, Y, X]`` uint8 in {0, 1}; ``affine``, ``modality``, ``spacing`` and ``source`` are the scan's.
    """

    case_id: str
    scan: Scan
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.image.shape != self.mask.shape:
            raise ValueError(f"case {self.case_id}: image {self.image.shape} and mask {self.mask.shape} differ")

    @property
    def image(self) -> np.ndarray:
        """``[Z, Y, X]`` int16 HU (CT) or float32 (MRI)."""
        return self.scan.array

    @property
    def affine(self) -> np.ndarray:
        """4×4 (col, row, slice) -> RAS mm."""
        return self.scan.affine

    @property
    def modality(self) -> str:
        return self.scan.modality

    @property
    def source(self) -> dict[str, str]:
        """Identifiers of where the scan came from (paths, PatientID, UIDs), all strings."""
        return self.scan.source

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(z, y, x)`` in mm."""
        return self.scan.spacing

    def manifest_entry(self) -> dict[str, Any]:
        """Summary kept in the manifest: shape, spacing, pancreas slice range and volume."""
        slices = np.flatnonzero(self.mask.any(axis=(1, 2)))
        return {
            "shape": list(self.image.shape),
            "spacing_mm": [round(s, 4) for s in self.spacing],
            "pancreas_slices": [int(slices[0]), int(slices[-1])] if slices.size else None,
            "pancreas_volume_ml": round(volume_ml(self.mask, self.spacing), 2),
            "modality": self.modality,
            "source": dict(self.source),
        }


@contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    """Hold the store's exclusive lock (blocking) while the block runs."""
    with open(root / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CaseStore:
    """A folder of converted cases of one modality; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not (self.root / MANIFEST_NAME).is_file():
            raise InputError(self.root, f"not a case store (no {MANIFEST_NAME}); convert data first")
        self._manifest = self._read_manifest()

    def _read_manifest(self) -> dict[str, Any]:
        manifest_path = self.root / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(manifest_path, f"unreadable manifest ({err})") from None
        if manifest.get("format") != STORE_FORMAT:
            raise InputError(manifest_path, f"store format {manifest.get('format')!r}, expected {STORE_FORMAT}")
        return manifest

    @classmethod
    def create(cls, root: str | os.PathLike, modality: str) -> "CaseStore":
        """Open ``root`` as a store, creating an empty one if needed; the modality must match."""
        root = Path(root)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if not (root / MANIFEST_NAME).is_file():
            (root / CASES_DIR).mkdir(parents=True, exist_ok=True)
            with _manifest_lock(root):
                if not (root / MANIFEST_NAME).is_file():
                    atomic_write_json(root / MANIFEST_NAME, {"format": STORE_FORMAT, "modality": modality, "cases": {}})
        store = cls(root)
        if store.modality != modality:
            raise InputError(root, f"store holds {store.modality} cases, cannot add {modality}")
        return store

    @property
    def modality(self) -> str:
        return self._manifest["modality"]

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """``{case_id: entry}`` for every case in the store, sorted by id."""
        return dict(sorted(self._manifest["cases"].items()))

    @property
    def case_ids(self) -> list[str]:
        return sorted(self._manifest["cases"])

    def case_path(self, case_id: str) -> Path:
        return self.root / CASES_DIR / f"{case_id}.npz"

    def has_case(self, case_id: str) -> bool:
        """True when the case file exists and the manifest lists it."""
        return case_id in self._manifest["cases"] and self.case_path(case_id).is_file()

    def write_case_file(self, case: Case) -> dict[str, Any]:
        """Write one case file atomically and return its manifest entry (manifest untouched).

        Safe to call from worker processes; the parent then calls :meth:`add_entries`.
        """
        if case.modality != self.modality:
            raise InputError(self.root, f"case {case.case_id} is {case.modality}, store holds {self.modality}")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, image=case.image, mask=case.mask.astype(np.uint8),
                                    affine=np.asarray(case.affine, np.float64), modality=case.modality,
                                    source=json.dumps(case.source, sort_keys=True))

        atomic_write(self.case_path(case.case_id), write)
        return case.manifest_entry()

    def add_entries(self, entries: dict[str, dict[str, Any]]) -> None:
        """Merge manifest entries into the manifest on disk (under the store's lock) and rewrite it atomically.

        Entries other processes added since this store was opened are kept and become visible here.
        """
        with _manifest_lock(self.root):
            manifest = self._read_manifest()
            manifest["cases"].update(entries)
            atomic_write_json(self.root / MANIFEST_NAME, manifest)
        self._manifest = manifest

    def write_case(self, case: Case) -> dict[str, Any]:
        """Write one case and record it in the manifest."""
        entry = self.write_case_file(case)
        self.add_entries({case.case_id: entry})
        return entry

    def read_case(self, case_id: str) -> Case:
        """Load one case; unknown ids and damaged files raise :class:`InputError`."""
        path = self.case_path(case_id)
        if case_id not in self._manifest["cases"] or not path.is_file():
            raise InputError(self.root, f"no case {case_id!r} in the store")
        try:
            with np.load(path, allow_pickle=False) as data:
                scan = Scan(data["image"], data["affine"], str(data["modality"]), json.loads(str(data["source"])))
                return Case(case_id, scan, data["mask"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise InputError(path, f"damaged case file ({err}); convert it again with --overwrite") from None

    def summary(self) -> str:
        """A few lines describing the store: case count, spacings, pancreas volumes."""
        entries = list(self.manifest.values())
        if not entries:
            return f"{self.root}: empty {self.modality} store"
        volumes = np.array([e["pancreas_volume_ml"] for e in entries])
        z_spacing = np.array([e["spacing_mm"][0] for e in entries])
        xy_spacing = np.array([e["spacing_mm"][2] for e in entries])
        slices = np.array([e["shape"][0] for e in entries])
        return "\n".join([
            f"{self.root}: {len(entries)} {self.modality} cases",
            f"  slices per case {slices.min()}-{slices.max()}, slice spacing {z_spacing.min():.2f}-{z_spacing.max():.2f} mm,"
            f" pixel {xy_spacing.min():.2f}-{xy_spacing.max():.2f} mm",
            f"  pancreas volume {volumes.mean():.1f} mL (range {volumes.min():.1f}-{volumes.max():.1f})",
        ])
