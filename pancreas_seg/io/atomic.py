"""Atomic writes: write under a hidden temporary name beside the target, then rename into place.

A crash or an error mid-write therefore never leaves a half-written output, and an existing
target is replaced only by a complete new one. Three shapes of the same idea:

* :func:`atomic_write`: one file;
* :func:`atomic_write_many`: several files, all renamed only when every one was written;
* :func:`atomic_folder`: a whole folder (e.g. a DICOM series), swapped in when complete.

Temporary names read ``.<target name>.tmp-<host>-<pid>-<random><suffixes>``: an error or a
signal turned into an exception (the CLI does that for SIGTERM) removes them at once; what a
``kill -9`` leaves behind is recognised by the writer's host and PID and removed by
:func:`remove_stale_temporaries`, which every writer here runs on its target's folder first.
Written files and folders get the modes ``open``/``mkdir`` would give them (0666 / 0777 less
the umask), not the private 0600 / 0700 of :mod:`tempfile`.

Durability: what is renamed into place is fsynced first (a file, or every file and folder of a
temporary folder), and the target's folder after the rename, so that a power loss leaves the
old or the complete new target under its name, never an empty or partial one. Folder fsync is
skipped where a folder cannot be opened (Windows).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from pancreas_seg.errors import InputError

logger = logging.getLogger(__name__)

TEMP_TAG = ".tmp-"  # a file or folder being written
OLD_TAG = ".old-"  # the folder a replaced target folder is moved to before it is deleted
HOST_TAG_LENGTH = 8  # hex digits of the host name's hash in temporary names
RANDOM_LENGTH = 8  # characters tempfile adds to a temporary name
FILE_MODE = 0o666  # before the umask, as open() creates files
FOLDER_MODE = 0o777  # before the umask, as mkdir() creates folders
FILE_SYNC_FLAGS = os.O_RDWR if os.name == "nt" else os.O_RDONLY  # Windows fsyncs writable handles only
STALE_PATTERN = re.compile(
    rf"^\..+(?:{re.escape(TEMP_TAG)}|{re.escape(OLD_TAG)})(?P<host>[0-9a-f]{{{HOST_TAG_LENGTH}}})-(?P<pid>\d+)-"
    rf"[a-z0-9_]{{{RANDOM_LENGTH}}}(?:\..*)?$"
)


def _host_tag() -> str:
    """Short hash of the host name: a PID only identifies a process on its own machine (or container)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:HOST_TAG_LENGTH]


def _prefix(path: Path, tag: str) -> str:
    return f".{path.name}{tag}{_host_tag()}-{os.getpid()}-"


def current_umask() -> int:
    """The process umask, read from ``/proc/self/status`` where it is shown (no change, thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # racy with other threads creating files, but only where /proc is absent
    os.umask(mask)
    return mask


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that writers killed on this host left in ``folder`` (not recursive).

    Only names matching this module's temporary pattern are considered, and only those whose
    writer process (same host, by PID) is no longer running are removed; others' and live
    writers' temporaries are kept.

    Returns:
        the removed paths (empty when ``folder`` does not exist).
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    host, removed = _host_tag(), []
    for name in names:
        match = STALE_PATTERN.match(name)
        if match is None or match["host"] != host or _pid_running(int(match["pid"])):
            continue
        path = folder / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("cannot remove stale temporary %s: %s", path, exc)
            continue
        logger.info("removed %s, left by process %s that was killed while writing", path, match["pid"])
        removed.append(path)
    return removed


def check_writable(path: str | os.PathLike) -> None:
    """Fail early when ``path`` (a file or folder to be written atomically) cannot be written.

    Creates and removes a temporary file where the atomic writers will put theirs: beside
    ``path`` or, when its parent folders do not exist yet, in the nearest existing one (which
    must then allow creating them); also inside ``path`` when it is an existing folder. Leaves
    nothing behind, not even the missing parent folders.

    Raises:
        InputError: ``"<path>: cannot write here: <reason>"``.
    """
    path = Path(path).absolute()
    existing = next(parent for parent in path.parents if parent.exists() or parent == Path(parent.anchor))
    if not existing.is_dir():
        raise InputError(path, f"cannot write here: {existing} is a file, not a folder")
    folders = [existing] + ([path] if path.is_dir() else [])
    try:
        for folder in folders:
            handle, name = tempfile.mkstemp(prefix=_prefix(path, TEMP_TAG), dir=folder)
            os.close(handle)
            os.unlink(name)
    except OSError as exc:
        raise InputError(path, f"cannot write here: {exc.strerror or exc}") from None


def check_output_file(path: str | os.PathLike, suffixes: Sequence[str], kind: str) -> None:
    """Fail early unless ``path`` can take a ``kind`` file: it ends in one of ``suffixes`` (so it can
    only replace a file of its own kind, never a scan, mask or report read as input), is no folder,
    and can be written (:func:`check_writable`).

    Raises:
        InputError: naming ``path`` and the problem.
    """
    path = Path(path)
    if not any(path.name.lower().endswith(suffix) for suffix in suffixes) or path.name.lower() in suffixes:
        raise InputError(path, f"the {kind} must be named *{' or *'.join(suffixes)}; "
                               "an output never replaces a file of another kind")
    if path.is_dir():
        raise InputError(path, f"is a folder; name the {kind} file to write")
    check_writable(path)


def check_output_folder(path: str | os.PathLike) -> None:
    """Fail early unless ``path`` is, or can become, a writable folder (an existing file is refused)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "is a file; -o names a folder to write into")
    check_writable(path)


def _temporary_file(path: Path) -> Path:
    """A new hidden empty file beside ``path`` that keeps its suffixes (``.nii.gz``, ``.keras``).

    Writers such as nibabel and Keras choose the format by the suffix, so it must survive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=_prefix(path, TEMP_TAG), suffix="".join(path.suffixes), dir=path.parent)
    os.close(handle)
    return Path(name)


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s data and metadata to the disk."""
    handle = os.open(path, FILE_SYNC_FLAGS)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename into it) to the disk; skipped where folders cannot be
    opened or fsynced (Windows, some network file systems)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as exc:
        logger.debug("cannot fsync folder %s: %s", folder, exc)
    finally:
        os.close(handle)


def _fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (itself included), files first."""
    for root, folders, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync_file(Path(root, name))
        _fsync_folder(Path(root))


def _publish(tmp: Path, final: Path, umask: int, sync_folder: bool = True) -> None:
    """Give ``tmp`` the mode a newly created file would have, fsync it, rename it to ``final``
    and, when ``sync_folder``, fsync the folder that now holds ``final``."""
    os.chmod(tmp, FILE_MODE & ~umask)
    _fsync_file(tmp)
    os.replace(tmp, final)
    if sync_folder:
        _fsync_folder(final.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` on a hidden temporary file beside ``path``, then rename it to ``path``.

    On failure the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = _temporary_file(path)
    try:
        write(tmp)
        _publish(tmp, path, current_umask())
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
    for folder in {Path(final).parent for final in writers}:
        remove_stale_temporaries(folder)
    staged: dict[Path, Path] = {}
    umask = current_umask()
    try:
        for final, writer in writers.items():
            final = Path(final)
            staged[final] = _temporary_file(final)
            writer(staged[final])
        for final, tmp in staged.items():
            _publish(tmp, final, umask, sync_folder=False)
        for folder in {final.parent for final in staged}:
            _fsync_folder(folder)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    return list(staged)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a hidden temporary folder that replaces ``path`` on success.

    An existing ``path`` is moved aside, the new folder renamed into place, and the old one
    deleted. When the block (or the swap) fails, the temporary folder is deleted and ``path``
    is as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    mode = FOLDER_MODE & ~current_umask()
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path, TEMP_TAG), dir=path.parent))
    aside: Path | None = None
    try:
        os.chmod(tmp, mode)
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(path, OLD_TAG), dir=path.parent))
            aside = old / path.name
            os.replace(path, aside)
            os.replace(tmp, path)
            _fsync_folder(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            _fsync_folder(path.parent)
    except BaseException:
        if aside is not None and aside.exists() and not path.exists():
            os.replace(aside, path)  # interrupted mid-swap: put the old folder back
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside.parent, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, sorted keys) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
