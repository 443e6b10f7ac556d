"""Prediction of pancreas masks for new scans (paper Sec. III, IV-A: testing of PNet-MSA and CNN-RNN).

Pipeline of one scan (:func:`predict_scan`)::

    Scan [Z, Y, X] --prepare_volume (the run's DataConfig)--> [Z, S, S] float32 in [0, 1]
      --2D CNN over 3-slice stacks, batch by batch--> [Z, S, S] probabilities ("fused", Eq. 3)
      --BiRNN over the whole slice sequence [1, Z, S, S, 1] (cnn_rnn only, Sec. III-B)--> [Z, S, S]
      --mean over models (and over the left-right flipped input with --tta)--> [Z, S, S]
      --InplaneTransform.invert--> [Z, Y, X] --threshold (> t), optional largest component--> uint8 mask

Memory stays bounded by a few ``[Z, S, S]`` / ``[Z, Y, X]`` float32 volumes: the CNN sees
``batch_size`` stacks at a time and only its one-channel output is kept.

Inputs (:func:`find_inputs`): a NIfTI file, a DICOM series folder, or a batch folder holding
several NIfTI files and/or subfolders of one series each. A model (:func:`load_model`) is a run
folder (``config.json`` + ``model.keras``) or a ``.keras`` file with ``config.json`` beside it.

Outputs of one case (:class:`OutputPaths`) are written together
(:func:`~pancreas_seg.io.atomic.atomic_write_many`): every file goes to a hidden temporary name
first and all are renamed into place only when all were written, so a failure leaves no partial output.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from pancreas_seg import __version__
from pancreas_seg.config import DataConfig, ExperimentConfig, config_hash, from_dict
from pancreas_seg.data.preprocess import InplaneTransform, prepare_volume, slice_stack
from pancreas_seg.errors import InputError, PancreasSegError
from pancreas_seg.io.atomic import atomic_write_many
from pancreas_seg.io.dicom import list_series, read_dicom_series
from pancreas_seg.io.nifti import NIFTI_SUFFIXES, nifti_case_id, read_nifti, split_nifti_name, write_nifti
from pancreas_seg.io.scan import Scan
from pancreas_seg.metrics import MM3_PER_ML
from pancreas_seg.models.birnn import build_birnn, cnn_of
from pancreas_seg.models.build import default_jit_compile, transfer_weights

logger = logging.getLogger(__name__)

RUN_CONFIG_NAME = "config.json"
RUN_MODEL_NAME = "model.keras"
MODEL_SUFFIX = ".keras"
FUSED = "fused"  # output of the 2D CNNs used as their prediction (Eq. 3)
RNN_MODEL = "cnn_rnn"  # model name whose BiRNN runs over the slice sequence
NOT_A_SCAN_MODEL = "birnn"  # takes CNN probabilities, not images
DEFAULT_BATCH_SIZE = 8  # 3-slice stacks per CNN call
COMPONENT_CONNECTIVITY = 3  # scipy rank-3 structure: 26-connected components in 3D
PREPROCESSING_FIELDS = ("modality", "hu_window", "mri_percentiles", "crop", "fov_mm", "input_size",
                        "context_slices")  # DataConfig fields every averaged model must share
STAGES = ("read", "preprocess", "cnn", "birnn", "postprocess", "write")
MAX_LOAD_ERROR_CHARS = 200  # the loader's message is cut to this length in the one-line error
INPUT_KINDS = ("dicom", "nifti")

# output naming: "<stem><suffix>" beside the mask
PROBABILITY_SUFFIX = "_prob"
REPORT_SUFFIX = ".json"
QC_SUFFIX = "_qc.png"
DICOM_SEG_SUFFIX = "_seg.dcm"
BATCH_MASK_SUFFIX = ".nii.gz"


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------

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
    """

    path: Path
    config: ExperimentConfig
    config_hash: str
    cnn: keras.Model
    birnn: keras.Model | None = None

    def describe(self) -> dict:
        """JSON-ready identity of the model for reports."""
        return {"path": str(self.path), "config_hash": self.config_hash, "model": self.config.model.name,
                "modality": self.config.data.modality}


def _resolve_model_path(path: Path) -> tuple[Path, Path]:
    """``(model.keras, config.json)`` of a run folder or a ``.keras`` file."""
    if not path.exists():
        raise InputError(path, "model path does not exist (give a run folder or a .keras file)")
    if path.is_dir():
        model_path, config_path = path / RUN_MODEL_NAME, path / RUN_CONFIG_NAME
        if not model_path.is_file():
            raise InputError(path, f"run folder has no {RUN_MODEL_NAME} (has the training finished?)")
    else:
        if not path.name.endswith(MODEL_SUFFIX):
            raise InputError(path, f"not a Keras model file (expected a run folder or a {MODEL_SUFFIX} file)")
        model_path, config_path = path, path.parent / RUN_CONFIG_NAME
    if not config_path.is_file():
        raise InputError(model_path, f"no {RUN_CONFIG_NAME} beside the model; the preprocessing of the run "
                                     "is unknown (keep the model in its run folder)")
    return model_path, config_path


def _read_run_config(config_path: Path) -> tuple[ExperimentConfig, str]:
    try:
        payload = json.loads(config_path.read_text())
        config = from_dict(payload["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(config_path, f"not a run configuration ({type(exc).__name__}: {exc})") from None
    return config, str(payload.get("config_hash") or config_hash(config))


def _birnn_part(model: keras.Model, config: ExperimentConfig) -> keras.Model:
    """The BiRNN of a CNN-RNN model as its own model (weights copied by layer name)."""
    birnn = build_birnn(config.model, config.data.input_size)
    expected = sum(1 for layer in birnn.layers if layer.weights)
    copied = transfer_weights(model, birnn)
    if copied != expected:
        raise RuntimeError(f"copied {copied} of {expected} BiRNN layers from {model.name}")
    return birnn


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= MAX_LOAD_ERROR_CHARS else text[:MAX_LOAD_ERROR_CHARS] + "..."


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a run folder (``config.json`` + ``model.keras``) or a ``.keras`` file (``config.json`` beside it).

    The model is loaded with ``safe_mode=True`` and not compiled.

    Raises:
        InputError: missing path or config, unreadable config, a model file that does not load, a
            model that does not predict from scans (the BiRNN alone).
    """
    model_path, config_path = _resolve_model_path(Path(path))
    config, run_hash = _read_run_config(config_path)
    if config.model.name == NOT_A_SCAN_MODEL:
        raise InputError(model_path, "this model is a BiRNN alone (it takes CNN probabilities, not scans)")
    import pancreas_seg.models  # noqa: F401 - registers the custom layers before loading
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise InputError(model_path, f"cannot load the model ({type(exc).__name__}: {_one_line(exc)})") from None
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
    return LoadedModel(model_path, config, run_hash, cnn, birnn)


def preprocessing_key(config: DataConfig) -> dict:
    """The DataConfig fields that define what a model sees (:data:`PREPROCESSING_FIELDS`)."""
    return {name: getattr(config, name) for name in PREPROCESSING_FIELDS}


def load_models(paths: Sequence[str | os.PathLike]) -> list[LoadedModel]:
    """Load one or several models to average; all must share the preprocessing.

    Raises:
        InputError: a model does not load, or two models differ in a :data:`PREPROCESSING_FIELDS` field.
    """
    if not paths:
        raise ValueError("give at least one model")
    models = [load_model(path) for path in paths]
    reference = preprocessing_key(models[0].config.data)
    for model in models[1:]:
        key = preprocessing_key(model.config.data)
        differing = [name for name in PREPROCESSING_FIELDS if key[name] != reference[name]]
        if differing:
            shown = ", ".join(f"{name} {key[name]!r} vs {reference[name]!r}" for name in differing)
            raise InputError(model.path, f"preprocessing differs from {models[0].path}: {shown}; "
                                         "only models trained with the same data config can be averaged")
    return models


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanInput:
    """One scan to predict: ``kind`` ``"dicom"`` (a series folder) or ``"nifti"`` (a file)."""

    case_id: str
    path: Path
    kind: str


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def find_inputs(path: str | os.PathLike, exclude: str | os.PathLike | None = None) -> tuple[list[ScanInput], bool]:
    """The scans under ``path`` and whether it is a batch.

    A NIfTI file is one scan; a folder whose files (recursively) form one DICOM image series is
    one scan; a folder holding NIfTI files and/or several subfolders is a batch: each NIfTI file
    directly inside and each subfolder (one series each) is a case. Hidden entries and
    ``exclude`` (the output folder, when inside) are skipped.

    Returns:
        ``(inputs, is_batch)``; inputs sorted by case id.

    Raises:
        InputError: missing path, a file that is not NIfTI, a folder with neither DICOM images
            nor NIfTI files, two cases with the same id.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file():
        if not _is_nifti(path):
            raise InputError(path, f"not a NIfTI file ({' or '.join(NIFTI_SUFFIXES)}); for DICOM give the "
                                   "folder holding the series")
        return [ScanInput(nifti_case_id(path), path, "nifti")], False
    skip = Path(exclude).resolve() if exclude is not None else None
    entries = [p for p in _visible(path) if p.resolve() != skip]
    niftis = [p for p in entries if _is_nifti(p)]
    folders = [p for p in entries if p.is_dir()]
    if not niftis:
        try:
            series = list_series(path)
        except InputError:
            if len(folders) < 2:
                raise
            series = None  # a broken file in one case: reported when that case is read
        if series is not None and len(series) == 1:
            return [ScanInput(path.name, path, "dicom")], False
        if series is not None and not series:
            raise InputError(path, "no DICOM image series and no NIfTI files found")
        if len(folders) < 2:
            return [ScanInput(path.name, path, "dicom")], False  # several series: the reader lists them
    inputs = [ScanInput(nifti_case_id(p), p, "nifti") for p in niftis]
    inputs += [ScanInput(p.name, p, "dicom") for p in folders]
    seen: dict[str, Path] = {}
    for item in inputs:
        if item.case_id in seen:
            raise InputError(path, f"two inputs for case {item.case_id!r}: {seen[item.case_id].name} and {item.path.name}")
        seen[item.case_id] = item.path
    return sorted(inputs, key=lambda item: item.case_id), True


def read_input(item: ScanInput, modality: str | None, series: str | None = None) -> Scan:
    """Read a :class:`ScanInput`; ``modality`` overrides the DICOM tag and is required for NIfTI."""
    if item.kind == "dicom":
        return read_dicom_series(item.path, series=series, modality=modality)
    if modality is None:
        raise ValueError("the modality of a NIfTI scan must be given")
    return read_nifti(item.path, modality=modality, kind="image")


# ---------------------------------------------------------------------------
# prediction
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictOptions:
    """How to predict.

    Attributes:
        batch_size: 3-slice stacks per CNN call.
        threshold: probability threshold of the mask (``> threshold``); ``None`` = the first model's
            ``config.train.threshold``.
        tta: average with the prediction of the left-right flipped input, flipped back.
        largest_component: keep only the largest 26-connected component of the mask.
        modality: ``"CT"`` / ``"MRI"``: overrides the DICOM Modality tag; for NIfTI (which has none)
            the default is the models' modality.
        series: SeriesInstanceUID of the series to read from a single DICOM folder holding several.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    threshold: float | None = None
    tta: bool = False
    largest_component: bool = False
    modality: str | None = None
    series: str | None = None


@dataclass
class Prediction:
    """Result on the scan's grid: probability ``[Z, Y, X]`` float32, mask ``[Z, Y, X]`` uint8 (0/1)."""

    probability: np.ndarray
    mask: np.ndarray
    threshold: float
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _fused(output) -> np.ndarray:
    """The prediction of a model output (dict with ``"fused"`` or a tensor) as numpy."""
    return np.asarray(output[FUSED] if isinstance(output, dict) else output)


def cnn_probabilities(cnn: keras.Model, volume: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                      context: int = 3) -> np.ndarray:
    """The 2D CNN over every slice: ``[Z, S, S]`` float32 in [0, 1] -> ``[Z, S, S]`` float32 probabilities.

    Slice ``k`` sees the stack of slices ``k-1, k, k+1`` (edges replicated, Sec. III-A); only
    ``batch_size`` stacks are in memory at once and only the ``"fused"`` channel is kept.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty(volume.shape, np.float32)
    for start in range(0, volume.shape[0], batch_size):
        stop = min(volume.shape[0], start + batch_size)
        # the last batch is padded with repeats of its last slice: one traced shape per scan size
        indices = [min(k, stop - 1) for k in range(start, start + batch_size)]
        batch = np.stack([slice_stack(volume, k, context) for k in indices]).astype(np.float32)
        out[start:stop] = _fused(cnn.predict_on_batch(batch))[:stop - start, ..., 0]
    return out


def birnn_probabilities(birnn: keras.Model, probability: np.ndarray) -> np.ndarray:
    """The BiRNN over the whole slice sequence: ``[Z, S, S]`` -> ``[Z, S, S]`` float32 (Sec. III-B)."""
    sequence = probability[np.newaxis, ..., np.newaxis]
    return _fused(birnn.predict_on_batch(sequence))[0, ..., 0].astype(np.float32)


def model_probabilities(model: LoadedModel, volume: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                        tta: bool = False, timings: dict[str, float] | None = None) -> np.ndarray:
    """One model (CNN, then its BiRNN if any) on a prepared ``[Z, S, S]`` volume -> ``[Z, S, S]`` float32.

    With ``tta`` the mean with the prediction of the left-right (X) flipped volume, flipped back.
    Time spent is added to ``timings["cnn"]`` and ``timings["birnn"]``.
    """
    timings = {} if timings is None else timings
    context = model.config.data.context_slices
    views: list[Callable[[np.ndarray], np.ndarray]] = [lambda v: v]
    if tta:
        views.append(lambda v: v[:, :, ::-1])  # its own inverse
    total = np.zeros(volume.shape, np.float32)
    for view in views:
        with _timed(timings, "cnn"):
            probability = cnn_probabilities(model.cnn, view(volume), batch_size, context)
        if model.birnn is not None:
            with _timed(timings, "birnn"):
                probability = birnn_probabilities(model.birnn, probability)
        total += view(probability)
    return total / len(views)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a ``[Z, Y, X]`` mask; uint8 0/1."""
    structure = ndimage.generate_binary_structure(3, COMPONENT_CONNECTIVITY)
    labels, count = ndimage.label(mask != 0, structure=structure)
    if count <= 1:
        return (labels > 0).astype(np.uint8)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == int(np.argmax(sizes))).astype(np.uint8)


def postprocess(probability: np.ndarray, transform: InplaneTransform, threshold: float,
                keep_largest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Network-grid probabilities ``[Z, S, S]`` -> scan grid: ``(probability [Z, Y, X] float32, mask uint8)``.

    The mask is ``probability > threshold`` (as the training DSC, Sec. IV-C), optionally reduced to
    its largest connected component.
    """
    on_scan = transform.invert(probability)
    mask = (on_scan > threshold).astype(np.uint8)
    if keep_largest:
        mask = largest_component(mask)
    return on_scan, mask


def check_modality(scan: Scan, models: Sequence[LoadedModel], where: str | os.PathLike) -> None:
    """Refuse a scan whose modality is not the one the models were trained on."""
    for model in models:
        if model.config.data.modality != scan.modality:
            raise InputError(where, f"scan is {scan.modality} but model {model.path} was trained on "
                                    f"{model.config.data.modality}")


def default_threshold(models: Sequence[LoadedModel]) -> float:
    thresholds = {model.config.train.threshold for model in models}
    if len(thresholds) > 1:
        logger.warning("models have different thresholds %s; using %s", sorted(thresholds),
                       models[0].config.train.threshold)
    return models[0].config.train.threshold


def predict_scan(scan: Scan, models: Sequence[LoadedModel], options: PredictOptions = PredictOptions(),
                 timings: dict[str, float] | None = None) -> Prediction:
    """Predict the pancreas of ``scan`` with the mean of ``models`` (pipeline in the module docstring).

    Args:
        scan: the image, ``[Z, Y, X]`` HU (CT) or MRI units.
        models: one or several models sharing their preprocessing (:func:`load_models`).
        options: batch size, threshold, TTA, largest component.
        timings: stage durations in seconds are added here (preprocess, cnn, birnn, postprocess).

    Returns:
        :class:`Prediction` on exactly the scan's grid.

    Raises:
        InputError: the scan's modality differs from the models'.
    """
    timings = {} if timings is None else timings
    check_modality(scan, models, scan.source.get("path", "scan"))
    data_config = models[0].config.data
    with _timed(timings, "preprocess"):
        volume, transform = prepare_volume(scan.array, scan.spacing, scan.modality, data_config)
    total = np.zeros(volume.shape, np.float32)
    for model in models:
        total += model_probabilities(model, volume, options.batch_size, options.tta, timings)
    del volume
    total /= len(models)
    threshold = default_threshold(models) if options.threshold is None else options.threshold
    with _timed(timings, "postprocess"):
        probability, mask = postprocess(total, transform, threshold, options.largest_component)
    for stage in ("cnn", "birnn"):
        timings.setdefault(stage, 0.0)
    return Prediction(probability, mask, threshold, timings)


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputPaths:
    """Where one case's outputs go."""

    mask: Path
    probability: Path
    report: Path
    qc: Path
    dicom_seg: Path

    @classmethod
    def beside(cls, mask: str | os.PathLike) -> "OutputPaths":
        """Single-scan naming: ``mask`` (``.nii.gz`` / ``.nii``), the rest beside it with suffixes."""
        mask = Path(mask)
        parts = split_nifti_name(mask)
        if parts is None:
            raise InputError(mask, f"output mask must end with {' or '.join(NIFTI_SUFFIXES)}")
        stem, suffix = parts
        return cls(mask, mask.with_name(stem + PROBABILITY_SUFFIX + suffix), mask.with_name(stem + REPORT_SUFFIX),
                   mask.with_name(stem + QC_SUFFIX), mask.with_name(stem + DICOM_SEG_SUFFIX))

    @classmethod
    def in_folder(cls, folder: str | os.PathLike, case_id: str) -> "OutputPaths":
        """Batch naming: ``<folder>/<case_id>.nii.gz`` and the rest beside it."""
        return cls.beside(Path(folder) / f"{case_id}{BATCH_MASK_SUFFIX}")


@dataclass(frozen=True)
class OutputOptions:
    """Which optional outputs to write besides the mask and the JSON report."""

    save_probability: bool = False
    qc: bool = False
    dicom_seg: bool = False


def _slice_range(mask: np.ndarray) -> list[int] | None:
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return None if slices.size == 0 else [int(slices[0]), int(slices[-1])]


def build_report(item: ScanInput, scan: Scan, prediction: Prediction, models: Sequence[LoadedModel],
                 options: PredictOptions, outputs: OutputOptions, paths: OutputPaths) -> dict:
    """The JSON report of one case (input, volume, slice range, timings, models, threshold, flags)."""
    voxel_mm3 = float(np.prod(scan.spacing))
    written = {"mask": str(paths.mask), "report": str(paths.report)}
    for name, wanted in (("probability", outputs.save_probability), ("qc", outputs.qc),
                         ("dicom_seg", outputs.dicom_seg)):
        if wanted:
            written[name] = str(getattr(paths, name))
    timings = {stage: round(prediction.timings.get(stage, 0.0), 4) for stage in STAGES}
    return {
        "case_id": item.case_id,
        "input": str(item.path),
        "input_kind": item.kind,
        "modality": scan.modality,
        "shape_zyx": list(scan.shape),
        "spacing_zyx_mm": [round(s, 6) for s in scan.spacing],
        "pancreas_voxels": int(prediction.mask.sum()),
        "pancreas_volume_ml": float(prediction.mask.sum()) * voxel_mm3 / MM3_PER_ML,
        "slice_range": _slice_range(prediction.mask),
        "threshold": prediction.threshold,
        "timings_s": {**timings, "total": round(sum(timings.values()), 4)},
        "models": [model.describe() for model in models],
        "flags": {**{f.name: getattr(options, f.name) for f in fields(options)},
                  **{f.name: getattr(outputs, f.name) for f in fields(outputs)}},
        "outputs": written,
        "pancreas_seg_version": __version__,
    }


def _scan_modality(item: ScanInput, models: Sequence[LoadedModel], options: PredictOptions) -> str | None:
    if options.modality is not None or item.kind == "dicom":
        return options.modality
    modality = models[0].config.data.modality
    logger.info("%s: NIfTI has no modality; taking the model's (%s)", item.path, modality)
    return modality


def predict_case(item: ScanInput, paths: OutputPaths, models: Sequence[LoadedModel],
                 options: PredictOptions = PredictOptions(), outputs: OutputOptions = OutputOptions()) -> dict:
    """Read, predict and write one scan; returns its report (also written to ``paths.report``).

    Raises:
        InputError: unreadable scan, modality mismatch, DICOM SEG asked for a NIfTI input. Nothing
            is written then.
    """
    if outputs.dicom_seg and item.kind != "dicom":
        raise InputError(item.path, "a DICOM SEG needs a DICOM input series (this input is NIfTI)")
    timings: dict[str, float] = {}
    with _timed(timings, "read"):
        scan = read_input(item, _scan_modality(item, models, options), options.series)
    prediction = predict_scan(scan, models, options, timings)
    writers: dict[Path, Callable[[Path], object]] = {
        paths.mask: lambda tmp: write_nifti(Scan(prediction.mask, scan.affine, scan.modality), tmp, dtype=np.uint8)}
    if outputs.save_probability:
        writers[paths.probability] = lambda tmp: write_nifti(
            Scan(prediction.probability, scan.affine, scan.modality), tmp, dtype=np.float32)
    if outputs.qc:
        from pancreas_seg.plots import qc_figure
        writers[paths.qc] = lambda tmp: qc_figure(scan.array, prediction.mask, scan.spacing, tmp, title=item.case_id)
    if outputs.dicom_seg:
        from pancreas_seg.io.dicom_seg import write_dicom_seg
        writers[paths.dicom_seg] = lambda tmp: write_dicom_seg(prediction.mask, item.path, tmp, series=options.series,
                                                               affine=scan.affine)
    report: dict = {}
    write_start = time.perf_counter()

    def write_report(tmp: Path) -> None:  # last writer: the timings of the others are known
        timings["write"] = time.perf_counter() - write_start
        report.update(build_report(item, scan, prediction, models, options, outputs, paths))
        tmp.write_text(json.dumps(report, indent=2) + "\n")

    writers[paths.report] = write_report
    atomic_write_many(writers)
    return report


@dataclass
class CaseOutcome:
    """One case of a batch: its report, or the one-line error that stopped it."""

    item: ScanInput
    report: dict | None = None
    error: str | None = None


def predict_batch(items: Sequence[ScanInput], out_dir: str | os.PathLike, models: Sequence[LoadedModel],
                  options: PredictOptions = PredictOptions(), outputs: OutputOptions = OutputOptions(),
                  progress: bool = True) -> list[CaseOutcome]:
    """:func:`predict_case` for every input into ``out_dir/<case_id>.*``; a failed case is logged and
    recorded in its :class:`CaseOutcome`, and the others go on."""
    out_dir = Path(out_dir)
    results = []
    for item in tqdm(items, desc="predict", unit="scan", disable=not progress):
        try:
            report = predict_case(item, OutputPaths.in_folder(out_dir, item.case_id), models, options, outputs)
        except (PancreasSegError, ValueError, OSError) as exc:
            logger.error("%s: failed: %s", item.case_id, exc)
            results.append(CaseOutcome(item, error=str(exc)))
        else:
            results.append(CaseOutcome(item, report=report))
    return results
