"""The paper's table rows: one experiment config per (modality, model, loss) and the rows' names.

Table I varies the loss on PNet-MSA, Table II the CNN, Table III adds the BiRNN (``cnn_rnn``);
every other training choice comes from the preset (``quick``, ``paper``, ``testing``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pancreas_seg.config import ExperimentConfig, apply_overrides, preset
from pancreas_seg.vocabulary import BASE_CNN, MODALITY_BY_FLAG, RNN_MODEL, LossName, ModelName

MODEL_LABELS: dict[ModelName, str] = {"hnn": "HNN", "unet": "UNet", "pnet64": "PNet-64", BASE_CNN: "PNet-MSA",
                                      RNN_MODEL: "PNet-MSA + BiRNN"}  # the paper's row names (Tables II–IV)
LOSS_LABELS: dict[LossName, str] = {"ce": "CE", "cbce": "CBCE", "jac": "JAC"}  # Table I


def modality_name(modality: str) -> str:
    """``"ct"``/``"CT"`` → ``"CT"``, ``"mri"`` → ``"MRI"``; anything else raises ``ValueError``."""
    try:
        return MODALITY_BY_FLAG[modality.lower()]
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}; choose one of {sorted(MODALITY_BY_FLAG)}") from None


def experiment_config(preset_name: str, modality: str, model: str = BASE_CNN, loss: str = "jac",
                      builtin_set: str | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config of one table row: a preset with the row's modality, model and loss.

    ``builtin_set`` (``"standard"`` | ``"tiny"``) picks the phantom set used when no store is
    given; ``None`` keeps the preset's. ``overrides`` are ``key=value`` strings applied last.
    """
    config = preset(preset_name)
    items = [f"data.modality={modality_name(modality)}", f"model.name={model}", f"train.loss={loss}"]
    if builtin_set is not None:
        items.append(f"data.builtin_set={builtin_set}")
    config = apply_overrides(config, items + list(overrides))
    if config.model.name not in MODEL_LABELS:
        raise ValueError(f"unknown model {config.model.name!r}; choose one of {sorted(MODEL_LABELS)}")
    if config.train.loss not in LOSS_LABELS:
        raise ValueError(f"unknown loss {config.train.loss!r}; choose one of {sorted(LOSS_LABELS)}")
    return config


def data_label(preset_name: str, modalities: Sequence[str], data: str | os.PathLike | None = None) -> str:
    """Header of the ``ours`` column, e.g. ``"ours (built-in CT phantoms, quick preset)"``."""
    names = "+".join(modality_name(m) for m in modalities)
    source = f"built-in {names} phantoms" if data is None else f"{names} store {Path(data).name}"
    return f"ours ({source}, {preset_name} preset)"
