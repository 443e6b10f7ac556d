"""Configuration: small frozen dataclasses with defaults taken from the paper.

Every field says its unit and where it comes from. Variants are named presets
(:data:`PRESETS`), overridable from the command line with ``key=value`` strings
(:func:`apply_overrides`). A run writes its full config to ``config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    """What the networks see (paper Sec. III-A, IV-A)."""

    modality: str = "CT"  # "CT" (NIH Pancreas-CT) or "MRI" (the authors' T1 set)
    builtin_set: str = "standard"  # phantom set used when no --data is given: "standard" | "tiny"
    hu_window: tuple[float, float] = (-160.0, 240.0)  # HU, CT window scaled to [0, 1]; paper silent, abdominal soft-tissue window of Roth et al.
    mri_percentiles: tuple[float, float] = (0.5, 99.5)  # %, MRI per-volume intensity normalisation to [0, 1]
    crop: str = "none"  # "none" | "body" (bounding box of the body outline) | "fov" (centred square of fov_mm)
    fov_mm: float = 350.0  # mm, side of the centred square kept when crop == "fov"
    input_size: int = 512  # px, square training resolution; NIH slices are 512x512 (Sec. IV-A)
    context_slices: int = 3  # slices stacked as channels: tau-1, tau, tau+1 (Sec. III-A)
    sequence_length: int = 5  # slices per ordered run for the recurrent stage (Sec. III-B, Fig. 4 shows 5)
    focus_margin: int = 5  # slices, pancreas slice range widened by this for focused sampling
    focus_fraction: float = 0.8  # share of samples drawn near the pancreas; 1.0 = only there, 0.0 = uniform
    augment: bool = True  # random flips, small shifts and intensity jitter on training stacks
    folds: int = 4  # patient-level cross-validation folds (Sec. IV-A)
    validation_fraction: float = 0.15  # share of each training fold kept for model selection (Sec. IV-A)
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (paper Sec. III-A, III-B, IV-D)."""

    name: str = "pnet_msa"  # registry key: pnet_msa | pnet64 | hnn | unet | cnn_rnn
    units: int = 5  # K, stacked unit modules (Sec. III-A: K = 5 works best)
    channels: int = 64  # conv/deconv output channels (Sec. IV-A)
    convs_per_unit: int = 4  # conv+BN+ReLU layers per forward branch (Sec. III-A)
    input_slices: int = 3  # channels of the input: neighbouring axial slices (Sec. III-A)
    rnn_hidden: int = 1  # ConvLSTM hidden channels (Sec. IV-D)
    rnn_kernel: int = 3  # ConvLSTM kernel size (Sec. IV-D)
    base_filters: int = 64  # UNet/HNN first-stage width (original papers: 64)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper Sec. III-A, IV-A, IV-D; unstated values are ours and say so)."""

    loss: str = "jac"  # "jac" (Eq. 14 over the mini-batch) | "jac_slice" (per slice) | "ce" | "cbce" (HED's class-balanced CE)
    optimizer: str = "adam"  # "adam" | "sgd"; paper: SGD for end-to-end fine-tuning, CNN optimiser unstated
    learning_rate: float = 1e-4  # paper unstated
    finetune_learning_rate: float = 1e-5  # end-to-end CNN-RNN fine-tuning (Sec. IV-D), paper unstated
    batch_size: int = 8  # 3-slice stacks per step, paper unstated
    sequence_batch_size: int = 1  # slice runs per step in the recurrent stage
    steps_per_epoch: int = 500  # optimiser steps per epoch
    validation_steps: int = 50  # batches of the validation subset per evaluation
    epochs_per_unit: int = 20  # max epochs while growing the net unit by unit (Sec. III-A)
    epochs_full: int = 40  # max epochs of the full model
    epochs_finetune: int = 10  # max epochs on training + validation (Sec. IV-A)
    epochs_rnn: int = 10  # max epochs of the BiRNN with the CNN frozen (Sec. IV-D)
    epochs_end_to_end: int = 5  # max epochs of CNN + BiRNN end to end (Sec. IV-D)
    patience: int = 3  # epochs without improvement of L_k before the next unit (Sec. III-A)
    stagewise: bool = True  # train PNet-MSA unit by unit from scratch (Sec. III-A)
    threshold: float = 0.5  # probability threshold of the binary mask (Sec. IV-C)
    mixed_precision: bool = False
    distribute: str = "none"  # "none" | "data_parallel": all local accelerators via the backend's engine
    workers: int = 2  # dataflow processes
    seed: int = 0


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _paper() -> ExperimentConfig:
    return ExperimentConfig()


def _quick() -> ExperimentConfig:
    """Minutes on a 2-core CPU: the paper's architectures at 16 channels on 96x96 body crops,
    trained for ~640 slices, without the unit-by-unit growth and the fine-tuning stage (whose
    per-stage graph compilation alone would take most of the budget). Far from converged."""
    return ExperimentConfig(
        data=DataConfig(input_size=96, crop="body", augment=True),
        model=ModelConfig(units=5, channels=16, base_filters=16),
        train=TrainConfig(learning_rate=1e-3, finetune_learning_rate=1e-4, batch_size=8, steps_per_epoch=20,
                          epochs_full=4, epochs_finetune=0, epochs_rnn=2, epochs_end_to_end=1, patience=4,
                          stagewise=False, workers=0),
    )


def _testing() -> ExperimentConfig:
    """Seconds: 64x64 slices, 3 units, one epoch of each stage."""
    return ExperimentConfig(
        data=DataConfig(builtin_set="tiny", input_size=64, crop="body", augment=False, sequence_length=3,
                        validation_fraction=0.5),
        model=ModelConfig(units=3, channels=8, base_filters=4),
        train=TrainConfig(learning_rate=1e-3, batch_size=2, steps_per_epoch=2, validation_steps=1,
                          epochs_per_unit=1, epochs_full=1, epochs_finetune=1, epochs_rnn=1,
                          epochs_end_to_end=1, patience=1, workers=0),
    )


PRESETS: dict[str, typing.Callable[[], ExperimentConfig]] = {
    "paper": _paper,
    "quick": _quick,
    "testing": _testing,
}


def preset(name: str) -> ExperimentConfig:
    """The named preset; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def _convert(text: str, annotation: Any) -> Any:
    """Convert a command-line string to a dataclass field's type."""
    hint = annotation if not isinstance(annotation, str) else eval_type(annotation)
    origin = typing.get_origin(hint)
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if origin is tuple:
        items = [item for item in text.replace("(", "").replace(")", "").split(",") if item.strip()]
        kinds = typing.get_args(hint)
        if len(items) != len(kinds):
            raise ValueError(f"expected {len(kinds)} comma-separated values, got {text!r}")
        return tuple(kind(item.strip()) for kind, item in zip(kinds, items))
    return hint(text)


_TYPES = {"int": int, "float": float, "str": str, "bool": bool,
          "tuple[float, float]": tuple[float, float], "tuple[int, int]": tuple[int, int]}


def eval_type(name: str) -> Any:
    """Resolve a postponed annotation string of the simple types used here."""
    try:
        return _TYPES[name]
    except KeyError:
        raise TypeError(f"unsupported config field type {name!r}") from None


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` strings (e.g. ``train.loss=ce``).

    A bare ``key=value`` is accepted when the key is unique across sections.
    Unknown keys and values that do not convert raise ``ValueError``.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        section_name, _, field_name = key.strip().rpartition(".")
        config = _override_one(config, section_name, field_name, value)
    return config


def _override_one(config: ExperimentConfig, section_name: str, field_name: str, value: str) -> ExperimentConfig:
    sections = [f.name for f in fields(config)]
    candidates = [section_name] if section_name else [
        s for s in sections if field_name in {f.name for f in fields(getattr(config, s))}]
    if len(candidates) != 1 or candidates[0] not in sections:
        raise ValueError(f"unknown or ambiguous config key {section_name + '.' if section_name else ''}{field_name!r}")
    section = getattr(config, candidates[0])
    known = {f.name: f for f in fields(section)}
    if field_name not in known:
        raise ValueError(f"unknown config key {candidates[0]}.{field_name}; known: {sorted(known)}")
    try:
        converted = _convert(value, known[field_name].type)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key {candidates[0]}.{field_name}: {err}") from None
    return replace(config, **{candidates[0]: replace(section, **{field_name: converted})})


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Inverse of :func:`to_dict`; unknown keys raise ``ValueError``."""
    parts = {}
    for section in fields(ExperimentConfig):
        cls = section.default_factory  # type: ignore[misc]
        values = dict(data.get(section.name, {}))
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown keys in config section {section.name!r}: {sorted(unknown)}")
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = tuple(value)
        parts[section.name] = cls(**values)
    return ExperimentConfig(**parts)


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short hash of a config: identifies cached models across experiments."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
