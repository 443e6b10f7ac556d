"""Data commands as users run them: data_prep scripts in a subprocess, ``pancreas-seg
convert-dicom`` on real DICOM, ``pancreas-seg store-info``.

User errors give one ``error:`` line on stderr, a non-zero exit, no traceback and no output file.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pancreas_seg.cli import main
from pancreas_seg.console import EXIT_USER_ERROR
from pancreas_seg.data.phantom import PhantomConfig, nih_paths, write_phantom_set
from pancreas_seg.data.store import CaseStore
from pancreas_seg.io.nifti import read_nifti, reorient_like

REPO = Path(__file__).resolve().parents[1]
LIVER, PANCREAS = 5, 7  # TotalSegmentator labels in reference_seg.nii.gz
LIVER_MEAN_HU, PANCREAS_MEAN_HU, MEAN_HU_TOL = 89.0, 61.0, 5.0  # its README: about 89 and 61 HU
EXIT_SOME_CASES_FAILED = 1  # convert_nih.py: the other cases were converted
PROGRESS_BAR = re.compile(r"^[\w ]+: +\d+%\|[^\]]*\]")  # a tqdm bar: "convert:  50%|##   | 1/2 [00:00<...]"
SCRIPT_TIMEOUT_S = 120


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "data_prep" / f"{name}.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)


def message_lines(stderr: str) -> list[str]:
    """Lines of stderr a person reads: the last carriage-return segment of each, less any progress bar."""
    lines = [PROGRESS_BAR.sub("", line.split("\r")[-1]) for line in stderr.splitlines()]
    return [line for line in lines if line.strip()]


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


# --------------------------------------------------------------------------------
# data_prep scripts
# --------------------------------------------------------------------------------


def test_make_phantoms_refuses_zero_cases(tmp_path):
    result = run_script("make_phantoms", "--out", str(tmp_path / "nih"), "--cases", "0")
    assert result.returncode == EXIT_USER_ERROR
    assert_one_error_line(result, "--cases must be >= 1, got 0")
    assert not (tmp_path / "nih").exists()


def test_make_phantoms_writes_then_skips(tmp_path):
    args = ["--out", str(tmp_path / "nih"), "--cases", "2", "--matrix", "64", "--no-progress"]
    first = run_script("make_phantoms", *args)
    assert first.returncode == 0, first.stderr
    assert "CT phantoms in" in first.stdout and "2 written, 0 already there" in first.stdout
    for n in (1, 2):
        series, label = nih_paths(tmp_path / "nih", n)
        assert label.is_file() and len(list(series.glob("*.dcm"))) > 1
    second = run_script("make_phantoms", *args)
    assert second.returncode == 0, second.stderr
    assert "0 written, 2 already there" in second.stdout


def test_convert_nih_fails_the_broken_case_alone(tmp_path):
    """Case 1 has a truncated slice: it fails with one line, case 2 is converted, exit 1."""
    write_phantom_set(tmp_path / "nih", [1, 2], PhantomConfig(matrix=64, ct_slices=(48, 64)), progress=False)
    series, _ = nih_paths(tmp_path / "nih", 1)
    broken = sorted(series.glob("*.dcm"))[5]
    broken.write_bytes(broken.read_bytes()[:-100])

    result = run_script("convert_nih", "--data", str(tmp_path / "nih"), "-o", str(tmp_path / "store"))
    assert result.returncode == EXIT_SOME_CASES_FAILED
    assert_one_error_line(result, str(broken), "truncated")
    assert "converted 1, already there 0, failed 1" in result.stdout
    store = CaseStore(tmp_path / "store")
    assert store.case_ids == ["PANCREAS_0002"]
    assert sorted(p.name for p in (store.root / "cases").iterdir()) == ["PANCREAS_0002.npz"]


def test_convert_nih_quiet_prints_no_progress_bar(tmp_path):
    write_phantom_set(tmp_path / "nih", [1], PhantomConfig(matrix=64, ct_slices=(48, 64)), progress=False)
    loud = run_script("convert_nih", "--data", str(tmp_path / "nih"), "-o", str(tmp_path / "loud"))
    quiet = run_script("convert_nih", "--data", str(tmp_path / "nih"), "-o", str(tmp_path / "quiet"), "--quiet")
    assert loud.returncode == quiet.returncode == 0, quiet.stderr
    def bars(text: str) -> int:
        return sum(bool(PROGRESS_BAR.search(line.split("\r")[-1])) for line in text.splitlines())
    assert bars(loud.stderr) > 0 and bars(quiet.stderr) == 0
    assert "converted 1, already there 0, failed 0" in quiet.stdout


def test_convert_nih_on_a_folder_without_dicom(tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "notes.txt").write_text("nothing here yet")
    result = run_script("convert_nih", "--data", str(tmp_path / "download"), "-o", str(tmp_path / "store"))
    assert result.returncode == EXIT_USER_ERROR
    assert_one_error_line(result, str(tmp_path / "download"), "no PANCREAS_NNNN scan folders")
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------------
# pancreas-seg convert-dicom, store-info
# --------------------------------------------------------------------------------


def test_convert_dicom_real_series_lands_on_the_reference_grid(tmp_path, capsys, real_data):
    totalseg = real_data / "totalseg_ct_dicom"
    out = tmp_path / "scan.nii.gz"
    assert main(["convert-dicom", str(totalseg / "slices"), "-o", str(out)]) == 0
    assert f"{out}: 512x512x20 voxels" in capsys.readouterr().out
    scan = read_nifti(out)
    assert scan.array.dtype == np.int16 and scan.shape == (20, 512, 512)
    label = reorient_like(read_nifti(totalseg / "reference_seg.nii.gz", kind="label"), scan.affine, scan.shape)
    assert np.mean(scan.array[label.array == LIVER]) == pytest.approx(LIVER_MEAN_HU, abs=MEAN_HU_TOL)
    assert np.mean(scan.array[label.array == PANCREAS]) == pytest.approx(PANCREAS_MEAN_HU, abs=MEAN_HU_TOL)


def test_convert_dicom_folder_without_dicom(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "README").write_text("no images")
    out = tmp_path / "scan.nii.gz"
    assert main(["convert-dicom", str(tmp_path / "in"), "-o", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message_lines(err) == [f"error: {tmp_path / 'in'}: no DICOM image series found "
                                  "(single-frame CT/MR images with plane geometry)"]
    assert list(tmp_path.iterdir()) == [tmp_path / "in"]


def test_convert_dicom_refuses_an_output_that_is_not_nifti(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main(["convert-dicom", str(tmp_path / "in"), "-o", str(tmp_path / "x.txt")]) == EXIT_USER_ERROR
    assert message_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'x.txt'}: the NIfTI scan must be named *.nii or *.nii.gz; "
        "an output never replaces a file of another kind"]


def test_convert_dicom_checks_the_output_location_before_reading(tmp_path, capsys):
    """The input folder does not even exist: the unwritable output is reported first."""
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "out.nii.gz"
    assert main(["convert-dicom", str(tmp_path / "missing"), "-o", str(out)]) == EXIT_USER_ERROR
    assert message_lines(capsys.readouterr().err) == [
        f"error: {out}: cannot write here: {tmp_path / 'file.txt'} is a file, not a folder"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_write_leaves_no_temporary(tmp_path, signum):
    """A process killed mid-write (SIGTERM from a scheduler, Ctrl-C) removes its temporary file and
    says so in one line, exit code 128 + signal number."""
    script = (
        "import signal, sys, time\n"
        # Ctrl-C's default handler, also when the tests run as a background job (started with SIGINT ignored)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pancreas_seg.console import run_guarded\n"
        "from pancreas_seg.io.atomic import atomic_write\n"
        "def write(tmp):\n"
        "    tmp.write_bytes(bytes(10_000_000))\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        f"sys.exit(run_guarded(lambda: atomic_write({str(tmp_path / 'big.bin')!r}, write) and 0))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout.readline() == "writing\n"
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".big.bin.tmp-")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert process.returncode == 128 + signum
    assert message_lines(stderr) == [f"interrupted ({signal.Signals(signum).name})"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quiet", [True, False])
def test_train_builds_the_built_in_set_quietly_with_quiet(tmp_path, monkeypatch, quiet):
    """The first use of the built-in phantoms builds them: --quiet silences that progress bar too."""
    from pancreas_seg.data import builtin
    from pancreas_seg.errors import InputError

    calls = []

    def ensure_store(*args, **kwargs):  # stands in for the phantom build, stops before training
        calls.append(kwargs.get("progress", True))
        raise InputError(None, "stopped after ensure_store")

    monkeypatch.setattr(builtin, "ensure_store", ensure_store)
    args = ["train", "--preset", "testing", "-o", str(tmp_path / "run")] + (["--quiet"] if quiet else [])
    assert main(args) == EXIT_USER_ERROR
    assert calls == [not quiet]


def test_store_info_prints_the_case_count(tiny_store, capsys):
    assert main(["store-info", str(tiny_store.root)]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_store.root}: 4 CT cases" in out and "pancreas volume" in out


def test_store_info_on_a_folder_that_is_no_store(tmp_path, capsys):
    assert main(["store-info", str(tmp_path)]) == EXIT_USER_ERROR
    assert message_lines(capsys.readouterr().err) == [
        f"error: {tmp_path}: not a case store (no manifest.json); convert data first"]
