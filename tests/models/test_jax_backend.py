"""The BiRNN and loss tests again under KERAS_BACKEND=jax (the GPU machines only have JAX).

Keras fixes its backend per process, so the modules run in a child pytest.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]
MODULES = [TESTS / "models" / "test_birnn.py", TESTS / "test_losses.py"]
TIMEOUT_S = 600


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (the test extra installs it)")
def test_birnn_and_losses_under_jax():
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, MODULES)],
                            env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
