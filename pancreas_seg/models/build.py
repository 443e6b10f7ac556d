"""Model registry (paper Table II, Sec. III, IV-D), weight transfer for stage-wise growth, counting.

``build_model(config, input_size)`` dispatches on ``config.name`` through :data:`MODELS`.
``input_size=None`` builds a fully convolutional 2D model; H and W must then be divisible by
``2 ** (units - 1)`` for PNet-MSA / PNet-64 (by 16 for HNN and UNet) at call time. The BiRNN and
CNN-RNN need a fixed ``input_size`` (Keras's ConvLSTM2D has static H, W); to run them at another
size, build again at that size and :func:`transfer_weights` (weights do not depend on H, W).

Output names (:func:`output_names`): the 2D models return a dict ``{"fused": Y-hat, "side_1": U_1, ...}``
(UNet only ``"fused"``); BiRNN and CNN-RNN return one tensor whose output name is ``"fused"``.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Callable

import keras
import numpy as np

from pancreas_seg.config import ModelConfig
from pancreas_seg.errors import InputError
from pancreas_seg.models.baselines import build_hnn, build_unet
from pancreas_seg.models.birnn import build_birnn, build_cnn_rnn
from pancreas_seg.models.pnet import FUSED, WeightedFusion, build_pnet64, build_pnet_msa

log = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., keras.Model]] = {
    "pnet_msa": build_pnet_msa,
    "pnet64": build_pnet64,
    "hnn": build_hnn,
    "unet": build_unet,
    "cnn_rnn": build_cnn_rnn,
    "birnn": build_birnn,
}
WEIGHTS_SUFFIX = ".weights.h5"


def build_model(config: ModelConfig, input_size: int | None = None,
                weights_path: str | os.PathLike | None = None) -> keras.Model:
    """Build the model named ``config.name``; optionally load a user's ``.weights.h5`` file.

    Unknown names raise ``ValueError`` listing :data:`MODELS`. A missing or incompatible weights
    file raises :class:`~pancreas_seg.errors.InputError` (meant for pretrained HNN / UNet snapshots,
    Sec. IV-A, but accepted for every model).
    """
    try:
        builder = MODELS[config.name]
    except KeyError:
        raise ValueError(f"unknown model {config.name!r}; choose one of {sorted(MODELS)}") from None
    if config.name == "cnn_rnn":
        model = builder(config, input_size=input_size)
    else:
        model = builder(config, input_size)
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def load_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.load_weights(path)``; a missing, misnamed or incompatible file raises ``InputError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "weights file not found")
    if not path.endswith(WEIGHTS_SUFFIX):
        raise InputError(path, f"expected a Keras weights file ending in {WEIGHTS_SUFFIX}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as err:  # h5py / Keras raise assorted types for a wrong file
            raise InputError(path, f"weights do not fit model {model.name!r}: {err}") from None
    # Keras only warns when parts of the file have no matching layer and keeps fresh weights there.
    skipped = [str(w.message) for w in caught if "saving" in w.filename]
    if skipped:
        raise InputError(path, f"weights do not fit model {model.name!r}: {skipped[0]}")


def output_names(model: keras.Model) -> list[str]:
    """Output names, ``"fused"`` first then ``"side_1", "side_2", ...`` in unit order."""
    names = list(model.output_names)
    sides = sorted((n for n in names if n != FUSED), key=lambda n: (len(n), n))
    return ([FUSED] if FUSED in names else []) + sides


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of scalars in the model's weights: trainable + non-trainable (BatchNorm moving mean and
    variance included) by default, the convention of Keras's ``count_params``; only the trainable
    ones with ``trainable_only``."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    flat = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            flat.extend(_flat_layers(layer))
        else:
            flat.append(layer)
    return flat


def _by_name(model: keras.Model) -> dict[str, keras.layers.Layer]:
    found: dict[str, list] = {}
    for layer in _flat_layers(model):
        if layer.weights:
            found.setdefault(layer.name, []).append(layer)
    ambiguous = sorted(name for name, hits in found.items() if len(hits) > 1)
    if ambiguous:
        log.warning("layers %s occur more than once in %s; not transferred", ambiguous, model.name)
    return {name: hits[0] for name, hits in found.items() if len(hits) == 1}


def transfer_weights(src: keras.Model, dst: keras.Model) -> int:
    """Copy the weights of every same-named layer (nested models flattened) whose weights have the
    same shapes; returns the number of layers copied.

    Stage-wise growth (Sec. III-A): a k-unit PNet-MSA into a (k+1)-unit one copies every layer of
    the k-unit model. The Eq. 3 fusion (:class:`WeightedFusion`, K logits) is copied partially: the
    first min(K_src, K_dst) logits, the rest keep their initial 0; it counts as copied.
    """
    source = _by_name(src)
    copied = 0
    for name, layer in _by_name(dst).items():
        other = source.get(name)
        if other is None:
            continue
        theirs, ours = other.get_weights(), layer.get_weights()
        if [w.shape for w in theirs] == [w.shape for w in ours]:
            layer.set_weights(theirs)
            copied += 1
        elif isinstance(layer, WeightedFusion) and isinstance(other, WeightedFusion):
            n = min(theirs[0].shape[0], ours[0].shape[0])
            ours[0][:n] = theirs[0][:n]
            layer.set_weights(ours)
            copied += 1
        else:
            log.debug("layer %s: weight shapes differ, not transferred", name)
    return copied


def default_jit_compile() -> bool | str:
    """XLA setting for ``compile``/prediction: Keras's ``"auto"`` except under TensorFlow on a CPU.

    There XLA halves both training and prediction speed of these networks (measured with
    ``benchmarks/train_speed.py``: PNet-MSA 16 ch at 128 px trains at 13 vs 29 slices/s on 2 cores);
    on accelerators and under JAX, where compilation is the norm, ``"auto"`` stays.
    """
    if keras.backend.backend() == "tensorflow" and not on_gpu():
        return False
    return "auto"


def on_gpu() -> bool:
    """Whether the backend computes on a GPU (its default devices; a backend without one says CPU
    rather than raising, as asking Keras for ``"gpu"`` devices does under JAX)."""
    return any(device.lower().startswith("gpu") for device in keras.distribution.list_devices())
