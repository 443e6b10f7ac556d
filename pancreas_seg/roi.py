"""Region-of-interest prediction: the full-resolution network only where pancreas can be.

On the prepared network grid ``[Z, S, S]`` (:func:`~pancreas_seg.data.preprocess.prepare_volume`):

1. **Localise.** The CNN runs on every ``step``-th slice (``LOCALISE_EVERY_MM`` apart, and the last
   slice) of the whole grid. Pixels above ``LOCALISE_FRACTION x threshold`` are hits. No hit: the
   scan is predicted densely (a scan without visible pancreas costs dense time; nothing is lost).
2. **Trusted region** (:class:`Roi`): the slices from just after the last sample without hits
   before the first hit to just before the first sample without hits after the last hit, and the
   bounding box of all hits widened by ``INPLANE_SLACK_PX``. Only here is the result kept; the
   rest of the canvas is 0.
3. **Computed region.** The trusted box widened on every side by the CNN's receptive-field
   half-width plus its pooling alignment (:func:`receptive_field`, :func:`crop_box`), the crop
   starting on a multiple of the alignment so every max-pool window is the dense one: inside the
   trusted box the CNN output is then the dense output (same arithmetic up to round-off); each
   slice still stacks its real neighbours. The BiRNN (fixed H, W: rebuilt at the crop size with
   the same weights) runs over the trusted box widened by ``BIRNN_CONTEXT_PX`` and
   ``BIRNN_MARGIN_SLICES`` more slices on each side: its windows of the training run length
   (:func:`~pancreas_seg.networks.birnn_probabilities`) start elsewhere than in dense mode and its
   convolutions reach past the box, so there agreement is close, not exact (measured in
   ``benchmarks/predict_speed.py``).
4. **Check.** A mask (``> threshold``) that reaches an edge of the trusted region that is not the
   grid's edge means pancreas may lie outside it: the scan is predicted densely instead.

A region whose computed crop and slices cost at least ``DENSE_INSTEAD_FRACTION`` of dense CNN work
(a localiser answering on most slices; at 512 px the paper CNN's receptive field already widens
any box to the whole slice) is predicted densely at once: the same cost, and no risk of paying for
the region and then for a dense fallback. Every dense prediction after localisation reuses the
localisation slices' CNN outputs.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np

from pancreas_seg.networks import Box, ModelRunner

logger = logging.getLogger(__name__)

LOCALISE_EVERY_MM = 15.0  # mm between localisation slices; a pancreas spans several times this in z
LOCALISE_FRACTION = 0.5  # hits: probability above this fraction of the mask threshold
INPLANE_SLACK_PX = 16  # network-grid px added around the localised pixels (shape change between samples)
BIRNN_MARGIN_SLICES = 8  # slices past the trusted range given to the BiRNN (its state settles)
BIRNN_CONTEXT_PX = 16  # px past the trusted box given to the BiRNN (its memory grows with the area)
DENSE_INSTEAD_FRACTION = 0.8  # a region costing this share of dense CNN work is predicted densely at once


@dataclass(frozen=True)
class Roi:
    """Trusted region on the network grid: slices ``[z0, z1)`` and box ``(y0, y1, x0, x1)``."""

    z0: int
    z1: int
    box: Box

    def mirrored(self, size: int) -> "Roi":
        """The same region in the left-right (X) flipped grid of side ``size``."""
        y0, y1, x0, x1 = self.box
        return Roi(self.z0, self.z1, (y0, y1, size - x1, size - x0))


@dataclass
class RoiWork:
    """What the prediction did: ``mode`` ``"roi"``, ``"dense"`` (asked), or a dense fallback after
    localisation: ``"dense_no_pancreas"``, ``"dense_large_region"`` (the region would have cost
    nearly dense work), ``"dense_edge"`` (after the region's work); CNN slices and pixels processed
    as fractions of dense prediction's (above 1 after ``"dense_edge"``); ``located_by``: what
    found the region, ``"cnn"`` (the fine models on sparse slices) or ``"localiser"``; ``None``
    for dense prediction asked for. A fine model trained on crops around the pancreas reports
    ``"crop"`` (the localiser's slices and its square's share of the scan's in-plane area; the
    region in scan voxels) or ``"not_located"`` (the localiser found nothing: nothing computed)."""

    mode: str
    slices_fraction: float = 1.0
    pixels_fraction: float = 1.0
    roi: Roi | None = None
    located_by: str | None = None


def receptive_field(model: keras.Model) -> tuple[int, int]:
    """``(size, alignment)`` in input px of a 2D CNN's output pixels, from its layers.

    ``size``: side of the input square one output pixel depends on (3x3 conv adds 2 x jump,
    k x k deconv with stride s adds ``(ceil(k/s) - 1) x jump``, pools add ``(pool - 1) x jump``,
    bilinear upsampling 1 x jump; merges take the widest input). ``alignment``: the largest
    input px per feature px (product of pool strides): crops must start on its multiples.
    """
    fields = {id(tensor): (1.0, 1.0) for tensor in model.inputs}
    largest_jump = 1.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = [fields[id(t)] for t in keras.tree.flatten(layer.input)]
        size, jump = max(f[0] for f in inputs), max(f[1] for f in inputs)
        size, jump = _layer_field(layer, size, jump)
        largest_jump = max(largest_jump, jump)
        for tensor in keras.tree.flatten(layer.output):
            fields[id(tensor)] = (size, jump)
    sizes = [fields[id(t)][0] for t in keras.tree.flatten(model.outputs)]
    return int(math.ceil(max(sizes))), int(largest_jump)


def _layer_field(layer: keras.layers.Layer, size: float, jump: float) -> tuple[float, float]:
    if isinstance(layer, keras.Model):
        inner, inner_jump = receptive_field(layer)
        return size + (inner - 1) * jump, jump * inner_jump
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel, stride = layer.kernel_size[0], layer.strides[0]
        return size + (math.ceil(kernel / stride) - 1) * jump, jump / stride
    if isinstance(layer, keras.layers.Conv2D):
        kernel, stride, dilation = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
        return size + (kernel - 1) * dilation * jump, jump * stride
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return size + (layer.pool_size[0] - 1) * jump, jump * layer.strides[0]
    if isinstance(layer, keras.layers.UpSampling2D):
        return size + (jump if layer.interpolation != "nearest" else 0), jump / layer.size[0]
    return size, jump


def crop_margin(model: keras.Model) -> tuple[int, int]:
    """``(margin, alignment)``: px to compute past each side of a trusted box so that the CNN's
    output inside it is the dense one (receptive-field half-width plus one alignment step)."""
    size, alignment = receptive_field(model)
    return size // 2 + alignment, alignment


def crop_box(box: Box, margin: int, alignment: int, size: int) -> Box:
    """The computed crop of a trusted ``box`` on an ``size`` x ``size`` grid: ``margin`` px wider on
    each side, starting and ending on multiples of ``alignment``, clipped to the grid (whose own
    edges are the dense model's edges). A grid side that is no multiple of the alignment is kept whole."""
    if size % alignment:
        return 0, size, 0, size
    y0, y1, x0, x1 = box
    low = [max(0, (v - margin) // alignment * alignment) for v in (y0, x0)]
    high = [min(size, -(-(v + margin) // alignment) * alignment) for v in (y1, x1)]
    return low[0], high[0], low[1], high[1]


def localisation_slices(depth: int, slice_mm: float) -> list[int]:
    """Every ``LOCALISE_EVERY_MM / slice_mm``-th slice index of ``depth`` slices, and the last one."""
    step = max(1, int(LOCALISE_EVERY_MM // max(slice_mm, 1e-6)))
    samples = list(range(0, depth, step))
    return samples if samples[-1] == depth - 1 else samples + [depth - 1]


def trusted_region(samples: Sequence[int], hits: np.ndarray, depth: int) -> Roi | None:
    """The :class:`Roi` of localisation ``hits`` ``[len(samples), S, S]`` bool at slices ``samples``;
    ``None`` without hits."""
    hit_rows = np.flatnonzero(hits.any(axis=(1, 2)))
    if hit_rows.size == 0:
        return None
    first, last = hit_rows[0], hit_rows[-1]
    z0 = samples[first - 1] + 1 if first > 0 else 0
    z1 = samples[last + 1] if last + 1 < len(samples) else depth
    size = hits.shape[1]
    ys, xs = np.flatnonzero(hits.any(axis=(0, 2))), np.flatnonzero(hits.any(axis=(0, 1)))
    box = (max(0, ys[0] - INPLANE_SLACK_PX), min(size, ys[-1] + 1 + INPLANE_SLACK_PX),
           max(0, xs[0] - INPLANE_SLACK_PX), min(size, xs[-1] + 1 + INPLANE_SLACK_PX))
    return Roi(int(z0), int(z1), tuple(int(v) for v in box))


def touches_open_edge(mask: np.ndarray, roi: Roi, shape: tuple[int, int, int]) -> bool:
    """Whether a trusted-region ``mask`` ``[z1-z0, y1-y0, x1-x0]`` reaches an edge of the region that
    is not an edge of the grid ``shape`` ``[Z, S, S]`` (pancreas may go on outside)."""
    y0, y1, x0, x1 = roi.box
    faces = [(roi.z0 > 0, mask[0]), (roi.z1 < shape[0], mask[-1]),
             (y0 > 0, mask[:, 0]), (y1 < shape[1], mask[:, -1]),
             (x0 > 0, mask[:, :, 0]), (x1 < shape[2], mask[:, :, -1])]
    return any(open_face and face.any() for open_face, face in faces)


CnnRunner = Callable[[Sequence[int], Box], np.ndarray]  # (slice indices, crop) -> [n, h, w] float32
BirnnRunner = Callable[[np.ndarray], np.ndarray]  # [n, h, w] -> [n, h, w] float32


def roi_probability(cnn: CnnRunner, birnn: BirnnRunner | None, roi: Roi, depth: int, crop: Box) -> np.ndarray:
    """One model on a region: the CNN over ``crop`` for the trusted slices (and the BiRNN margin),
    the BiRNN over that slab within ``BIRNN_CONTEXT_PX`` of the trusted box; returns the trusted
    part ``[z1-z0, y1-y0, x1-x0]`` float32."""
    margin = BIRNN_MARGIN_SLICES if birnn is not None else 0
    first, stop = max(0, roi.z0 - margin), min(depth, roi.z1 + margin)
    probability = cnn(range(first, stop), crop)
    y0, y1, x0, x1 = roi.box
    cy0, cy1, cx0, cx1 = crop
    if birnn is not None:
        by0, bx0 = max(cy0, y0 - BIRNN_CONTEXT_PX), max(cx0, x0 - BIRNN_CONTEXT_PX)
        by1, bx1 = min(cy1, y1 + BIRNN_CONTEXT_PX), min(cx1, x1 + BIRNN_CONTEXT_PX)
        probability = birnn(probability[:, by0 - cy0:by1 - cy0, bx0 - cx0:bx1 - cx0])
        cy0, cx0 = by0, bx0
    return probability[roi.z0 - first:roi.z1 - first, y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]


def _localise(runners: Sequence[ModelRunner], volume: np.ndarray, slice_mm: float,
              threshold: float) -> tuple[Roi | None, list[dict[int, np.ndarray]]]:
    """The trusted region from the mean CNN probability of the models on the localisation slices, and
    each model's ``{slice: [S, S] probability}`` there (dense results, reused inside the region)."""
    depth, height, width = volume.shape
    samples = localisation_slices(depth, slice_mm)
    outputs = [runner.cnn_slices(volume, samples, (0, height, 0, width)) for runner in runners]
    hits = sum(outputs) > LOCALISE_FRACTION * threshold * len(runners)
    return trusted_region(samples, hits, depth), [dict(zip(samples, output)) for output in outputs]


def roi_probabilities(runners: Sequence[ModelRunner], volume: np.ndarray, slice_mm: float, threshold: float,
                      tta: bool = False, roi_margin: int | None = None, timings: dict[str, float] | None = None,
                      located: Callable[[], Roi | None] | None = None
                      ) -> tuple[np.ndarray | None, RoiWork, list[dict[int, np.ndarray]]]:
    """The mean probability of the models (and, with ``tta``, of the flipped views) on the region of
    interest of a prepared ``[Z, S, S]`` volume, 0 elsewhere; ``None`` when the scan must be
    predicted densely (nothing localised, a region costing nearly dense work, or a mask reaching
    the region's open edge; the work then counts the dense prediction that follows, which reuses the
    localisation). Also, per model, ``{slice: [S, S] CNN probability}`` of the slices computed on the
    whole grid (localisation), for that dense prediction.

    ``slice_mm``: slice spacing. ``roi_margin``: px computed past the trusted box, ``None`` = the
    CNN's receptive-field half-width (the dense output inside the box). ``located``: a region
    finder (a trained localiser, :func:`pancreas_seg.localiser.locate`) used instead of the
    models' own sparse-slice localisation; its region is trusted as it is. Localisation time is
    added to ``timings["localise"]`` (and, by the fine runners, to ``"cnn"``).
    """
    timings = {} if timings is None else timings
    depth, size, _ = volume.shape
    start = time.perf_counter()
    if located is None:
        roi, known = _localise(runners, volume, slice_mm, threshold)
    else:
        roi, known = located(), [{} for _ in runners]
    samples = len(known[0])
    timings["localise"] = timings.get("localise", 0.0) + time.perf_counter() - start
    by = "cnn" if located is None else "localiser"
    # a fallback before the region's work costs dense work (1): the localisation slices are reused
    if roi is None:
        logger.info("localisation found no pancreas: predicting every slice")
        return None, RoiWork("dense_no_pancreas", located_by=by), known
    margins = [_margin(runner, roi_margin) for runner in runners]
    crops = [crop_box(roi.box, *margin, size) for margin in margins]
    if region_share(roi, crops, depth, size, any(r.has_birnn for r in runners)) >= DENSE_INSTEAD_FRACTION:
        logger.info("the region of interest would cost nearly dense work: predicting every slice")
        return None, RoiWork("dense_large_region", roi=roi, located_by=by), known
    views = (False, True) if tta else (False,)
    dense = len(runners) * len(views) * depth
    y0, y1, x0, x1 = roi.box
    total = np.zeros((roi.z1 - roi.z0, y1 - y0, x1 - x0), np.float32)
    slices, pixels = len(runners) * samples, len(runners) * samples * size * size
    for runner, model_known, margin in zip(runners, known, margins):
        for flipped in views:
            part, done = _roi_view(runner, volume[:, :, ::-1] if flipped else volume,
                                   roi.mirrored(size) if flipped else roi, {} if flipped else model_known, margin)
            total += part[:, :, ::-1] if flipped else part
            slices, pixels = slices + done[0], pixels + done[1]
    total /= len(runners) * len(views)
    if touches_open_edge(total > threshold, roi, volume.shape):
        logger.info("the mask reaches the edge of the region of interest: predicting every slice")
        rest = 1.0 - len(runners) * samples / dense  # the dense prediction after the region's work
        return None, RoiWork("dense_edge", slices / dense + rest, pixels / (dense * size * size) + rest, roi, by), known
    canvas = np.zeros(volume.shape, np.float32)
    canvas[roi.z0:roi.z1, y0:y1, x0:x1] = total
    return canvas, RoiWork("roi", slices / dense, pixels / (dense * size * size), roi, by), known


def _margin(runner: ModelRunner, roi_margin: int | None) -> tuple[int, int]:
    """``(margin, alignment)`` of a model's crops: its receptive field's unless ``roi_margin``."""
    margin, alignment = crop_margin(runner.cnn)
    return (margin if roi_margin is None else roi_margin), alignment


def region_share(roi: Roi, crops: Sequence[Box], depth: int, size: int, birnn: bool) -> float:
    """CNN work of predicting ``roi`` with each model's crop, as a share of dense work: the trusted
    slices (and the BiRNN's margin slices) times the crop's pixels, averaged over the models."""
    margin = BIRNN_MARGIN_SLICES if birnn else 0
    slices = min(depth, roi.z1 + margin) - max(0, roi.z0 - margin)
    pixels = [(y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in crops]
    return slices * float(np.mean(pixels)) / (depth * size * size)


def _roi_view(runner: ModelRunner, volume: np.ndarray, roi: Roi, known: dict[int, np.ndarray],
              margin: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """One model on one view's region: (trusted probabilities, (CNN slices, CNN pixels) computed).

    ``known``: whole-grid CNN probabilities of some slices (localisation), cropped instead of computed.
    """
    crop = crop_box(roi.box, *margin, volume.shape[1])
    height, width = crop[1] - crop[0], crop[3] - crop[2]
    computed = []

    def run_cnn(indices: Sequence[int], box: Box) -> np.ndarray:
        y0, y1, x0, x1 = box
        missing = [k for k in indices if k not in known]
        computed.append(len(missing))
        fresh = dict(zip(missing, runner.cnn_slices(volume, missing, box)))
        return np.stack([fresh[k] if k in fresh else known[k][y0:y1, x0:x1] for k in indices])

    part = roi_probability(run_cnn, runner.birnn if runner.has_birnn else None, roi, volume.shape[0], crop)
    return part, (sum(computed), sum(computed) * height * width)
