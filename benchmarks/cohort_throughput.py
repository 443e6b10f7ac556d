"""Cohort throughput of ``pancreas-seg predict``: one job against a job array of parts run at once
on this machine (run by hand; prints scans per minute).

Writes ``--scans`` phantom CT scans (reduced matrix and slice count) as NIfTI, exports an
untrained network of the chosen preset as a run folder, then times, wall clock from the first
start to the last exit, ``predict`` of the whole batch by one process and by ``--parts``
processes at once (``--num-parts N --part-id K``), each a fresh ``pancreas-seg`` process as a
job of an array would be (start-up and model loading included).

    python benchmarks/cohort_throughput.py                      # 8 scans at 128 px, 1 vs 2 parts
    python benchmarks/cohort_throughput.py --scans 16 --parts 4 --matrix 256
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pancreas_seg.config import preset
from pancreas_seg.data.phantom import PhantomConfig, generate_case
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.models.build import build_model
from pancreas_seg.train import export_run

SECONDS_PER_MINUTE = 60.0
CLI = [sys.executable, "-m", "pancreas_seg.cli"]


def write_scans(folder: Path, count: int, matrix: int, slices: tuple[int, int]) -> None:
    """``count`` phantom CT scans, ``case_NN.nii.gz``, ``matrix`` px square, ``slices`` (min, max) slices."""
    config = PhantomConfig(matrix=matrix, ct_slices=slices)
    for number in range(1, count + 1):
        scan, _ = generate_case(number, "CT", config=config)
        write_nifti(scan, folder / f"case_{number:02d}.nii.gz")


def run_parts(scans: Path, out: Path, run: Path, parts: int) -> float:
    """Wall-clock seconds of ``parts`` predict processes started together, each on its share."""
    start = time.perf_counter()
    jobs = [subprocess.Popen(CLI + ["predict", str(scans), "-o", str(out), "--model", str(run), "--quiet",
                                    "--num-parts", str(parts), "--part-id", str(part)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for part in range(parts)]
    for job in jobs:
        _, err = job.communicate()
        if job.returncode != 0:
            raise SystemExit(f"predict part failed (exit {job.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=8, help="phantom CT scans in the cohort (default 8)")
    parser.add_argument("--matrix", type=int, default=128, help="in-plane size of the scans, px (default 128)")
    parser.add_argument("--slices", type=int, nargs=2, default=(40, 60), metavar=("MIN", "MAX"),
                        help="slices per scan (default 40 60)")
    parser.add_argument("--parts", type=int, default=2, help="jobs of the array run at once (default 2)")
    parser.add_argument("--preset", default="quick", help="config of the untrained network (default quick)")
    args = parser.parse_args()
    config = preset(args.preset)
    with tempfile.TemporaryDirectory(prefix="cohort_throughput_") as tmp:
        root = Path(tmp)
        write_scans(root / "scans", args.scans, args.matrix, tuple(args.slices))
        run = export_run(build_model(config.model, config.data.input_size), config, root / "run").root
        print(f"{args.scans} phantom CT scans, {args.matrix} px, {args.slices[0]}-{args.slices[1]} slices; "
              f"untrained {config.model.name} ({args.preset} preset, {config.data.input_size} px); "
              f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
        results = {}
        for parts in sorted({1, args.parts}):
            seconds = run_parts(root / "scans", root / f"out_{parts}", run, parts)
            done = len(list((root / f"out_{parts}").glob("*.nii.gz")))
            if done != args.scans:
                raise SystemExit(f"{parts} parts wrote {done} of {args.scans} masks")
            results[parts] = args.scans / seconds * SECONDS_PER_MINUTE
            print(f"{parts} part(s) at once: {seconds:6.1f} s wall, {results[parts]:6.1f} scans/min")
        if args.parts != 1:
            print(f"speed-up of {args.parts} parts over 1: {results[args.parts] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
