"""Atomic writes: write under a hidden temporary name beside the target, then rename into place.

A crash or an error mid-write therefore never leaves a half-written output, and an existing
target is replaced only by a complete new one. Three shapes of the same idea:

* :func:`atomic_write`: one file;
* :func:`atomic_write_many`: several files, all renamed only when every one was written;
* :func:`atomic_folder`: a whole folder (e.g. a DICOM series), swapped in when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

TEMP_TAG = ".tmp-"  # hidden temporary names read ".<target name>.tmp-<random><suffixes>"
OLD_TAG = ".old-"  # the folder a replaced target folder is moved to before it is deleted


def _temporary_file(path: Path) -> Path:
    """A new hidden empty file beside ``path`` that keeps its suffixes (``.nii.gz``, ``.keras``).

    Writers such as nibabel and Keras choose the format by the suffix, so it must survive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}{TEMP_TAG}", suffix="".join(path.suffixes), dir=path.parent)
    os.close(handle)
    return Path(name)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` on a hidden temporary file beside ``path``, then rename it to ``path``.

    On failure the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    tmp = _temporary_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_many(writers: Mapping[Path, Callable[[Path], Any]]) -> list[Path]:
    """All-or-nothing :func:`atomic_write` of several files.

    Each ``writer(tmp_path)`` writes its file under a hidden temporary name; only when all of them
    succeeded are they renamed into place. On any failure every temporary file is removed and no
    target is created or replaced.

    Returns:
        the target paths, in the order of ``writers``.
    """
    staged: dict[Path, Path] = {}
    try:
        for final, writer in writers.items():
            final = Path(final)
            staged[final] = _temporary_file(final)
            writer(staged[final])
        for final, tmp in staged.items():
            os.replace(tmp, final)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    return list(staged)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a hidden temporary folder that replaces ``path`` on success.

    An existing ``path`` is moved aside, the new folder renamed into place, and the old one
    deleted. When the block raises, the temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TEMP_TAG}", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}{OLD_TAG}", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, sorted keys) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
