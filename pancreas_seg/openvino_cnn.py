"""The 2D CNN under OpenVINO on a CPU: the same network, converted once, in the CPU's own precision.

OpenVINO runs the converted any-size CNN (``LoadedModel.any_size_cnn("float32")``) with its
default inference precision for the CPU (bfloat16 where the CPU has AVX-512 BF16 or AMX, else
float32) unless a precision is asked for. The converted model is cached outside the run folder
(which may be read-only) under ``$PANCREAS_SEG_CACHE/openvino/``, named by a hash of the network
(config and weights) and the Keras and OpenVINO versions; it is written to a temporary folder and renamed into place.
Agreement with Keras float32 is measured by ``benchmarks/predict_speed.py`` and tested.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from pancreas_seg.data.builtin import cache_root
from pancreas_seg.errors import UsageError

OPENVINO_DIR = "openvino"  # under the cache root
DEVICE = "CPU"
PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}  # ours -> OpenVINO's INFERENCE_PRECISION_HINT


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _model_key(cnn: keras.Model) -> str:
    """Hash of the network (its layers' configs and weights) and of the converting versions: another
    model or another version converts anew."""
    import openvino

    digest = hashlib.sha256(f"keras {keras.__version__} openvino {openvino.__version__}".encode())
    digest.update(json.dumps(cnn.get_config(), sort_keys=True, default=str).encode())
    for weight in cnn.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def converted_model(cnn: keras.Model, cache: Path | None = None) -> Path:
    """The OpenVINO IR (``.xml`` + ``.bin``) of ``cnn`` (an any-size float32 CNN), converted on first
    use and cached."""
    folder = (cache or cache_root() / OPENVINO_DIR) / _model_key(cnn)
    xml = folder / "cnn.xml"
    if xml.is_file():
        return xml
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        cnn.export(str(tmp / "cnn.xml"), format="openvino", verbose=False)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process converted it meanwhile
            if not xml.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


def _our_precision(hint: str) -> str:
    """OpenVINO's precision (``"<Type: 'bfloat16'>"``, ``"bf16"``, ...) in our names."""
    for ours, theirs in PRECISION_HINTS.items():
        if ours in hint or theirs in hint:
            return ours
    return hint


class OpenVinoCnn:
    """A converted CNN compiled for the CPU; ``predict_on_batch`` like a Keras model (``[B, H, W, C]``
    float32 -> fused ``[B, H, W, 1]``), ``precision`` the one OpenVINO computes in."""

    def __init__(self, cnn: keras.Model, precision: str = "auto", cache: Path | None = None):
        if not openvino_installed():
            raise UsageError("the openvino runtime needs the openvino package: pip install openvino")
        import openvino

        core = openvino.Core()
        settings = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
        self._compiled = core.compile_model(core.read_model(converted_model(cnn, cache)), DEVICE, settings)
        self._request = self._compiled.create_infer_request()
        names = [name for output in self._compiled.outputs for name in output.get_names()]
        self._fused = self._compiled.output("fused" if "fused" in names else 0)
        self.precision = _our_precision(str(self._compiled.get_property("INFERENCE_PRECISION_HINT")))

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(result[self._fused], np.float32)
