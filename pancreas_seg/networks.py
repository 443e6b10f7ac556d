"""The trained networks as prediction runs them: loading a run folder (:func:`load_model`),
any-size copies of the 2D CNNs, bfloat16 arithmetic where the CPU has it, batch sizes from the
memory their feature maps need, and :class:`ModelRunner`, one model bound to those choices.

A loaded CNN may have a fixed input size (the CNN inside a CNN-RNN does); region-of-interest
prediction (:mod:`pancreas_seg.roi`) runs it on crops, so :func:`convolutional_copy` rebuilds it
with free H, W and the same weights. In ``"bfloat16"`` its layers compute in bfloat16 (Keras
``mixed_bfloat16``, weights kept in float32) except the sigmoid and fusion outputs.
"""
from __future__ import annotations

import json
import os
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np

from pancreas_seg.config import DEFAULT_PREDICT_BATCH_SIZE, ExperimentConfig
from pancreas_seg.data.preprocess import preprocessing_key, slice_stack
from pancreas_seg.errors import InputError, UsageError, one_line
from pancreas_seg.models.birnn import birnn_head, build_birnn, cnn_of
from pancreas_seg.models.build import default_jit_compile, on_gpu, transfer_weights
from pancreas_seg.models.pnet import FUSED, WeightedFusion
from pancreas_seg.run_folder import RunFolder, locate_model
from pancreas_seg.openvino_cnn import OpenVinoCnn, openvino_installed
from pancreas_seg.vocabulary import NOT_A_SCAN_MODEL, PANCREAS_CROP, PRECISIONS, RNN_MODEL, RUNTIMES

# /proc/cpuinfo flags for which "auto" picks bfloat16: AMX tiles only; with AVX-512 BF16 alone
# TensorFlow's bfloat16 kernels are slower than float32 (benchmarks/precision_speed.py,
# docs/PERFORMANCE.md).
BF16_CPU_FLAGS = ("amx_bf16",)
CPUINFO = Path("/proc/cpuinfo")
# "auto" keeps float32 when each network pixel spans more than this many scan pixels: up-sampling
# the map spreads every near-threshold bfloat16 flip over several voxels (a cpu-preset crop model,
# 2.1 mm pixels on a 0.7 mm scan: mask DSC 0.989 against float32), and such small grids are cheap.
BF16_MAX_UPSAMPLING = 1.25
CNN_MEMORY_BUDGET_BYTES = 3 * 2 ** 29  # 1.5 GiB for the CNN's feature maps of one batch
# widest feature maps alive at once per slice (skip connections, decoders, TensorFlow's buffers):
# paper PNet-MSA at 512 px, batch 4, float32 peaked at 3.4 GiB resident, ~0.7 GiB a slice = 6 maps of 128 channels
LIVE_FEATURE_MAPS = 6
BIRNN_WINDOW_BATCH = 8  # BiRNN windows per call
FLOAT32_BYTES = 4
Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open, network-grid px


def cpu_has_bfloat16(cpuinfo: Path | None = None) -> bool:
    """Whether the CPU flags (``cpuinfo``, default Linux's ``/proc/cpuinfo``) list fast bfloat16
    arithmetic (:data:`BF16_CPU_FLAGS`)."""
    try:
        flags = (cpuinfo or CPUINFO).read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_runtime(runtime: str) -> str:
    """``"auto"`` -> ``"openvino"`` under TensorFlow on a CPU when the openvino package is installed
    (it converts from TensorFlow), else ``"keras"``; the others as given.

    Raises:
        UsageError: ``"openvino"`` without the package.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "openvino" and not openvino_installed():
        raise UsageError("--runtime openvino needs the openvino package (pip install openvino)")
    if runtime != "auto":
        return runtime
    usable = keras.backend.backend() == "tensorflow" and not on_gpu() and openvino_installed()
    return "openvino" if usable else "keras"


def resolve_precision(precision: str, runtime: str = "keras", upsampling: float = 1.0) -> str:
    """``"auto"`` -> ``"float32"`` when the network's map is up-sampled to the scan by more than
    :data:`BF16_MAX_UPSAMPLING` (``upsampling``: network pixel / scan pixel); else under Keras
    ``"bfloat16"`` with TensorFlow on a CPU with AMX (:data:`BF16_CPU_FLAGS`), otherwise
    ``"float32"``, and under OpenVINO ``"auto"`` (OpenVINO picks its CPU default); the others as
    given. Agreement with float32 is measured by ``benchmarks/predict_speed.py``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if upsampling > BF16_MAX_UPSAMPLING:
        return "float32"
    if runtime == "openvino":
        return precision
    on_cpu = keras.backend.backend() == "tensorflow" and not on_gpu()
    return "bfloat16" if on_cpu and cpu_has_bfloat16() else "float32"


def _keeps_float32(layer: keras.layers.Layer) -> bool:
    """Output layers (sigmoids, Eq. 3 fusion) stay float32 so probabilities keep their resolution."""
    return isinstance(layer, (keras.layers.Activation, WeightedFusion, keras.layers.Identity))


def convolutional_copy(cnn: keras.Model, precision: str = "float32") -> keras.Model:
    """``cnn`` rebuilt with input ``[B, None, None, C]`` (same weights); in ``"bfloat16"`` its layers
    compute in bfloat16 (Keras ``mixed_bfloat16``: weights stay float32) except the output layers."""
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if precision == "bfloat16" and not _keeps_float32(layer):
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(cnn, input_tensors=keras.Input((None, None, cnn.input_shape[-1])),
                                    clone_function=clone)
    copy.set_weights(cnn.get_weights())
    copy.jit_compile = default_jit_compile()
    return copy


def widest_feature(cnn: keras.Model) -> int:
    """The most channels of any layer output of ``cnn`` (sizes the memory of a batch)."""
    return max(int(tensor.shape[-1]) for layer in cnn.layers for tensor in keras.tree.flatten(layer.output))


def memory_batch_size(cnn: keras.Model, height: int, width: int, limit: int, gpu: bool | None = None) -> int:
    """Stacks per CNN call whose feature maps fit ``CNN_MEMORY_BUDGET_BYTES`` of host memory, at most
    ``limit``, at least 1. On a GPU (``gpu``; default: whether the backend computes on one) the maps
    live in the GPU's memory, not the host's: ``limit``."""
    if gpu if gpu is not None else on_gpu():
        return max(1, limit)
    per_slice = height * width * widest_feature(cnn) * FLOAT32_BYTES * LIVE_FEATURE_MAPS
    return max(1, min(limit, CNN_MEMORY_BUDGET_BYTES // per_slice))


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _fused(output) -> np.ndarray:
    """The prediction of a model output (dict with ``"fused"`` or a tensor) as numpy."""
    return np.asarray(output[FUSED] if isinstance(output, dict) else output, np.float32)


def cnn_slices(cnn: keras.Model, volume: np.ndarray, indices: Sequence[int], box: Box, batch_size: int, *,
               context: int) -> np.ndarray:
    """The 2D CNN on slices ``indices`` of ``volume`` ``[Z, S, S]``, cropped to ``box`` ``(y0, y1, x0, x1)``
    -> ``[len(indices), y1-y0, x1-x0]`` float32 probabilities.

    Slice ``k`` sees the stack of slices ``k-1, k, k+1`` of the whole volume (edges replicated,
    Sec. III-A); only ``batch_size`` stacks are in memory at once and only the ``"fused"`` channel is kept.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = list(indices)
    y0, y1, x0, x1 = box
    out = np.empty((len(indices), y1 - y0, x1 - x0), np.float32)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        # the last batch is padded with repeats of its last slice: one traced shape per crop
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        batch = np.stack([slice_stack(volume, k, context)[y0:y1, x0:x1] for k in padded]).astype(np.float32)
        out[start:start + len(chunk)] = _fused(cnn.predict_on_batch(batch))[:len(chunk), ..., 0]
    return out


def cnn_probabilities(cnn: keras.Model, volume: np.ndarray, batch_size: int = DEFAULT_PREDICT_BATCH_SIZE, *,
                      context: int) -> np.ndarray:
    """The 2D CNN over every slice: ``[Z, S, S]`` float32 in [0, 1] -> ``[Z, S, S]`` float32 probabilities
    (:func:`cnn_slices` on the whole grid)."""
    _, height, width = volume.shape
    return cnn_slices(cnn, volume, range(volume.shape[0]), (0, height, 0, width), batch_size, context=context)


def birnn_windows(slices: int, length: int) -> list[int]:
    """First slices of the BiRNN's windows of ``length`` over ``slices`` slices: every
    ``ceil(length / 2)`` slices and one ending at the last slice, so each slice is in one to three
    windows (one window of all slices when there are at most ``length``)."""
    if slices <= length:
        return [0]
    starts = list(range(0, slices - length + 1, -(-length // 2)))
    return starts if starts[-1] == slices - length else starts + [slices - length]


def birnn_probabilities(birnn: keras.Model, probability: np.ndarray, length: int) -> np.ndarray:
    """The BiRNN over a slice sequence ``[Z, S, S]`` -> ``[Z, S, S]`` float32 (Sec. III-B), run on
    overlapping windows of the ``length`` slices it was trained on, averaged where they overlap.

    A ConvLSTM trained on short runs from a zero state is not run over a whole scan at once: its
    states drift over a hundred slices beyond anything it learned (docs/REPRODUCTION.md, Table III).
    """
    starts = birnn_windows(probability.shape[0], length)
    span = min(length, probability.shape[0])
    total = np.zeros(probability.shape, np.float32)
    counts = np.zeros(probability.shape[0], np.float32)
    for first in range(0, len(starts), BIRNN_WINDOW_BATCH):
        chunk = starts[first:first + BIRNN_WINDOW_BATCH]
        padded = chunk + [chunk[-1]] * (min(BIRNN_WINDOW_BATCH, len(starts)) - len(chunk))  # one traced shape
        batch = np.stack([probability[s:s + span] for s in padded])[..., np.newaxis]
        out = _fused(birnn.predict_on_batch(batch))[:len(chunk), ..., 0]
        for s, window in zip(chunk, out):
            total[s:s + span] += window
            counts[s:s + span] += 1
    return total / counts[:, np.newaxis, np.newaxis]


@dataclass
class LoadedModel:
    """A trained model ready for inference.

    Attributes:
        path: the ``.keras`` file.
        config: the run's configuration (``config.json``).
        config_hash: the run's config hash (as stored in ``config.json``).
        cnn: the 2D CNN, ``[B, S, S, context_slices] float32`` -> ``{"fused": [B, S, S, 1], ...}``
            (for ``cnn_rnn`` its inner CNN).
        birnn: ``[1, Z, S, S, 1]`` -> ``[1, Z, S, S, 1]`` probabilities, or ``None``.
        localiser: the run's coarse stage (``localiser/`` in its run folder), or ``None``.
        margin: for a localiser, its ``margin.json`` (:class:`pancreas_seg.localiser.Margin`).
    """

    path: Path
    config: ExperimentConfig
    config_hash: str
    cnn: keras.Model
    birnn: keras.Model | None = None
    localiser: "LoadedModel | None" = None
    margin: dict | None = None
    _networks: dict = field(default_factory=dict, repr=False)

    def describe(self) -> dict:
        """JSON-ready identity of the model for reports (with its localiser's, when it has one)."""
        described = {"path": str(self.path), "config_hash": self.config_hash, "model": self.config.model.name,
                     "modality": self.config.data.modality}
        if self.localiser is not None:
            described["localiser"] = {**self.localiser.describe(), "margin_mm": [
                self.localiser.margin["through_plane_mm"], self.localiser.margin["inplane_mm"]]}
        return described

    def any_size_cnn(self, precision: str) -> keras.Model:
        """The CNN for any H, W (divisible by its alignment) computing in ``precision``
        (``"float32"``/``"bfloat16"``); built once, weights shared by copy."""
        if ("cnn", precision) not in self._networks:
            self._networks["cnn", precision] = convolutional_copy(self.cnn, precision)
        return self._networks["cnn", precision]

    def openvino_cnn(self, precision: str) -> OpenVinoCnn:
        """The any-size CNN converted to OpenVINO and compiled for the CPU in ``precision`` (``"auto"``:
        OpenVINO's default there); converted once per model file, compiled once per precision."""
        if ("openvino", precision) not in self._networks:
            self._networks["openvino", precision] = OpenVinoCnn(self.any_size_cnn("float32"), precision)
        return self._networks["openvino", precision]

    def birnn_at(self, height: int, width: int) -> keras.Model:
        """The BiRNN for ``[1, T, height, width, 1]`` sequences (Keras's ConvLSTM2D has static H, W)."""
        if tuple(self.birnn.input_shape[2:4]) == (height, width):
            return self.birnn
        if ("birnn", height, width) not in self._networks:
            inputs = keras.Input((None, height, width, 1), name="cnn_probabilities")
            birnn = keras.Model(inputs, birnn_head(inputs, self.config.model), name="birnn")
            transfer_weights(self.birnn, birnn)
            birnn.jit_compile = default_jit_compile()
            self._networks["birnn", height, width] = birnn
        return self._networks["birnn", height, width]


def _birnn_part(model: keras.Model, config: ExperimentConfig) -> keras.Model:
    """The BiRNN of a CNN-RNN model as its own model (weights copied by layer name)."""
    birnn = build_birnn(config.model, config.data.input_size)
    expected = sum(1 for layer in birnn.layers if layer.weights)
    copied = transfer_weights(model, birnn)
    if copied != expected:
        raise RuntimeError(f"copied {copied} of {expected} BiRNN layers from {model.name}")
    return birnn


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a run folder (``config.json`` + ``model.keras``) or a ``.keras`` file (``config.json`` beside it).

    The model is loaded with ``safe_mode=True`` and not compiled.

    Raises:
        InputError: missing path or config, unreadable config, a damaged (truncated) model file or
            one that does not load, a model that does not predict from scans (the BiRNN alone).
    """
    run, model_path = locate_model(path)
    config, run_hash = run.read_config()
    if config.model.name == NOT_A_SCAN_MODEL:
        raise InputError(model_path, "this model is a BiRNN alone (it takes CNN probabilities, not scans)")
    if model_path.is_file() and not zipfile.is_zipfile(model_path):
        raise InputError(model_path, "damaged model file: not a complete .keras archive (truncated or overwritten?); "
                                     "copy it again or retrain")
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise InputError(model_path, f"cannot load the model ({type(exc).__name__}: {one_line(exc)})") from None
    if config.model.name == RNN_MODEL:
        cnn, birnn = cnn_of(model), _birnn_part(model, config)
    else:
        cnn, birnn = model, None
    for part in (cnn, birnn):
        if part is not None:
            part.jit_compile = default_jit_compile()
    channels = cnn.input_shape[-1]
    if channels != config.data.context_slices:
        raise InputError(model_path, f"model takes {channels} input channels but its config stacks "
                                     f"{config.data.context_slices} slices")
    return LoadedModel(model_path, config, run_hash, cnn, birnn, localiser=_localiser_of(run, config))


def _localiser_of(run: RunFolder, config: ExperimentConfig) -> LoadedModel | None:
    """The localiser of a run folder (``localiser/`` with a model and its margin), or ``None``; a
    localiser folder without its margin (training stopped before the calibration) is ignored.
    It must prepare scans as the run's model does, but for the side (``input_size``) and, for a
    model trained on crops around the pancreas, the whole-slice crop it finds them on."""
    folder = RunFolder(run.localiser_dir)
    if not (folder.model_path.is_file() and folder.margin_path.is_file()):
        return None
    localiser = load_model(folder.root)
    try:
        localiser.margin = json.loads(folder.margin_path.read_text())
        float(localiser.margin["through_plane_mm"]), float(localiser.margin["inplane_mm"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(folder.margin_path, f"not a localiser margin ({type(exc).__name__}: {exc})") from None
    ours, its = preprocessing_key(config.data), preprocessing_key(localiser.config.data)
    own = {"input_size"} | ({"crop", "fov_mm"} if config.data.crop == PANCREAS_CROP else set())
    differing = [name for name in ours if name not in own and ours[name] != its[name]]
    if differing:
        raise InputError(folder.root, f"localiser prepares scans unlike the run's model ({', '.join(differing)} "
                                      "differ); train it again with train-localiser")
    return localiser


def load_models(paths: Sequence[str | os.PathLike]) -> list[LoadedModel]:
    """Load one or several models to average; all must share the preprocessing.

    Raises:
        InputError: a model does not load, or two models prepare scans differently
            (:func:`~pancreas_seg.data.preprocess.preprocessing_key`).
    """
    if not paths:
        raise ValueError("give at least one model")
    models = [load_model(path) for path in paths]
    reference = preprocessing_key(models[0].config.data)
    for model in models[1:]:
        key = preprocessing_key(model.config.data)
        differing = [name for name in key if key[name] != reference[name]]
        if differing:
            shown = ", ".join(f"{name} {key[name]!r} vs {reference[name]!r}" for name in differing)
            raise InputError(model.path, f"preprocessing differs from {models[0].path}: {shown}; "
                                         "only models trained with the same data config can be averaged")
    return models


@dataclass
class ModelRunner:
    """One loaded model's networks in one arithmetic, at most ``batch_size`` stacks per CNN call,
    their time added to ``timings`` (``"cnn"``, ``"birnn"``): what dense and region-of-interest
    prediction call, so that neither needs the model or the options it came with."""

    model: LoadedModel
    precision: str  # :func:`resolve_precision`: "float32" or "bfloat16" (openvino: also "auto", its own choice)
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE
    timings: dict[str, float] = field(default_factory=dict)

    runtime: str = "keras"  # resolved (:func:`resolve_runtime`): "keras" or "openvino"

    @property
    def cnn(self) -> keras.Model:
        """The any-size Keras CNN: in this runner's precision under Keras, float32 for OpenVINO
        (which converts it)."""
        return self.model.any_size_cnn(self.precision if self.runtime == "keras" else "float32")

    @property
    def engine(self) -> "keras.Model | OpenVinoCnn":
        """What computes the CNN: the Keras model or its OpenVINO compilation."""
        return self.cnn if self.runtime == "keras" else self.model.openvino_cnn(self.precision)

    @property
    def computed_precision(self) -> str:
        """The arithmetic the CNN runs in (OpenVINO's choice for ``"auto"``)."""
        return self.precision if self.runtime == "keras" else self.engine.precision

    @property
    def has_birnn(self) -> bool:
        return self.model.birnn is not None

    def cnn_slices(self, volume: np.ndarray, indices: Sequence[int], box: Box) -> np.ndarray:
        """:func:`cnn_slices` with this model's context and a batch that fits memory at the crop's size."""
        y0, y1, x0, x1 = box
        batch = memory_batch_size(self.cnn, y1 - y0, x1 - x0, self.batch_size)
        with timed(self.timings, "cnn"):
            return cnn_slices(self.engine, volume, indices, box, batch, context=self.model.config.data.context_slices)

    def birnn(self, probability: np.ndarray) -> np.ndarray:
        """The BiRNN over a run of slices ``[n, h, w]`` -> ``[n, h, w]`` float32 (any h, w)."""
        with timed(self.timings, "birnn"):
            return birnn_probabilities(self.model.birnn_at(*probability.shape[1:]), probability,
                                       self.model.config.data.sequence_length)
