"""Cohort prediction across jobs: parts that cover a batch exactly once, a restarted job that
skips finished cases (and ``--overwrite`` that does not), and the cohort CSV of ``summarize``."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pancreas_seg.cli import main
from pancreas_seg.cohort import COLUMNS, is_finished, select_part
from pancreas_seg.io.nifti import write_nifti
from tests.test_cli_predict_evaluate import ct_scan, one_error_line

CASES = [f"case_{index}" for index in (3, 0, 4, 1, 2)]  # written out of order: parts go by sorted id
PARTS = 2


@dataclass(frozen=True)
class _Item:
    case_id: str


@pytest.mark.parametrize("count, parts", [(5, 2), (7, 3), (2, 4), (1, 1)])
def test_parts_cover_every_case_exactly_once(count, parts):
    items = [_Item(f"c{index:02d}") for index in reversed(range(count))]
    shares = [select_part(items, parts, part) for part in range(parts)]
    taken = [item.case_id for share in shares for item in share]
    assert sorted(taken) == sorted(item.case_id for item in items) and len(taken) == count
    assert [item.case_id for item in shares[0]] == [f"c{index:02d}" for index in range(0, count, parts)]


@pytest.mark.parametrize("parts, part, problem", [(0, 0, "at least 1"), (2, 2, "outside 0..1"), (2, -1, "outside")])
def test_a_part_outside_the_parts_is_refused(parts, part, problem):
    with pytest.raises(ValueError, match=problem):
        select_part([_Item("a")], parts, part)


@pytest.fixture
def batch(tmp_path):
    folder = tmp_path / "batch"
    for seed, case in enumerate(CASES):
        write_nifti(ct_scan(seed=seed), folder / f"{case}.nii.gz")
    return folder


def predict(batch, out, model, *extra) -> int:
    return main(["predict", str(batch), "-o", str(out), "--model", str(model), "--quiet", *extra])


def test_a_job_array_predicts_each_case_once_and_a_restart_skips_finished_cases(batch, tmp_path, runs, capsys):
    out = tmp_path / "out"
    for part in range(PARTS):
        assert predict(batch, out, runs["identity"], "--num-parts", str(PARTS), "--part-id", str(part)) == 0
    printed = capsys.readouterr().out
    assert "3 of 3 scans predicted" in printed and "2 of 2 scans predicted" in printed  # cases [0::2], [1::2]
    reports = {case: json.loads((out / f"{case}.json").read_text()) for case in CASES}
    stamps = {case: (out / f"{case}.nii.gz").stat().st_mtime_ns for case in CASES}

    (out / "case_2.nii.gz").unlink()  # a job killed between cases: case_2 has no mask
    assert predict(batch, out, runs["identity"], "--num-parts", str(PARTS), "--part-id", "0") == 0
    assert "2 scans predicted before with the same models and options were skipped" in capsys.readouterr().out
    assert (out / "case_2.nii.gz").is_file()
    assert all((out / f"{case}.nii.gz").stat().st_mtime_ns == stamps[case] for case in ("case_0", "case_4"))

    assert predict(batch, out, runs["identity"], "--num-parts", str(PARTS), "--part-id", "1", "--overwrite") == 0
    assert "skipped" not in capsys.readouterr().out
    assert all((out / f"{case}.nii.gz").stat().st_mtime_ns != stamps[case] for case in ("case_1", "case_3"))
    again = json.loads((out / "case_1.json").read_text())
    assert again["pancreas_volume_ml"] == reports["case_1"]["pancreas_volume_ml"]


def test_other_models_or_options_predict_again(batch, tmp_path, runs, capsys):
    out = tmp_path / "out"
    assert predict(batch, out, runs["identity"]) == 0
    report = json.loads((out / "case_0.json").read_text())
    mask, path = out / "case_0.nii.gz", out / "case_0.json"
    assert is_finished(path, mask, report["models"], report["flags"])
    assert not is_finished(path, mask, report["models"], {**report["flags"], "tta": True})
    assert not is_finished(path, mask, [{**report["models"][0], "config_hash": "0" * 12}], report["flags"])
    assert not is_finished(path, mask, report["models"] * 2, report["flags"])  # an average of two is another model
    assert predict(batch, out, runs["identity"], "--tta") == 0
    assert "skipped" not in capsys.readouterr().out
    assert json.loads(path.read_text())["flags"]["tta"] is True


def test_parts_of_a_single_scan_are_refused(tmp_path, runs, capsys):
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    rc = predict(tmp_path / "ct.nii.gz", tmp_path / "pred.nii.gz", runs["identity"], "--num-parts", "2")
    assert rc == 2 and "is one scan" in one_error_line(capsys)
    rc = predict(tmp_path, tmp_path / "out", runs["identity"], "--num-parts", "2", "--part-id", "2")
    assert rc == 2 and "outside 0..1" in one_error_line(capsys)


def test_summarize_lists_every_case_of_the_cohort(batch, tmp_path, runs, capsys):
    out = tmp_path / "out"
    for part in range(PARTS):
        predict(batch, out, runs["identity"], "--num-parts", str(PARTS), "--part-id", str(part))
    (out / "notes.json").write_text('{"not": "a report"}')
    capsys.readouterr()
    assert main(["summarize", str(out)]) == 0
    assert f"{out / 'cohort.csv'}: {len(CASES)} cases" in capsys.readouterr().out
    with open(out / "cohort.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    assert [row["case_id"] for row in rows] == sorted(CASES)
    for row in rows:
        report = json.loads((out / f"{row['case_id']}.json").read_text())
        assert float(row["pancreas_volume_ml"]) == pytest.approx(report["pancreas_volume_ml"])
        assert [int(row["first_slice"]), int(row["last_slice"])] == report["slice_range"]
        assert row["needs_review"] == str(report["quality"]["needs_review"])
        assert row["models"] == f"{report['models'][0]['path']}#{report['models'][0]['config_hash']}"
        assert float(row["total_s"]) == pytest.approx(report["timings_s"]["total"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # written atomically


def test_summarize_refuses_a_folder_without_reports(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["summarize", str(tmp_path / "empty")]) == 2
    assert "holds no prediction report" in one_error_line(capsys)


def test_summarize_lists_damaged_reports_and_missing_masks_as_failed(batch, tmp_path, runs, capsys):
    out = tmp_path / "out"
    predict(batch, out, runs["identity"])
    cases = sorted(CASES)
    (out / f"{cases[0]}.json").write_text('{"case_id": "half')  # half-written
    damaged = json.loads((out / f"{cases[1]}.json").read_text())
    damaged["quality"] = None
    (out / f"{cases[1]}.json").write_text(json.dumps(damaged))
    Path(json.loads((out / f"{cases[2]}.json").read_text())["outputs"]["mask"]).unlink()
    capsys.readouterr()
    assert main(["summarize", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"{len(CASES)} cases" in captured.out and "3 failed" in captured.out
    with open(out / "cohort.csv", newline="") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == cases  # every case appears, none dropped
    assert rows[cases[0]]["status"].startswith("failed: unreadable report")
    assert rows[cases[1]]["status"] == "failed: damaged report: quality is NoneType, not an object"
    assert rows[cases[2]]["status"].startswith("failed: mask missing")
    assert rows[cases[1]]["pancreas_volume_ml"] == ""  # nothing from a damaged report is trusted
    assert all(rows[c]["status"] == "ok" for c in cases[3:])
    assert len(captured.err.strip().splitlines()) == 3
