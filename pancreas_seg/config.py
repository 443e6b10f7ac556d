"""Configuration: small frozen dataclasses with defaults taken from the paper.

Every field says its unit and where it comes from. Variants are named presets
(:data:`PRESETS`), overridable from the command line with ``key=value`` strings
(:func:`apply_overrides`). A run writes its full config to ``config.json``.

A config is checked where it is made: a name outside its vocabulary
(:mod:`pancreas_seg.vocabulary`), a size or fraction out of range, or sections that do not fit
together raise ``ValueError`` naming the key, its value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pancreas_seg.vocabulary import (PANCREAS_CROP, PNET_MODELS, BuiltinSet, CropMode, DistributeMode, FineStage,
                                     LossName, LrSchedule, Modality, ModelName, OptimizerName)

log = logging.getLogger(__name__)

DEFAULT_PREDICT_BATCH_SIZE = 8  # 3-slice stacks per CNN call at prediction (CLI and inference default)
PNET_POOL_SIZE = 2  # PNet's 2x2 max-pool before every unit but the first (Sec. III-A; models.pnet.POOL_SIZE)
REMOVED_KEYS = {"train": ("validation_steps",)}  # fields of older versions: ignored when an old config.json loads
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _require(section: Any, name: str, ok: bool, rule: str) -> None:
    """Raise ``ValueError`` naming ``<section>.<name>``, its value and ``rule`` unless ``ok``."""
    if not ok:
        raise ValueError(f"config key {section.SECTION}.{name}={getattr(section, name)!r}: must be {rule}")


def _require_at_least(section: Any, minimum: int, *names: str) -> None:
    for name in names:
        _require(section, name, getattr(section, name) >= minimum, f">= {minimum}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each dataclass field (annotations are strings here)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _require_choices(section: Any) -> None:
    """Every ``Literal``-typed field holds one of its choices."""
    for name, hint in _field_types(type(section)).items():
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
            _require(section, name, getattr(section, name) in choices, f"one of {choices}")


@dataclass(frozen=True)
class DataConfig:
    """What the networks see (paper Sec. III-A, IV-A)."""

    SECTION: typing.ClassVar[str] = "data"

    modality: Modality = "CT"  # "CT" (NIH Pancreas-CT) or "MRI" (the authors' T1 set), Sec. IV-A
    builtin_set: BuiltinSet = "standard"  # phantom set used when no --data is given: "standard" | "tiny"
    hu_window: tuple[float, float] = (-160.0, 240.0)  # HU, CT window scaled to [0, 1]; paper silent, abdominal soft-tissue window of Roth et al.
    mri_percentiles: tuple[float, float] = (0.5, 99.5)  # %, MRI per-volume intensity normalisation to [0, 1]
    crop: CropMode = "none"  # "none" | "body" (bounding box of the body outline) | "fov" (centred square of fov_mm)
    # | "pancreas" (a square of at least fov_mm around the pancreas: the manual mask in training, a localiser's region
    # in prediction; ours, after Zhou et al. [9])
    fov_mm: float = 350.0  # mm, side of the centred square kept when crop == "fov"; least side when "pancreas"
    input_size: int = 512  # px, square training resolution; NIH slices are 512x512 (Sec. IV-A)
    context_slices: int = 3  # slices stacked as channels: tau-1, tau, tau+1 (Sec. III-A)
    sequence_length: int = 5  # slices per ordered run for the recurrent stage (Sec. III-B, Fig. 4 shows 5)
    focus_margin: int = 5  # slices, pancreas slice range widened by this for focused sampling
    focus_fraction: float = 0.8  # share of samples drawn near the pancreas; 1.0 = only there, 0.0 = uniform
    augment: bool = True  # small random shifts and intensity gain/offset on training stacks; no flips (ours)
    folds: int = 4  # patient-level cross-validation folds (Sec. IV-A)
    validation_fraction: float = 0.15  # share of each training fold kept for model selection (Sec. IV-A)
    seed: int = 0

    def __post_init__(self) -> None:
        _require_choices(self)
        low, high = self.hu_window
        _require(self, "hu_window", low < high, "(low, high) with low < high")
        low, high = self.mri_percentiles
        _require(self, "mri_percentiles", 0.0 <= low < high <= 100.0, "(low, high) with 0 <= low < high <= 100")
        _require(self, "fov_mm", self.fov_mm > 0, "> 0")
        _require_at_least(self, 1, "input_size", "context_slices", "sequence_length")
        _require_at_least(self, 0, "focus_margin")
        _require_at_least(self, 2, "folds")
        _require(self, "focus_fraction", 0.0 <= self.focus_fraction <= 1.0, "in [0, 1]")
        _require(self, "validation_fraction", 0.0 <= self.validation_fraction < 1.0, "in [0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (paper Sec. III-A, III-B, IV-D)."""

    SECTION: typing.ClassVar[str] = "model"

    name: ModelName = "pnet_msa"  # registry key (vocabulary.MODEL_NAMES): pnet_msa | pnet64 | hnn | unet | cnn_rnn | birnn
    units: int = 5  # K, stacked unit modules (Sec. III-A: K = 5 works best)
    channels: int = 64  # conv/deconv output channels (Sec. IV-A)
    convs_per_unit: int = 4  # conv+BN+ReLU layers per forward branch (Sec. III-A)
    input_slices: int = 3  # channels of the input: neighbouring axial slices (Sec. III-A)
    rnn_hidden: int = 1  # ConvLSTM hidden channels (Sec. IV-D)
    rnn_kernel: int = 3  # ConvLSTM kernel size (Sec. IV-D)
    base_filters: int = 64  # UNet/HNN first-stage width (original papers: 64)
    baseline_batch_norm: bool = True  # BN after every 3x3 conv of UNet/HNN; ours: from scratch they collapse without it

    def __post_init__(self) -> None:
        _require_choices(self)
        _require_at_least(self, 1, "units", "channels", "convs_per_unit", "input_slices", "rnn_hidden",
                          "rnn_kernel", "base_filters")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper Sec. III-A, IV-A, IV-D; unstated values are ours and say so)."""

    SECTION: typing.ClassVar[str] = "train"

    loss: LossName = "jac"  # "jac" (Eq. 14 over the mini-batch) | "jac_slice" (per slice) | "ce" | "cbce" (HED's class-balanced CE)
    optimizer: OptimizerName = "adam"  # "adam" | "sgd"; paper: SGD for end-to-end fine-tuning, CNN optimiser unstated
    momentum: float = 0.9  # SGD momentum, paper unstated
    learning_rate: float = 1e-4  # paper unstated
    finetune_learning_rate: float = 1e-5  # end-to-end CNN-RNN fine-tuning (Sec. IV-D), paper unstated
    rnn_learning_rate: float = 1e-3  # the BiRNN with the CNN frozen (147 parameters, Sec. IV-D), paper unstated
    lr_schedule: LrSchedule = "constant"  # "constant" | "cosine" (decay to 0 over each stage's epochs) | "plateau"; paper unstated
    lr_patience: int = 2  # "plateau": epochs without a better monitored value before the learning rate drops
    lr_factor: float = 0.5  # "plateau": the learning rate's factor at each drop
    min_learning_rate: float = 1e-6  # "plateau": the learning rate never drops below this
    batch_size: int = 8  # 3-slice stacks per step, paper unstated
    sequence_batch_size: int = 1  # slice runs per step in the recurrent stage
    steps_per_epoch: int = 500  # optimiser steps per epoch
    epochs_per_unit: int = 20  # max epochs while growing the net unit by unit (Sec. III-A)
    epochs_full: int = 40  # max epochs of the full model
    epochs_finetune: int = 10  # max epochs on training + validation (Sec. IV-A); 0 skips the stage
    epochs_rnn: int = 10  # max epochs of the BiRNN with the CNN frozen (Sec. IV-D)
    epochs_end_to_end: int = 5  # max epochs of CNN + BiRNN end to end (Sec. IV-D); 0 skips the stage
    patience: int = 3  # epochs without improvement of L_k before the next unit (Sec. III-A)
    stagewise: bool = True  # train PNet-MSA unit by unit from scratch (Sec. III-A)
    threshold: float = 0.5  # probability threshold of the binary mask (Sec. IV-C)
    mixed_precision: bool = False
    distribute: DistributeMode = "none"  # "none" | "data_parallel" (all local accelerators) | "multi_worker" (several machines), via the backend's engine
    workers: int = 2  # dataflow processes; 0 runs the dataflow in the training process
    seed: int = 0

    def __post_init__(self) -> None:
        _require_choices(self)
        _require(self, "momentum", 0.0 <= self.momentum < 1.0, "in [0, 1)")
        _require(self, "learning_rate", self.learning_rate > 0, "> 0")
        _require(self, "finetune_learning_rate", self.finetune_learning_rate > 0, "> 0")
        _require(self, "rnn_learning_rate", self.rnn_learning_rate > 0, "> 0")
        _require(self, "lr_factor", 0.0 < self.lr_factor < 1.0, "in (0, 1)")
        _require(self, "min_learning_rate", self.min_learning_rate >= 0, ">= 0")
        _require_at_least(self, 1, "batch_size", "sequence_batch_size", "steps_per_epoch")
        _require_at_least(self, 0, "epochs_per_unit", "epochs_full", "epochs_finetune", "epochs_rnn",
                          "epochs_end_to_end", "patience", "lr_patience", "workers")
        _require(self, "threshold", 0.0 < self.threshold < 1.0, "in (0, 1)")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs; the sections must fit together (checked when made)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.model.input_slices != self.data.context_slices:
            raise ValueError(f"config keys model.input_slices={self.model.input_slices} and data.context_slices="
                             f"{self.data.context_slices} must be equal: the stacked slices are the input channels")
        factor = PNET_POOL_SIZE ** (self.model.units - 1)
        if self.model.name in PNET_MODELS and self.data.input_size % factor:
            raise ValueError(f"config key data.input_size={self.data.input_size}: must be divisible by "
                             f"2**(model.units-1) = {factor} for model {self.model.name!r} (Sec. III-A max-pools)")


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
        train=TrainConfig(learning_rate=1e-3, batch_size=2, steps_per_epoch=2, epochs_per_unit=1, epochs_full=1,
                          epochs_finetune=1, epochs_rnn=1, epochs_end_to_end=1, patience=1, workers=0),
    )


def _cpu() -> ExperimentConfig:
    """The committed results on a 2-core CPU (docs/REPRODUCTION.md): the quick preset's shapes,
    trained until the validation DSC stops improving (early stopping after 6 epochs without a
    better one, at most 30 epochs of 320 slices) with the learning rate halved after every 2
    epochs without one, and half of the samples from pancreas-free slices, which make up ~70 %
    of a whole-abdomen scan. The BiRNN (147 parameters) gets its own learning rate and the same
    stopping rule; the end-to-end stage runs until the validation DSC is back at Acc_t (at most
    3 epochs), and a run that does not get back there keeps the BiRNN stage's model."""
    quick = _quick()
    return replace(quick, data=replace(quick.data, focus_fraction=0.5),
                   train=replace(quick.train, steps_per_epoch=40, epochs_full=30, patience=6, lr_schedule="plateau",
                                 lr_patience=2, epochs_rnn=20, rnn_learning_rate=1e-2, sequence_batch_size=2,
                                 epochs_end_to_end=3))


PRESETS: dict[str, typing.Callable[[], ExperimentConfig]] = {
    "paper": _paper,
    "cpu": _cpu,
    "quick": _quick,
    "testing": _testing,
}


def preset(name: str) -> ExperimentConfig:
    """The named preset; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def _convert(text: str, hint: Any) -> Any:
    """Convert a command-line string to a field's resolved type (bool words, ``a,b`` tuples, Literal choices)."""
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise ValueError(f"expected a boolean ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}), got {text!r}")
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if text not in choices:
            raise ValueError(f"expected one of {choices}, got {text!r}")
        return text
    if origin is tuple:
        items = [item for item in text.replace("(", "").replace(")", "").split(",") if item.strip()]
        kinds = typing.get_args(hint)
        if len(items) != len(kinds):
            raise ValueError(f"expected {len(kinds)} comma-separated values, got {text!r}")
        return tuple(kind(item.strip()) for kind, item in zip(kinds, items))
    return hint(text)


CROP_FOV_MM = 200.0  # mm, least side of the squares around the pancreas: the phantoms' widest (176 mm) + 2 x 10 mm
CROP_FINE_STAGE: tuple[str, ...] = (f"data.crop={PANCREAS_CROP}", f"data.fov_mm={CROP_FOV_MM}")  # as overrides
FINE_STAGE_OVERRIDES: dict[FineStage, tuple[str, ...]] = {"crops": CROP_FINE_STAGE, "whole-slice": ()}  # on a preset


def apply_overrides(config: ExperimentConfig, overrides: typing.Sequence[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` strings (e.g. ``train.loss=ce``).

    A bare ``key=value`` is accepted when the key is unique across sections. All overrides are
    applied together, then the result is checked, so their order does not matter (a later value
    of the same key wins). Unknown or ambiguous keys, values that do not convert and configs that
    fail their checks raise ``ValueError``.
    """
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        section_name, _, field_name = key.strip().rpartition(".")
        section_name = _section_of(config, section_name, field_name)
        changes.setdefault(section_name, {})[field_name] = _convert_field(config, section_name, field_name, value)
    sections = {name: replace(getattr(config, name), **values) for name, values in changes.items()}
    return replace(config, **sections)


def _section_of(config: ExperimentConfig, section_name: str, field_name: str) -> str:
    """The section holding ``field_name``: ``section_name`` when given, else the only one that has it."""
    sections = {f.name: {g.name for g in fields(getattr(config, f.name))} for f in fields(config)}
    if section_name:
        if section_name not in sections:
            raise ValueError(f"unknown config section {section_name!r} in {section_name}.{field_name}; "
                             f"known: {sorted(sections)}")
        if field_name not in sections[section_name]:
            raise ValueError(f"unknown config key {section_name}.{field_name}; "
                             f"known: {sorted(sections[section_name])}")
        return section_name
    holders = [name for name, names in sections.items() if field_name in names]
    if not holders:
        raise ValueError(f"unknown config key {field_name!r}")
    if len(holders) > 1:
        raise ValueError(f"ambiguous config key {field_name!r}: in sections {holders}; write e.g. "
                         f"{holders[0]}.{field_name}")
    return holders[0]


def _convert_field(config: ExperimentConfig, section_name: str, field_name: str, value: str) -> Any:
    hint = _field_types(type(getattr(config, section_name)))[field_name]
    try:
        return _convert(value, hint)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key {section_name}.{field_name}: {err}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(config)


def missing_sections(data: dict[str, Any]) -> list[str]:
    """Sections of :class:`ExperimentConfig` absent from ``data`` (a config written whole has none)."""
    return [section.name for section in fields(ExperimentConfig) if section.name not in data]


def missing_keys(data: dict[str, Any]) -> list[str]:
    """``section.key`` of every field absent from ``data``'s sections (keys newer than the writer)."""
    return [f"{section.name}.{f.name}" for section in fields(ExperimentConfig)
            for f in fields(section.default_factory)  # type: ignore[misc]
            if isinstance(data.get(section.name), dict) and f.name not in data[section.name]]


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Inverse of :func:`to_dict`; missing keys take their defaults, keys of :data:`REMOVED_KEYS`
    are dropped with a warning, other unknown keys and failed checks raise ``ValueError``."""
    parts = {}
    for section in fields(ExperimentConfig):
        cls = section.default_factory  # type: ignore[misc]
        values = dict(data.get(section.name, {}))
        for name in REMOVED_KEYS.get(section.name, ()):
            if name in values:
                del values[name]
                log.warning("config key %s.%s is no longer used; ignored", section.name, name)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
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
