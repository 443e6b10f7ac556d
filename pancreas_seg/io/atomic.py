"""Atomic file writes: write a hidden temporary file beside the target, then rename it into place.

A crash or an error mid-write therefore never leaves a half-written output, and an existing file
is replaced only by a complete new one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name is hidden (leading dot) and keeps ``path``'s suffixes (``.nii.gz``,
    ``.keras``, ``.png``), since writers such as nibabel and Keras choose the format by them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix="".join(path.suffixes), dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, sorted keys) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
