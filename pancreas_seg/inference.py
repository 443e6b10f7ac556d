"""Prediction of pancreas probabilities and masks for a scan in memory (paper Sec. III, IV-A:
testing of PNet-MSA and CNN-RNN).

Pipeline of one scan (:func:`predict_scan`)::

    Scan [Z, Y, X] --to_canonical (axial slices)--> --prepare_volume (the run's DataConfig)-->
      [Z, S, S] float32 in [0, 1]
      --2D CNN over 3-slice stacks, batch by batch--> [Z, S, S] probabilities ("fused", Eq. 3)
      --BiRNN over the slice sequence [1, Z, S, S, 1] (cnn_rnn only, Sec. III-B)--> [Z, S, S]
      --mean over models (and over the left-right flipped input with --tta)--> [Z, S, S]
      --InplaneTransform.invert--> [Z, Y, X] --threshold (> t), optional largest component--> uint8 mask
      --Reorientation.restore--> the scan's own grid

On a CPU the networks run by default only on the region that can hold pancreas
(:mod:`pancreas_seg.roi`: localised on sparse slices, widened by the CNN's receptive field; 0
elsewhere), in bfloat16 where the CPU makes it faster (:mod:`pancreas_seg.networks`); on a GPU, and
with ``PredictOptions(dense=True)``, they run on every slice and pixel. Memory stays bounded by a
few ``[Z, S, S]`` / ``[Z, Y, X]`` float32 volumes: the CNN sees a batch of stacks sized to its
feature maps' memory and only its one-channel output is kept.

A model (:func:`load_model`) is a run folder (``config.json`` + ``model.keras``) or a ``.keras``
file with ``config.json`` beside it (:mod:`pancreas_seg.run_folder`). Reading scans from files and
writing the outputs is :mod:`pancreas_seg.predict`'s work.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from nibabel.affines import voxel_sizes

from pancreas_seg.config import DEFAULT_PREDICT_BATCH_SIZE
from pancreas_seg.data.preprocess import InplaneTransform, prepare_volume
from pancreas_seg.errors import InputError
from pancreas_seg.io.orientation import to_canonical
from pancreas_seg.io.scan import Scan
from pancreas_seg.masks import largest_component
from pancreas_seg.metrics import abnormal_shape_changes
from pancreas_seg.models.build import on_gpu
from pancreas_seg.networks import LoadedModel, ModelRunner, memory_batch_size, resolve_precision, resolve_runtime, timed
from pancreas_seg.localiser import Margin, locate, locate_in_scan
from pancreas_seg.roi import Roi, RoiWork, roi_probabilities
from pancreas_seg.vocabulary import PANCREAS_CROP, Precision, Runtime

logger = logging.getLogger(__name__)

CNN_CHUNK_BATCHES = 8  # CNN batches per call of the dense pass: bounded memory, the same batches as one call

# ---------------------------------------------------------------------------
# prediction
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictOptions:
    """How to run the networks on a scan in memory (how to read it is :class:`pancreas_seg.predict.ReadOptions`).

    Attributes:
        batch_size: 3-slice stacks per CNN call.
        threshold: probability threshold of the mask (``> threshold``); ``None`` = the first model's
            ``config.train.threshold``.
        tta: average with the prediction of the left-right flipped input, flipped back.
        largest_component: keep only the largest 26-connected component of the mask.
        dense: run the networks on every slice and pixel instead of the region of interest
            (:mod:`pancreas_seg.roi`); ``None`` (default): dense on a GPU, where every new crop
            shape costs a compilation and whole slices are already fast (docs/PERFORMANCE.md), the
            region of interest elsewhere.
        precision: arithmetic of the CNNs, ``"auto"`` (bfloat16 where the CPU makes it faster,
            float32 where the network's map is up-sampled to the scan: :func:`precision_for_grid`),
            ``"float32"`` or ``"bfloat16"`` (:func:`resolve_precision`).
        localiser: find the region with the first model's trained localiser when it has one
            (:mod:`pancreas_seg.localiser`); ``False``: with the fine models on sparse slices.
        runtime: what runs the CNNs: ``"auto"`` (OpenVINO on a CPU where it is installed, else
            Keras), ``"keras"`` or ``"openvino"`` (:func:`resolve_runtime`); the BiRNN runs in Keras.
        roi_margin: network-grid px computed past each side of the region of interest; ``None``
            (default) = the CNN's receptive-field half-width, which makes the region's CNN output
            the dense one. Smaller is faster and only approximately dense (for measurements).

    ``batch_size`` is an upper bound: fewer stacks go at once when their feature maps would need
    more than ``CNN_MEMORY_BUDGET_BYTES`` (:func:`memory_batch_size`).
    """

    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE
    threshold: float | None = None
    tta: bool = False
    largest_component: bool = False
    dense: bool | None = None
    precision: Precision = "auto"
    roi_margin: int | None = None
    runtime: Runtime = "auto"
    localiser: bool = True


@dataclass
class Prediction:
    """Result on the scan's grid: probability ``[Z, Y, X]`` float32, mask ``[Z, Y, X]`` uint8 (0/1).

    ``work``: dense or region of interest, and the share of slices and pixels the CNN processed.

    ``compute``: what ran the CNN (``runtime``, ``precision`` as resolved).

    ``abnormal_changes_mm``: world superior-inferior positions (mm) of the axial slices whose
    mask changes abnormally from the slice below (Sec. IV-D detector, CT only; ``None`` for MRI,
    where the paper defines no threshold).
    """

    probability: np.ndarray
    mask: np.ndarray
    threshold: float
    timings: dict[str, float] = field(default_factory=dict)
    abnormal_changes_mm: list[float] | None = None
    work: RoiWork | None = None
    compute: dict[str, str] = field(default_factory=dict)  # the CNN's runtime and precision as run


def model_probabilities(runner: ModelRunner, volume: np.ndarray, tta: bool = False,
                        known: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """One model (CNN, then its BiRNN if any) on every slice and pixel of a prepared ``[Z, S, S]``
    volume (dense) -> ``[Z, S, S]`` float32.

    With ``tta`` the mean with the prediction of the left-right (X) flipped volume, flipped back.
    ``known``: ``{slice: [S, S]}`` CNN probabilities already computed on the whole grid (localisation),
    used instead of computing them again.
    """
    views: list[tuple[Callable[[np.ndarray], np.ndarray], dict[int, np.ndarray]]] = [(lambda v: v, known or {})]
    if tta:
        views.append((lambda v: v[:, :, ::-1], {}))  # its own inverse
    total = np.zeros(volume.shape, np.float32)
    for view, view_known in views:
        probability = _cnn_with_known(runner, view(volume), view_known)
        if runner.has_birnn:
            probability = runner.birnn(probability)
        total += view(probability)
        del probability
    total /= len(views)
    return total


def _cnn_with_known(runner: ModelRunner, volume: np.ndarray, known: dict[int, np.ndarray]) -> np.ndarray:
    """The CNN on every slice of ``volume``, computing only the slices ``known`` lacks,
    :data:`CNN_CHUNK_BATCHES` batches at a time (a multiple of the batch: only the last one is padded)."""
    depth, height, width = volume.shape
    probability = np.empty(volume.shape, np.float32)
    missing = [k for k in range(depth) if k not in known]
    batch = memory_batch_size(runner.cnn, height, width, runner.batch_size)
    chunk = CNN_CHUNK_BATCHES * batch
    for start in range(0, len(missing), chunk):
        part = missing[start:start + chunk]
        probability[part] = runner.cnn_slices(volume, part, (0, height, 0, width))
    for k, slice_probability in known.items():
        probability[k] = slice_probability
    return probability


def postprocess(probability: np.ndarray, transform: InplaneTransform, threshold: float,
                keep_largest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Network-grid probabilities ``[Z, S, S]`` -> scan grid: ``(probability [Z, Y, X] float32, mask uint8)``.

    The mask is ``probability > threshold`` (as the training DSC, Sec. IV-C), optionally reduced to
    its largest connected component.
    """
    on_scan = transform.invert(probability)
    mask = (on_scan > threshold).astype(np.uint8)
    if keep_largest:
        mask = largest_component(mask).astype(np.uint8)
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
        options: batch size, threshold, TTA, largest component, dense or region of interest, precision.
        timings: stage durations in seconds are added here (preprocess, cnn, birnn, postprocess; the
            CNN's localisation pass is part of cnn and also on its own in localise).

    The networks run on the axial slices of the scan brought to the canonical storage orientation
    (:func:`~pancreas_seg.io.orientation.to_canonical`), whatever axis order the file had; the
    result is put back on the scan's own grid.

    Returns:
        :class:`Prediction` on exactly the scan's grid.

    Raises:
        InputError: the scan's modality differs from the models'.
    """
    timings = {} if timings is None else timings
    check_modality(scan, models, scan.source.get("path", "scan"))
    data = models[0].config.data
    with timed(timings, "preprocess"):
        canonical, reorientation = to_canonical(scan)
    region = _crop_region(models[0], canonical, options, timings) if data.crop == PANCREAS_CROP else None
    with timed(timings, "preprocess"):
        volume, transform = prepare_volume(canonical.array, canonical.spacing, canonical.modality, data,
                                           None if region is None else region.box)
        canonical_affine, grid_mm = canonical.affine, transform.grid_mm(canonical.spacing)
        options = precision_for_grid(options, grid_mm[1], canonical.spacing)
        del canonical
    compute: dict[str, str] = {}
    if data.crop == PANCREAS_CROP:
        total, threshold, work = crop_probability(volume, transform, region, models, options, timings, compute)
    else:
        total, threshold, work = network_probability(volume, grid_mm, models, options, timings, compute)
    del volume
    with timed(timings, "postprocess"):
        probability, mask = postprocess(total, transform, threshold, options.largest_component)
        del total
        changes = abnormal_changes_mm(mask, canonical_affine) if scan.modality == "CT" else None
        probability, mask = reorientation.restore(probability), reorientation.restore(mask)
    for stage in ("cnn", "birnn"):
        timings.setdefault(stage, 0.0)
    return Prediction(probability, mask, threshold, timings, changes, work, compute)


def precision_for_grid(options: PredictOptions, pixel_mm: float, spacing: tuple[float, float, float]
                       ) -> PredictOptions:
    """``options`` with an ``"auto"`` precision resolved for a network grid of ``pixel_mm`` on a scan
    of ``spacing`` ``(z, y, x)`` mm: float32 where the map is up-sampled to the scan
    (:func:`~pancreas_seg.networks.resolve_precision`)."""
    upsampling = pixel_mm / min(float(spacing[1]), float(spacing[2]))
    runtime = resolve_runtime(options.runtime)
    return replace(options, precision=resolve_precision(options.precision, runtime, upsampling))


def network_probability(volume: np.ndarray, grid_mm: tuple[float, float], models: Sequence[LoadedModel],
                        options: PredictOptions = PredictOptions(),
                        timings: dict[str, float] | None = None, compute: dict[str, str] | None = None
                        ) -> tuple[np.ndarray, float, RoiWork]:
    """The mean probability of ``models`` on a volume already on the network grid ``[Z, S, S]``
    (``prepare_volume`` with the models' data config; only read), on the region of interest or
    dense as ``options`` say; with the mask threshold and the work done.

    ``grid_mm``: the grid's slice and pixel spacing (``InplaneTransform.grid_mm``): localisation
    samples a slice every few mm, a localiser's margin is in mm. The region comes from the first
    model's localiser when it has one, else from the fine CNN on sparse slices (:mod:`pancreas_seg.roi`).
    ``compute`` receives the runtime and precision the CNNs ran in.
    """
    if models[0].config.data.crop == PANCREAS_CROP:
        raise ValueError(f"{models[0].path} was trained on crops around the pancreas: its volume is cut around "
                         "the localiser's region, so predict the scan with predict_scan")
    timings = {} if timings is None else timings
    threshold = default_threshold(models) if options.threshold is None else options.threshold
    runtime, precision = _compute(options)
    runners = _runners(models, options, timings, compute)
    total, work, known = None, RoiWork("dense"), [{} for _ in models]
    if not (on_gpu() if options.dense is None else options.dense):
        located = _localiser_region(models[0], volume, grid_mm, precision, runtime, options.batch_size) \
            if options.localiser else None
        total, work, known = roi_probabilities(runners, volume, grid_mm[0], threshold, options.tta,
                                               options.roi_margin, timings, located)
    if total is None:
        total = np.zeros(volume.shape, np.float32)
        for runner, model_known in zip(runners, known):
            total += model_probabilities(runner, volume, options.tta, known=model_known)
        total /= len(models)
    return total, threshold, work


def crop_probability(volume: np.ndarray, transform: InplaneTransform, region: Roi | None,
                     models: Sequence[LoadedModel], options: PredictOptions = PredictOptions(),
                     timings: dict[str, float] | None = None, compute: dict[str, str] | None = None
                     ) -> tuple[np.ndarray, float, RoiWork]:
    """The mean probability of fine ``models`` trained on crops around the pancreas, on the
    slices of the localiser's ``region`` (scan voxels) of their volume ``[Z, S, S]`` (the square
    ``transform`` cut around it); 0 on the other slices, and everywhere when the localiser found
    nothing (work ``"not_located"``). The networks see what they were trained on, so no
    receptive-field margin is computed past the square."""
    timings = {} if timings is None else timings
    threshold = default_threshold(models) if options.threshold is None else options.threshold
    total = np.zeros(volume.shape, np.float32)
    if region is None:
        return total, threshold, RoiWork("not_located", 0.0, 0.0, None, "localiser")
    runners = _runners(models, options, timings, compute)
    for runner in runners:  # with its neighbours, so that the slab's end slices stack their real ones
        half = runner.model.config.data.context_slices // 2
        first, stop = max(0, region.z0 - half), min(len(volume), region.z1 + half)
        slab = model_probabilities(runner, volume[first:stop], options.tta)
        total[region.z0:region.z1] += slab[region.z0 - first:region.z1 - first]
    total /= len(runners)
    height, width = transform.original_shape
    y0, y1, x0, x1 = transform.box
    inside = (min(height, y1) - max(0, y0)) * (min(width, x1) - max(0, x0))
    return total, threshold, RoiWork("crop", (region.z1 - region.z0) / len(volume), inside / (height * width),
                                     region, "localiser")


def _compute(options: PredictOptions) -> tuple[str, str]:
    runtime = resolve_runtime(options.runtime)
    return runtime, resolve_precision(options.precision, runtime)


def _runners(models: Sequence[LoadedModel], options: PredictOptions, timings: dict[str, float],
             compute: dict[str, str] | None) -> list[ModelRunner]:
    """One runner per model in the runtime and precision ``options`` resolve to (named in ``compute``)."""
    runtime, precision = _compute(options)
    runners = [ModelRunner(model, precision, options.batch_size, timings, runtime) for model in models]
    if compute is not None:
        compute.update(runtime=runtime, precision=runners[0].computed_precision)
    return runners


def _crop_region(model: LoadedModel, canonical: Scan, options: PredictOptions,
                 timings: dict[str, float]) -> Roi | None:
    """The localiser's region (scan voxels) for a fine model trained on crops; its seconds in
    ``timings["localise"]``.

    Raises:
        InputError: the model has no localiser, or the options ask for whole slices (dense, or no
            localiser): it was trained on crops and cannot be run on whole slices."""
    if model.localiser is None:
        raise InputError(model.path, "was trained on crops around the pancreas (data.crop = pancreas) and has no "
                                     "localiser to find them; add one with pancreas-seg train-localiser RUN")
    if options.dense or not options.localiser:
        raise InputError(model.path, "was trained on crops around the pancreas (data.crop = pancreas): it predicts "
                                     "only on its localiser's region, so --dense and --no-localiser do not apply; "
                                     "train with --fine-stage whole-slice for the paper's whole-slice inference")
    runtime, precision = _compute(options)
    runner = ModelRunner(model.localiser, precision, options.batch_size, {}, runtime)
    with timed(timings, "localise"):
        return locate_in_scan(runner, canonical.array, canonical.spacing, Margin.from_dict(model.localiser.margin))


def _localiser_region(model: LoadedModel, volume: np.ndarray, grid_mm: tuple[float, float], precision: str,
                      runtime: str, batch_size: int) -> Callable[[], Roi | None] | None:
    """The localiser's region finder for ``roi_probabilities`` (its seconds in ``timings["localise"]``,
    not in ``"cnn"``), or ``None`` when ``model`` has no localiser."""
    if model.localiser is None:
        return None
    runner = ModelRunner(model.localiser, precision, batch_size, {}, runtime)
    margin = Margin.from_dict(model.localiser.margin)
    return lambda: locate(runner, volume, margin, *grid_mm)


def abnormal_changes_mm(mask: np.ndarray, affine: np.ndarray) -> list[float]:
    """Superior-inferior world positions (mm) of the slices τ of an axial ``[Z, Y, X]`` mask with
    an abnormal shape change from slice τ−1 (:func:`pancreas_seg.metrics.abnormal_shape_changes`)."""
    spacing = tuple(float(v) for v in voxel_sizes(affine)[::-1])
    flagged = np.flatnonzero(abnormal_shape_changes(mask, spacing)) + 1
    return [round(float((affine @ [0.0, 0.0, float(t), 1.0])[2]), 3) for t in flagged]
