"""Atomic writes: a failing writer leaves neither a target nor a temporary file behind."""
from __future__ import annotations

from pathlib import Path

import pytest

from pancreas_seg.io.atomic import atomic_folder, atomic_write, atomic_write_json, atomic_write_many


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
