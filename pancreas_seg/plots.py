"""Figures. Matplotlib's object API with the Agg canvas only (no pyplot state, no display needed).

:func:`qc_figure`: the quality-control picture of one prediction (axial + coronal slice, mask overlay).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pancreas_seg.io.atomic import atomic_write
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

QC_DISPLAY_PERCENTILES = (1.0, 99.0)  # %, grey-level window of the QC image
QC_FIGSIZE_IN = (10.0, 5.0)  # inches, width x height
QC_DPI = 100
QC_MASK_COLOUR = (1.0, 0.2, 0.1)  # RGB of the mask overlay
QC_MASK_ALPHA = 0.45


def _window(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, QC_DISPLAY_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def qc_figure(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
              path: str | os.PathLike, title: str | None = None) -> Path:
    """PNG with an axial and a coronal slice of ``image``, ``mask`` overlaid in colour; atomic write.

    The axial slice is the one with the largest mask area, the coronal slice the row ``y`` with
    the largest mask area; with an empty mask, the middle slice and row. Pixels are shown at
    their physical aspect ratio, slice index increasing upwards in the coronal view.

    Args:
        image: ``[Z, Y, X]`` scan (HU or MRI units).
        mask: ``[Z, Y, X]`` nonzero = pancreas, same shape.
        spacing: voxel size ``(z, y, x)`` in mm.
        path: ``.png`` file; parent folders are created.
        title: optional figure title.

    Returns:
        ``path`` as a Path.
    """
    if image.shape != mask.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be the same [Z, Y, X] shape")
    path = Path(path)
    binary = mask != 0
    if binary.any():
        k = int(np.argmax(binary.sum(axis=(1, 2))))
        row = int(np.argmax(binary.sum(axis=(0, 2))))
    else:
        k, row = image.shape[0] // 2, image.shape[1] // 2
    low, high = _window(image)
    dz, dy, dx = spacing
    overlay = ListedColormap([QC_MASK_COLOUR])
    figure = Figure(figsize=QC_FIGSIZE_IN, dpi=QC_DPI)
    FigureCanvasAgg(figure)
    axial, coronal = figure.subplots(1, 2)
    views = (
        (axial, image[k], binary[k], dy / dx, "upper", f"axial slice {k}"),
        (coronal, image[:, row, :], binary[:, row, :], dz / dx, "lower", f"coronal row {row}"),
    )
    for axes, picture, overlay_mask, aspect, origin, name in views:
        axes.imshow(picture, cmap="gray", vmin=low, vmax=high, aspect=aspect, origin=origin, interpolation="nearest")
        axes.imshow(np.ma.masked_where(~overlay_mask, overlay_mask), cmap=overlay, alpha=QC_MASK_ALPHA,
                    aspect=aspect, origin=origin, interpolation="nearest")
        axes.set_title(name)
        axes.set_axis_off()
    if title:
        figure.suptitle(title)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
