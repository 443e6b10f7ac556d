"""Preprocessing shared by training and inference (paper Sec. IV-A; windows and crops are ours).

Intensities: CT HU window scaled to [0, 1]; MRI per-volume percentiles scaled to [0, 1].
Geometry: an optional square in-plane crop (body bounding box, fixed field of view, or a square
around the pancreas for a fine stage trained on crops), then a resize to the training resolution (images anti-aliased linear, masks nearest-neighbour).
:class:`InplaneTransform` records the crop so predictions can be mapped back onto the scan's
own grid.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from pancreas_seg.config import DataConfig
from pancreas_seg.vocabulary import PANCREAS_CROP

CT_BODY_THRESHOLD_HU = -500.0  # air/body boundary used to find the body outline
MRI_BODY_PERCENTILE = 99.0  # the "upper percentile" of MRI intensities (robust maximum)
MRI_BODY_FRACTION = 0.1  # MRI body = voxels above this fraction of the upper percentile
BODY_MARGIN_PX = 4  # pixels kept around the body bounding box
PANCREAS_CROP_MARGIN_MM = 10.0  # mm kept around the manual mask's box when training on crops around the pancreas

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), end exclusive


def normalize_intensity(image: np.ndarray, modality: str, config: DataConfig) -> np.ndarray:
    """``[Z, Y, X]`` HU (CT) or arbitrary MRI units → float32 in [0, 1] (a new array). CT is scaled in
    place in float32 (one volume of working memory, as large CTs need); MRI in float64, as before."""
    if modality == "CT":
        low, high = config.hu_window
        scaled = image.astype(np.float32)  # always a copy: scaled in place
        np.subtract(scaled, np.float32(low), out=scaled)
        np.divide(scaled, np.float32(high - low), out=scaled)
        return np.clip(scaled, 0.0, 1.0, out=scaled)
    volume = image.astype(np.float32, copy=False)
    low, high = np.percentile(volume, config.mri_percentiles)
    if high <= low:
        high = low + 1.0
    return np.clip((volume - low) / (high - low), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class InplaneTransform:
    """Square crop box ``(y0, y1, x0, x1)`` in original pixels (may reach past the image, zero
    padded) and the output size; maps ``[Z, Y, X]`` ↔ ``[Z, size, size]``."""

    original_shape: tuple[int, int]
    box: tuple[int, int, int, int]
    size: int

    def to_dict(self) -> dict:
        return {"original_shape": list(self.original_shape), "box": list(self.box), "size": self.size}

    @classmethod
    def from_dict(cls, data: dict) -> "InplaneTransform":
        return cls(tuple(data["original_shape"]), tuple(data["box"]), int(data["size"]))

    def to_scan_box(self, box: Box) -> Box:
        """A box on the network grid ``(y0, y1, x0, x1)`` in the scan's pixels (outward rounded,
        clipped to the scan)."""
        y0, y1, x0, x1 = self.box
        scale = (y1 - y0) / self.size
        height, width = self.original_shape
        return (max(0, y0 + int(np.floor(box[0] * scale))), min(height, y0 + int(np.ceil(box[1] * scale))),
                max(0, x0 + int(np.floor(box[2] * scale))), min(width, x0 + int(np.ceil(box[3] * scale))))

    def grid_mm(self, spacing: tuple[float, float, float]) -> tuple[float, float]:
        """``(slice, pixel)`` spacing in mm of the network grid of a scan of ``spacing`` ``(z, y, x)`` mm."""
        y0, y1, _, _ = self.box
        return float(spacing[0]), (y1 - y0) * float(spacing[1]) / self.size

    def _crop(self, volume: np.ndarray, fill: float) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        height, width = self.original_shape
        pad = ((0, 0), (max(0, -y0), max(0, y1 - height)), (max(0, -x0), max(0, x1 - width)))
        padded = np.pad(volume, pad, constant_values=fill) if any(p != (0, 0) for p in pad) else volume
        oy, ox = pad[1][0], pad[2][0]
        return padded[:, y0 + oy:y1 + oy, x0 + ox:x1 + ox]

    def apply_image(self, volume: np.ndarray, copy: bool = True) -> np.ndarray:
        """``[Z, Y, X]`` float → ``[Z, size, size]`` float32 (anti-aliased linear resize). With ``copy``
        False a float32 crop that needs no resize may be a view of ``volume``."""
        cropped = self._crop(volume, fill=0.0)
        shape = (cropped.shape[0], self.size, self.size)
        if cropped.shape == shape:
            return cropped.astype(np.float32, copy=copy)
        return resize(cropped, shape, order=1, anti_aliasing=cropped.shape[1] > self.size,
                      preserve_range=True).astype(np.float32)

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """``[Z, Y, X]`` labels → ``[Z, size, size]`` uint8, nearest neighbour."""
        cropped = self._crop(mask.astype(np.uint8), fill=0)
        shape = (cropped.shape[0], self.size, self.size)
        if cropped.shape == shape:
            return cropped
        return resize(cropped, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.uint8)

    def invert(self, probability: np.ndarray) -> np.ndarray:
        """``[Z, size, size]`` map on the network grid → ``[Z, Y, X]`` float32 on the scan's grid.

        Slices that are zero throughout (outside the region of interest) stay zero without being
        resized: the linear resize works slice by slice, so the result is the same, only sooner."""
        y0, y1, x0, x1 = self.box
        height, width = self.original_shape
        source = probability.astype(np.float32, copy=False)
        kept = np.flatnonzero(source.reshape(len(source), -1).any(axis=1))
        out = np.zeros((probability.shape[0], height, width), np.float32)
        if kept.size == 0:
            return out
        shape = (kept.size, y1 - y0, x1 - x0)
        box_map = source[kept]
        if box_map.shape != shape:
            box_map = resize(box_map, shape, order=1, anti_aliasing=False, preserve_range=True)
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(height, y1), min(width, x1)
        out[kept, sy0:sy1, sx0:sx1] = box_map[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        return out


def body_box(image: np.ndarray, modality: str) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` of the largest connected body region over all slices."""
    if modality == "CT":
        body = image > CT_BODY_THRESHOLD_HU
    else:
        body = image > MRI_BODY_FRACTION * np.percentile(image, MRI_BODY_PERCENTILE)
    footprint = body.any(axis=0)
    labels, count = ndimage.label(footprint)
    if count == 0:
        return 0, image.shape[1], 0, image.shape[2]
    largest = 1 + int(np.argmax(ndimage.sum(footprint, labels, range(1, count + 1))))
    rows, cols = ndimage.find_objects(labels)[largest - 1]
    return rows.start, rows.stop, cols.start, cols.stop


def mask_region(mask: np.ndarray, spacing: tuple[float, float, float],
                margin_mm: float = PANCREAS_CROP_MARGIN_MM) -> Box | None:
    """In-plane box of ``mask`` ``[Z, Y, X]`` over all its slices, ``margin_mm`` wider on each side
    (clipped to the image); ``None`` for an empty mask."""
    ys, xs = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
    if ys.size == 0:
        return None
    margin = int(np.ceil(margin_mm / float(spacing[1])))
    height, width = mask.shape[1:]
    return (max(0, int(ys[0]) - margin), min(height, int(ys[-1]) + 1 + margin),
            max(0, int(xs[0]) - margin), min(width, int(xs[-1]) + 1 + margin))


def _square(y0: int, y1: int, x0: int, x1: int, margin: int, least: int = 0) -> tuple[int, int, int, int]:
    side = max(y1 - y0, x1 - x0, least) + 2 * margin
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    return cy - side // 2, cy - side // 2 + side, cx - side // 2, cx - side // 2 + side


def plan_inplane(image: np.ndarray, spacing: tuple[float, float, float], modality: str,
                 config: DataConfig, region: Box | None = None) -> InplaneTransform:
    """Choose the in-plane crop of ``image`` ``[Z, Y, X]`` for ``config.crop``.

    ``region``: for the ``"pancreas"`` crop, the box (scan px) the square must hold and is centred
    on (a localiser's region, or :func:`mask_region` in training); without one (a pancreas-free
    training case) the square is centred on the body. Its side is at least ``config.fov_mm``, or
    the slice's longer side where the slice is smaller (a small field of view is not padded out)."""
    height, width = image.shape[1:]
    if config.crop == "none":
        box = _square(0, height, 0, width, margin=0)
    elif config.crop == "body":
        box = _square(*body_box(image, modality), margin=BODY_MARGIN_PX)
    elif config.crop == "fov":
        side = int(round(config.fov_mm / spacing[1]))
        box = _square(height // 2 - side // 2, height // 2 - side // 2 + side,
                      width // 2 - side // 2, width // 2 - side // 2 + side, margin=0)
    elif config.crop == PANCREAS_CROP:
        around = region if region is not None else body_box(image, modality)
        least = min(int(round(config.fov_mm / float(spacing[1]))), max(height, width))
        box = _square(*around, margin=0, least=least)
    else:
        raise ValueError(f"unknown crop {config.crop!r}; choose none, body, fov or pancreas")
    return InplaneTransform((height, width), box, config.input_size)


@dataclass
class PreparedCase:
    """A case on the network grid: image ``[Z, S, S]`` float32 in [0, 1], mask ``[Z, S, S]`` uint8."""

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    transform: InplaneTransform

    @property
    def pancreas_slices(self) -> np.ndarray:
        """Indices of slices with pancreas voxels."""
        return np.flatnonzero(self.mask.any(axis=(1, 2)))


def prepare_volume(image: np.ndarray, spacing: tuple[float, float, float], modality: str,
                   config: DataConfig, region: Box | None = None) -> tuple[np.ndarray, InplaneTransform]:
    """Normalise and crop/resize a scan for the network: ``[Z, Y, X]`` → ``[Z, S, S]`` float32
    (``region``: :func:`plan_inplane`'s)."""
    transform = plan_inplane(image, spacing, modality, config, region)
    return transform.apply_image(normalize_intensity(image, modality, config), copy=False), transform


def slice_stack(volume: np.ndarray, index: int, context: int) -> np.ndarray:
    """``context`` neighbouring slices centred on ``index`` as channels ``[S, S, context]``;
    slices past the ends are replicated edges (Sec. III-A: 3 neighbouring slices)."""
    half = context // 2
    indices = np.clip(np.arange(index - half, index - half + context), 0, volume.shape[0] - 1)
    return np.moveaxis(volume[indices], 0, -1)


PREPROCESSING_FIELDS = ("modality", "hu_window", "mri_percentiles", "crop", "fov_mm", "input_size")


def preprocessing_key(config: DataConfig) -> dict[str, Any]:
    """The :class:`DataConfig` fields that define a prepared volume (:func:`prepare_volume`).

    Two configs with equal keys see the same ``[Z, S, S]`` volume: prepared-case caches are
    keyed by it, and only models with equal keys can be averaged at inference. The slices
    stacked around each one (``context_slices``) are not part of it: each model stacks its own.
    """
    return {name: getattr(config, name) for name in PREPROCESSING_FIELDS}


def preprocessing_hash(config: DataConfig, length: int = 12) -> str:
    """Short stable hash of :func:`preprocessing_key`: the name of a prepared-case cache."""
    text = json.dumps(preprocessing_key(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
