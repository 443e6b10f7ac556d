"""The built-in data: synthetic phantom sets generated once into a cache folder and reused.

Every script defaults to these when it gets no ``--data``. The cache lives in
``$PANCREAS_SEG_CACHE`` (default ``~/.cache/pancreas_seg``)::

    phantoms-v<version>-<set>-<modality>/   NIH Pancreas-CT layout (DICOM series + NIfTI labels)
    store-v<version>-<set>-<modality>/      the converted case store

``<version>`` is the phantom generator's (:data:`PHANTOM_VERSION`): a set made by an older
generator lies in another folder and is never reused.

These are phantoms, not patients: results on them are never the paper's numbers.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pancreas_seg.data.convert import convert_cases, find_nih_cases
from pancreas_seg.data.phantom import PhantomConfig, write_phantom_set
from pancreas_seg.data.store import CaseStore

log = logging.getLogger(__name__)

CACHE_ENV = "PANCREAS_SEG_CACHE"
PHANTOM_VERSION = 2  # bump whenever the generator's output changes (2: whole abdomen, 3D texture, fat, breath holds)


@dataclass(frozen=True)
class PhantomSet:
    """Size of a built-in phantom set."""

    cases: int  # scans (one patient each)
    matrix: int  # in-plane pixels of the generated slices
    ct_slices: tuple[int, int] | None = None  # CT slice count range; None = whole abdomen (PhantomConfig)
    seed: int = 0

    def config(self, modality: str) -> PhantomConfig:
        """The generator's config for this set."""
        if self.ct_slices is None:
            return PhantomConfig(modality=modality, matrix=self.matrix)
        return PhantomConfig(modality=modality, matrix=self.matrix, ct_slices=self.ct_slices)


PHANTOM_SETS = {
    "standard": PhantomSet(cases=20, matrix=512),  # realistic 512x512 whole-abdomen scans, 5 test cases per fold
    "tiny": PhantomSet(cases=4, matrix=64, ct_slices=(48, 64)),  # seconds: the testing preset, the test suite
}


def cache_root() -> Path:
    """Root of the built-in data cache."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pancreas_seg")


def _phantom_set(name: str) -> PhantomSet:
    try:
        return PHANTOM_SETS[name]
    except KeyError:
        raise ValueError(f"unknown built-in set {name!r}; choose one of {sorted(PHANTOM_SETS)}") from None


def raw_dir(modality: str = "CT", set_name: str = "standard") -> Path:
    """Folder of the phantom set in the NIH layout."""
    _phantom_set(set_name)
    return cache_root() / f"phantoms-v{PHANTOM_VERSION}-{set_name}-{modality.lower()}"


def store_dir(modality: str = "CT", set_name: str = "standard") -> Path:
    """Folder of the converted built-in store."""
    _phantom_set(set_name)
    return cache_root() / f"store-v{PHANTOM_VERSION}-{set_name}-{modality.lower()}"


def ensure_phantom_set(modality: str = "CT", set_name: str = "standard", jobs: int = 1,
                       progress: bool = True) -> Path:
    """Generate the phantom set in the NIH layout unless it is already there; return its folder."""
    spec = _phantom_set(set_name)
    root = raw_dir(modality, set_name)
    write_phantom_set(root, range(1, spec.cases + 1), spec.config(modality),
                      seed=spec.seed, jobs=jobs, progress=progress)
    return root


def ensure_store(modality: str = "CT", set_name: str = "standard", jobs: int = 1, progress: bool = True) -> CaseStore:
    """The built-in case store, generated and converted on first use."""
    spec = _phantom_set(set_name)
    out = store_dir(modality, set_name)
    if (out / "manifest.json").is_file() and len(CaseStore(out).case_ids) >= spec.cases:
        return CaseStore(out)
    log.info("building the built-in %s %s phantom set in %s (once)", set_name, modality, cache_root())
    sources, _ = find_nih_cases(ensure_phantom_set(modality, set_name, jobs, progress))
    report = convert_cases(sources, out, modality, jobs=jobs, progress=progress)
    if report.failed:
        raise RuntimeError(f"built-in phantoms failed to convert: {report.failed}")
    return CaseStore(out)
