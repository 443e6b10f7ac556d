"""The names shared by the config, the command line and the registries: one home for each vocabulary.

Each vocabulary is a ``typing.Literal`` (the type of a config field) and a tuple of its values derived
from it. Config files and command lines hold the plain strings. Keras-free, so the CLI can import it
before it parses its arguments. The registries keyed by these names (``models.build.MODELS``,
``losses.LOSSES``, ``data.builtin.PHANTOM_SETS``) are tested to hold exactly these keys.
"""
from __future__ import annotations

from typing import Literal, get_args

Modality = Literal["CT", "MRI"]  # CT: NIH Pancreas-CT (Sec. IV-A); MRI: the authors' T1 set
MODALITIES: tuple[Modality, ...] = get_args(Modality)
MODALITY_BY_FLAG: dict[str, Modality] = {name.lower(): name for name in MODALITIES}  # "ct" -> "CT" for scripts

ModelName = Literal["pnet_msa", "pnet64", "hnn", "unet", "cnn_rnn", "birnn"]  # Table II, Sec. III-B, IV-D
MODEL_NAMES: tuple[ModelName, ...] = get_args(ModelName)
BASE_CNN: ModelName = "pnet_msa"  # the CNN under the BiRNN (Sec. IV-D)
RNN_MODEL: ModelName = "cnn_rnn"  # PNet-MSA + BiRNN run over the slice sequence (Fig. 1)
NOT_A_SCAN_MODEL: ModelName = "birnn"  # the BiRNN alone takes CNN probabilities, not images
SCAN_MODELS: tuple[ModelName, ...] = tuple(name for name in MODEL_NAMES if name != NOT_A_SCAN_MODEL)
PNET_MODELS: tuple[ModelName, ...] = ("pnet_msa", "pnet64", RNN_MODEL)  # built from PNet units (Sec. III-A)

LossName = Literal["jac", "jac_slice", "ce", "cbce"]  # Table I: Eq. 14 over the batch, per slice, CE, HED's CBCE
LOSS_NAMES: tuple[LossName, ...] = get_args(LossName)

CropMode = Literal["none", "body", "fov", "pancreas"]  # in-plane crop before resizing (data.preprocess)
PANCREAS_CROP: CropMode = "pancreas"  # a square around the pancreas: the fine stage of coarse-to-fine (Zhou et al. [9])
CROP_MODES: tuple[CropMode, ...] = get_args(CropMode)

FineStage = Literal["crops", "whole-slice"]  # what pancreas-seg train trains: squares around the pancreas found by a
# localiser (Table II's "on crops" row: more accurate and 7x faster on the phantoms), or the paper's whole slices
FINE_STAGES: tuple[FineStage, ...] = get_args(FineStage)
DEFAULT_FINE_STAGE: FineStage = "crops"  # pancreas-seg train's (Table II)

OptimizerName = Literal["adam", "sgd"]
OPTIMIZER_NAMES: tuple[OptimizerName, ...] = get_args(OptimizerName)

LrSchedule = Literal["constant", "cosine", "plateau"]  # learning rate over a stage: fixed, cosine decay to zero, or
# halved whenever the validation DSC stops improving (train)
LR_SCHEDULES: tuple[LrSchedule, ...] = get_args(LrSchedule)

DistributeMode = Literal["none", "data_parallel", "multi_worker"]  # all local accelerators; several machines (module distribute)
DISTRIBUTE_MODES: tuple[DistributeMode, ...] = get_args(DistributeMode)

BuiltinSet = Literal["standard", "tiny"]  # built-in phantom sets (data.builtin)
BUILTIN_SETS: tuple[BuiltinSet, ...] = get_args(BuiltinSet)

Precision = Literal["auto", "float32", "bfloat16"]  # CNN arithmetic at prediction (networks.resolve_precision)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
Runtime = Literal["auto", "keras", "openvino"]  # what runs the CNN at prediction (networks.resolve_runtime)
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)
