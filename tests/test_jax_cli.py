"""``pancreas-seg train`` and ``predict`` with JAX, Keras and tensorpack alone: TensorFlow is made
unimportable in the child process (the backend is fixed per process, so it runs in a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pancreas_seg.io.nifti import write_nifti
from tests.test_cli_predict_evaluate import ct_scan

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
WITHOUT_TENSORFLOW = ("import sys; sys.modules['tensorflow'] = None; from pancreas_seg.cli import main; "
                      "sys.exit(main(sys.argv[1:]))")  # `import tensorflow` raises ImportError in the child
TINY_RUN = ["train.stagewise=false", "train.epochs_finetune=0", "train.steps_per_epoch=1", "data.input_size=16",
            "model.units=2", "model.channels=4", "model.convs_per_unit=1"]


def run_without_tensorflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=TIMEOUT_S)


@pytest.mark.slow
def test_train_and_predict_run_on_jax_without_tensorflow(tiny_store, tmp_path):
    pytest.importorskip("jax")
    trained = run_without_tensorflow("train", "--preset", "testing", "--data", str(tiny_store.root), "--quiet",
                                     "-o", str(tmp_path / "run"), "--set", *TINY_RUN, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert "INFO pancreas_seg.train: backend jax on 1 CPU" in trained.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backend"] == "jax"
    write_nifti(ct_scan(), tmp_path / "ct.nii.gz")
    predicted = run_without_tensorflow("predict", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "pred.nii.gz"),
                                       "--model", str(tmp_path / "run"), "--quiet", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    assert "INFO pancreas_seg.cli: backend jax on 1 CPU" in predicted.stderr
    assert json.loads((tmp_path / "pred.json").read_text())["pancreas_seg_version"]
