"""Golden hashes of the phantom generator.

They pin the generator's output, bit for bit, so that a refactor of the anatomy (or of anything the
phantoms are made of) cannot change it unnoticed: the rendered scans and labels, and, one level
down, every paint operation of ``build_anatomy`` and the state of its random stream when it returns
(a builder that draws in another order changes the hash even where the picture would look alike).
A deliberate change of the phantoms updates these hashes in the same commit.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from pancreas_seg.data.phantom import PhantomConfig, generate_case
from pancreas_seg.data.phantom.acquisition import case_rngs
from pancreas_seg.data.phantom.anatomy import build_anatomy

GOLDEN_MATRIX = 64  # px, small enough for a fast test; the anatomy does not depend on it
GOLDEN_FOV_MM = 400.0  # mm, field of view given to build_anatomy directly

# sha256 of (image dtype, shape, bytes; label bytes; affine bytes) of generate_case(case, modality, seed)
RENDERED = {
    (1, "CT", 0): "d9cb35c665537c4f9ca75df7abefed17c19dbfc53e38ddcb1f216d0b1d853ed4",
    (2, "CT", 1): "88a9231dcc0a6cfa73fbe6cb60949f2c35b1785a53506cbc193b2336e939df0e",
    (7, "CT", 3): "d982131edf7d48afc3470884bbbcbc8ec8c1d3ca8d0d4c18acb3e545c243424a",
    (1, "MRI", 0): "fbe7158693c97ef7fcadf43d783c0cac74b0a47d959168dd4071b9ba5a14cecf",
    (2, "MRI", 1): "cec01283b2b578848d5bf6e63bc013b0066e4e3c19405c63d2f557e7906d304b",
    (7, "MRI", 3): "c3136ec94be1f326b1e6785c910b8239799eae6b17f38d170214f7b3cea27cc6",
}

# sha256 of every paint operation of build_anatomy(rng, GOLDEN_FOV_MM), its extents and the rng state after
ANATOMY = {
    (1, 0): "8af1f3e1844ca55c0d3564b695b9e0db8c69959cbc83c84ed15a4b90bae80e25",
    (2, 1): "0ff57c6e1a3ecffb987fbdd37989d37150d43db69228d20e85d17cfd272beaea",
    (3, 2): "5e9dae48db03a0972e2c5770e8753bc0ed781f1d48ecc20b493d995c8ba5b9fc",
    (7, 3): "925804efc59d0475c77de496caef04b35e91ed16571bde4570dd756760581aba",
    (11, 5): "04187c14a66681c0c6ef535cbf4956bb1b585e5aba0913b035d6e5fca89f06ca",
}


def _feed(digest, value) -> None:
    """Add ``value`` to ``digest`` exactly: floats by their hex form, arrays by dtype, shape and bytes,
    shapes by their class and dataclass fields (in order), containers element by element."""
    if isinstance(value, np.ndarray):
        digest.update(f"ndarray{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__name__.encode())
        for f in dataclasses.fields(value):
            digest.update(f.name.encode())
            _feed(digest, getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, dict):
        digest.update(f"dict{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (float, np.floating)):
        digest.update(float(value).hex().encode())
    elif value is None or isinstance(value, (bool, int, str, np.integer, np.bool_)):
        digest.update(f"{type(value).__name__}:{value}".encode())
    else:
        raise TypeError(f"no exact form for {type(value).__name__}")


def _rendered_hash(case_number: int, modality: str, seed: int) -> str:
    scan, mask = generate_case(case_number, modality, seed=seed, config=PhantomConfig(matrix=GOLDEN_MATRIX))
    digest = hashlib.sha256()
    _feed(digest, (scan.array, mask, scan.affine))
    return digest.hexdigest()


def _anatomy_hash(case_number: int, seed: int) -> str:
    rng = case_rngs(case_number, "CT", seed)[0]
    anat = build_anatomy(rng, GOLDEN_FOV_MM)
    digest = hashlib.sha256()
    _feed(digest, anat)
    _feed(digest, rng.bit_generator.state)
    return digest.hexdigest()


@pytest.mark.parametrize("case_number, modality, seed", sorted(RENDERED))
def test_rendered_phantoms_are_unchanged(case_number, modality, seed):
    assert _rendered_hash(case_number, modality, seed) == RENDERED[case_number, modality, seed]


@pytest.mark.parametrize("case_number, seed", sorted(ANATOMY))
def test_anatomy_and_its_random_stream_are_unchanged(case_number, seed):
    assert _anatomy_hash(case_number, seed) == ANATOMY[case_number, seed]
