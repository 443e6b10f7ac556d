"""Atomic writes: a failing writer leaves neither a target nor a temporary file behind; files get the
umask's modes; a killed writer's temporaries are removed by the next write in the folder."""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pancreas_seg.errors import InputError
from pancreas_seg.io.atomic import (
    STALE_PATTERN,
    atomic_folder,
    atomic_write,
    atomic_write_json,
    atomic_write_many,
    atomic_write_text,
    check_writable,
    current_umask,
    remove_stale_temporaries,
)


def _broken(_tmp: Path) -> None:
    raise OSError("disk full")


def _half_written(tmp: Path) -> None:
    tmp.write_text("half")
    raise OSError("disk full")


def test_atomic_write_keeps_suffixes_on_a_hidden_temporary_name(tmp_path):
    seen = []
    atomic_write(tmp_path / "sub" / "scan.nii.gz", lambda tmp: (seen.append(tmp), tmp.write_text("x")))
    assert seen[0].name.startswith(".scan.nii.gz.tmp-") and seen[0].name.endswith(".nii.gz")
    assert seen[0].parent == tmp_path / "sub"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["scan.nii.gz"]


def test_failing_writer_leaves_no_target_and_no_temporary_file(tmp_path):
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "a.json", _half_written)
    assert list(tmp_path.iterdir()) == []


def test_existing_target_survives_a_failure(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(OSError):
        atomic_write(tmp_path / "a.json", _half_written)
    assert (tmp_path / "a.json").read_text() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_many_renames_none_when_one_writer_fails(tmp_path):
    (tmp_path / "b.png").write_text("old")
    with pytest.raises(OSError):
        atomic_write_many({tmp_path / "a.json": lambda t: t.write_text("{}"), tmp_path / "b.png": _half_written,
                           tmp_path / "c.txt": lambda t: t.write_text("c")})
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"]
    assert (tmp_path / "b.png").read_text() == "old"


def test_write_many_leaves_nothing_when_one_writer_fails(tmp_path):
    with pytest.raises(OSError):
        atomic_write_many({tmp_path / "a.json": lambda t: t.write_text("{}"), tmp_path / "b.png": _broken})
    assert list(tmp_path.iterdir()) == []


def test_write_many_writes_all_with_suffixes_kept(tmp_path):
    names = []

    def write(tmp: Path) -> None:
        names.append(tmp.name)
        tmp.write_text(tmp.suffix)

    written = atomic_write_many({tmp_path / "m.nii.gz": write, tmp_path / "r.json": write})
    assert written == [tmp_path / "m.nii.gz", tmp_path / "r.json"]
    assert names[0].endswith(".nii.gz") and names[1].endswith(".json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz", "r.json"]


def test_atomic_folder_creates_and_replaces(tmp_path):
    target = tmp_path / "series"
    with atomic_folder(target) as tmp:
        assert tmp.name.startswith(".series.tmp-") and tmp.parent == tmp_path
        (tmp / "1.dcm").write_text("one")
    assert [p.name for p in target.iterdir()] == ["1.dcm"]
    with atomic_folder(target) as tmp:
        (tmp / "2.dcm").write_text("two")
    assert [p.name for p in target.iterdir()] == ["2.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["series"]


def test_atomic_folder_failure_keeps_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "1.dcm").write_text("one")
    with pytest.raises(OSError):
        with atomic_folder(target) as tmp:
            (tmp / "2.dcm").write_text("two")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    assert [p.name for p in target.iterdir()] == ["1.dcm"]


def test_atomic_folder_failure_leaves_no_target(tmp_path):
    with pytest.raises(OSError):
        with atomic_folder(tmp_path / "new"):
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------
# file modes, stale temporaries of killed writers, writability
# --------------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_and_folders_follow_the_umask(tmp_path, umask_022):
    assert current_umask() == 0o022
    atomic_write_json(tmp_path / "one.json", {})
    atomic_write_many({tmp_path / "a.txt": lambda t: t.write_text("a")})
    with atomic_folder(tmp_path / "series") as folder:
        (folder / "1.dcm").write_text("one")
    assert stat.S_IMODE((tmp_path / "one.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "series").stat().st_mode) == 0o755


def _dead_pid() -> int:
    """The PID of a process that has finished (and was reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def _temporary_name(target: str, pid: int, tag: str = ".tmp-", host: str | None = None) -> str:
    host = host or hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    return f".{target}{tag}{host}-{pid}-abc_1234.nii.gz"


def test_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale_file = tmp_path / _temporary_name("scan.nii.gz", dead)
    stale_file.write_text("half")
    stale_folder = tmp_path / _temporary_name("series", dead, tag=".old-")[: -len(".nii.gz")]
    (stale_folder / "series").mkdir(parents=True)
    kept = [
        _temporary_name("scan.nii.gz", alive),  # a writer still running
        _temporary_name("scan.nii.gz", dead, host="0123abcd"),  # another machine's writer
        f".scan.nii.gz.tmp-{dead}-abc_1234.nii.gz",  # not our pattern
        "notes.txt",
    ]
    for name in kept:
        (tmp_path / name).write_text("keep")
    atomic_write_text(tmp_path / "new.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["new.txt"])


def test_remove_stale_temporaries_returns_what_it_removed(tmp_path):
    stale = tmp_path / _temporary_name("a.json", _dead_pid())
    stale.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_temporary_names_carry_host_and_pid(tmp_path):
    seen = []
    atomic_write(tmp_path / "scan.nii.gz", lambda tmp: (seen.append(tmp.name), tmp.write_text("x")))
    match = STALE_PATTERN.match(seen[0])
    assert match is not None and int(match["pid"]) == os.getpid()


def test_failure_mid_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "series"
    target.mkdir()
    (target / "1.dcm").write_text("one")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".series.tmp-"):
            raise KeyboardInterrupt  # a signal between moving the old folder aside and renaming the new one
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(target) as folder:
            (folder / "2.dcm").write_text("two")
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    assert [p.name for p in target.iterdir()] == ["1.dcm"]


def test_check_writable_refuses_a_path_below_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match=r"cannot write here: .*file\.txt is a file, not a folder"):
        check_writable(tmp_path / "file.txt" / "sub" / "out.nii.gz")
    with pytest.raises(InputError, match="cannot write here"):
        check_writable(Path("/proc/self/out.nii.gz"))


def test_check_writable_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.nii.gz")
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- durability: fsync before the rename, the folder after it -------------------------------

@pytest.fixture
def sync_log(monkeypatch) -> list[tuple]:
    """Every ``os.fsync`` (as ``("fsync", inode)``) and ``os.replace`` (``("replace", src, dst)``), in order."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _around_rename(events: list[tuple], final: Path) -> tuple[list, list]:
    """The inodes fsynced before and after the rename to ``final``."""
    at = next(i for i, event in enumerate(events) if event[0] == "replace" and event[2] == final)
    return ([e[1] for e in events[:at] if e[0] == "fsync"], [e[1] for e in events[at + 1:] if e[0] == "fsync"])


def test_file_is_fsynced_before_the_rename_and_its_folder_after(tmp_path, sync_log):
    final = tmp_path / "out" / "mask.nii.gz"
    atomic_write(final, lambda tmp: tmp.write_bytes(b"complete"))
    before, after = _around_rename(sync_log, final)
    assert before == [final.stat().st_ino]  # the temporary file, now under the final name
    assert after == [final.parent.stat().st_ino]


def test_write_many_fsyncs_every_file_then_each_folder_once(tmp_path, sync_log):
    finals = [tmp_path / "a.json", tmp_path / "b.png", tmp_path / "sub" / "c.nii"]
    atomic_write_many({final: (lambda tmp: tmp.write_text("x")) for final in finals})
    renamed = [i for i, event in enumerate(sync_log) if event[0] == "replace"]
    for final in finals:
        before, _ = _around_rename(sync_log, final)
        assert final.stat().st_ino in before
    after_last = [e[1] for e in sync_log[renamed[-1] + 1:] if e[0] == "fsync"]
    assert sorted(after_last) == sorted({tmp_path.stat().st_ino, (tmp_path / "sub").stat().st_ino})


def test_atomic_folder_fsyncs_its_files_and_itself_before_the_rename(tmp_path, sync_log):
    final = tmp_path / "series"
    with atomic_folder(final) as tmp:
        (tmp / "deep").mkdir()
        (tmp / "deep" / "slice.dcm").write_bytes(b"dicom")
    before, after = _around_rename(sync_log, final)
    assert {(final / "deep" / "slice.dcm").stat().st_ino, (final / "deep").stat().st_ino,
            final.stat().st_ino} <= set(before)
    assert after == [tmp_path.stat().st_ino]


def test_folder_fsync_is_skipped_where_folders_cannot_be_opened(tmp_path, monkeypatch, sync_log):
    real_open = os.open

    def no_folders(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))  # as Windows answers
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_folders)
    final = tmp_path / "report.json"
    atomic_write_json(final, {"ok": True})
    assert final.read_text().strip().startswith("{")
    before, after = _around_rename(sync_log, final)
    assert before == [final.stat().st_ino] and after == []
