"""Peak memory of reading a large int16 CT NIfTI stored with ``scl_inter -1024`` (run by hand;
prints MB above the returned array, traced with tracemalloc).

    python benchmarks/nifti_memory.py [--shape 512 512 600] [--suffix .nii.gz]

Measured on a 2-core CPU container, 2026-12-04, 512 x 512 x 600, .nii.gz: read_nifti peaks
317 MB above its 315 MB int16 array (the stored array); nibabel's scaled float64 volume alone peaks
1258 MB above it.
"""
from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from pancreas_seg.io.nifti import read_nifti

CT_INTERCEPT = -1024.0  # the usual CT storage: HU = stored value - 1024
STORED_MAX = 3000  # stored values 0..STORED_MAX (HU -1024..1976)
MB = 1e6
SEED = 0


def write_ct(path: Path, shape: tuple[int, int, int]) -> int:
    """A random int16 ``[X, Y, Z]`` volume with the CT intercept; returns the array's bytes."""
    stored = np.random.default_rng(SEED).integers(0, STORED_MAX, size=shape, dtype=np.int16)
    img = nib.Nifti1Image(stored, np.diag([0.8, 0.8, 1.0, 1.0]))
    img.header.set_slope_inter(1.0, CT_INTERCEPT)
    nib.save(img, path)
    return stored.nbytes


def peak_above(read: Callable[[], np.ndarray], array_bytes: int) -> float:
    """Peak traced memory of ``read()`` minus ``array_bytes``, MB."""
    tracemalloc.start()
    result = read()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return (peak - array_bytes) / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 600), help="X Y Z voxels")
    parser.add_argument("--suffix", default=".nii.gz", choices=(".nii", ".nii.gz"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"ct{args.suffix}"
        array_bytes = write_ct(path, tuple(args.shape))
        ours = peak_above(lambda: read_nifti(path).array, array_bytes)
        floats = peak_above(lambda: np.asanyarray(nib.load(path).dataobj), array_bytes)
    print(f"shape {tuple(args.shape)} int16 ({array_bytes / MB:.0f} MB), {args.suffix}")
    print(f"read_nifti: peak {ours:.0f} MB above the array")
    print(f"nibabel scaled float64: peak {floats:.0f} MB above the int16 array")


if __name__ == "__main__":
    main()
