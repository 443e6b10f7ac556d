"""Drawing the paper's figures (Figs. 5–9): matplotlib's object API with the Agg canvas (no pyplot state).

Pure functions: arrays and small records in, one PNG out (written to a temporary name and
renamed). What to draw is computed in :mod:`pancreas_seg.experiment.analysis`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # importing mplot3d registers the "3d" projection

from pancreas_seg.io.atomic import atomic_write

DPI = 150
PANEL_INCHES = 3.2  # side of one panel
MAX_MESH_VOXELS = 2_000_000  # marching cubes steps over larger boxes (Fig. 9 stays quick to draw)
GT_COLOR = "gold"  # Fig. 9: human annotation in yellow
PRED_COLOR = "limegreen"  # Fig. 9: computerised segmentation in green


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure on its own Agg canvas (no global pyplot state)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))


# ---------------------------------------------------------------------------
# learning curves (ours; the paper shows none): validation DSC against training slices seen
# ---------------------------------------------------------------------------

def plot_learning_curves(panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                         path: str | os.PathLike, subtitle: str = "") -> Path:
    """One panel per entry, one curve per model: mean validation DSC (%) over folds, each fold thin,
    each fold's kept epoch a star on its own curve.

    Args:
        panels: ``{panel title: {label: (samples seen [E], validation DSC [folds, E] in [0, 1],
            kept epoch per fold [folds], 1-based)}}``; a title ending in "BiRNN" counts slice runs.
    """
    fig = new_figure(PANEL_INCHES * 1.4 * len(panels), PANEL_INCHES)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for index, (label, (slices, dsc, kept)) in enumerate(curves.items()):
            color = f"C{index}"
            slices, dsc = np.asarray(slices), np.asarray(dsc, np.float64) * 100.0
            for fold, epoch in zip(dsc, kept):
                ax.plot(slices, fold, color=color, alpha=0.25, linewidth=0.8)
                if 1 <= epoch <= len(fold):
                    ax.plot(slices[epoch - 1], fold[epoch - 1], color=color, marker="*", markersize=8)
            ax.plot(slices, np.nanmean(dsc, axis=0), color=color, marker="o", markersize=3, label=label)
        unit = "slice runs" if title.endswith("BiRNN") else "slices"
        ax.set(title=title, xlabel=f"training {unit} seen (★ kept epoch)", ylabel="validation DSC (%)",
               ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    if subtitle:
        fig.suptitle(subtitle, fontsize="small")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# Fig. 5: DSC against the output threshold
# ---------------------------------------------------------------------------

def plot_threshold_curves(thresholds: Sequence[float], panels: Mapping[str, Mapping[str, np.ndarray]],
                          path: str | os.PathLike, subtitle: str = "",
                          chosen: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> Path:
    """One panel per modality, one curve per loss: mean DSC (%) over cases ± std.

    Args:
        thresholds: ``[T]`` output thresholds in (0, 1).
        panels: ``{panel title: {loss label: DSC [T, cases] in [0, 1]}}``.
        chosen: ``{panel title: {loss label: [threshold per fold]}}``, the validation-chosen
            thresholds, marked as triangles on the x axis in the curve's colour.
    """
    fig = new_figure(PANEL_INCHES * 1.4 * len(panels), PANEL_INCHES)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for index, (label, dsc) in enumerate(curves.items()):
            color = f"C{index}"
            dsc = np.asarray(dsc, np.float64) * 100.0
            mean, std = np.nanmean(dsc, axis=1), np.nanstd(dsc, axis=1)
            ax.plot(thresholds, mean, color=color, marker="o", markersize=3, label=label)
            ax.fill_between(thresholds, mean - std, mean + std, color=color, alpha=0.15)
            marks = (chosen or {}).get(title, {}).get(label)
            if marks is not None and len(marks):
                ax.plot(marks, np.full(len(marks), 1.5 + index), linestyle="none", marker="^", color=color,
                        markersize=6, label=f"{label}: validation-chosen t")
        ax.set(title=title, xlabel="output threshold", ylabel="DSC (%)", xlim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend()
    if subtitle:
        fig.suptitle(subtitle, fontsize="small")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# Fig. 6: automatic vs manual volume
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class VolumePanel:
    """One scatter of Fig. 6: manual and automatic volume (mL) per case and their fit."""

    title: str
    manual_ml: np.ndarray
    auto_ml: np.ndarray
    slope: float
    intercept: float
    r2: float
    error_variance: float  # %², relative error


def plot_volume_agreement(rows: Sequence[Sequence[VolumePanel]], path: str | os.PathLike, band: float = 0.15,
                          subtitle: str = "") -> Path:
    """Rows (CT, MRI) of scatters: circles, fitted line, identity (dashed black) and ±``band``
    (dashed green), with R² and error variance in the corner."""
    n_rows, n_cols = len(rows), max((len(r) for r in rows), default=1)
    fig = new_figure(PANEL_INCHES * n_cols, PANEL_INCHES * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for row_axes, panels in zip(axes, rows):
        for ax in row_axes[len(panels):]:
            ax.set_axis_off()
        for ax, panel in zip(row_axes, panels):
            manual, auto = np.asarray(panel.manual_ml, float), np.asarray(panel.auto_ml, float)
            top = max(float(np.nanmax(manual, initial=0)), float(np.nanmax(auto, initial=0)), 1.0) * 1.1
            line = np.array([0.0, top])
            ax.plot(manual, auto, "o", mfc="none", label="cases")
            ax.plot(line, line, "k--", lw=1, label="manual = automatic")
            ax.plot(line, line * (1 + band), "g--", lw=1, label=f"±{band:.0%}")
            ax.plot(line, line * (1 - band), "g--", lw=1)
            if math.isfinite(panel.slope):
                ax.plot(line, panel.slope * line + panel.intercept, "b-", lw=1.5, label="fit")
            ax.text(0.04, 0.96, f"R² = {panel.r2:.3f}\nError Var. = {panel.error_variance:.1f} %²",
                    transform=ax.transAxes, va="top", fontsize="small")
            ax.set(title=panel.title, xlabel="manual volume (mL)", ylabel="automatic volume (mL)",
                   xlim=(0, top), ylim=(0, top))
            ax.set_aspect("equal")
    axes[0][0].legend(fontsize="x-small", loc="lower right")
    if subtitle:
        fig.suptitle(subtitle, fontsize="small")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# Fig. 7: per-case DSC with and without the BiRNN
# ---------------------------------------------------------------------------

def plot_sorted_cases(dsc_base: np.ndarray, dsc_refined: np.ndarray, path: str | os.PathLike,
                      labels: tuple[str, str] = ("PNet-MSA", "PNet-MSA + BiRNN"), subtitle: str = "") -> Path:
    """Per-case DSC (fractions, ``[cases]``) sorted left to right by ``dsc_base``."""
    base, refined = np.asarray(dsc_base, float) * 100, np.asarray(dsc_refined, float) * 100
    order = np.argsort(np.nan_to_num(base, nan=-np.inf), kind="stable")
    x = np.arange(1, base.size + 1)
    fig = new_figure(max(PANEL_INCHES * 2, 0.08 * base.size), PANEL_INCHES)
    ax = fig.subplots()
    ax.plot(x, base[order], "o-", markersize=3, label=labels[0])
    ax.plot(x, refined[order], "s-", markersize=3, label=labels[1])
    ax.set(xlabel=f"case (sorted by {labels[0]} DSC)", ylabel="DSC (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if subtitle:
        ax.set_title(subtitle, fontsize="small")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# Fig. 8: probability maps
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbabilityRow:
    """One row of Fig. 8: the input slice, each model's probability map, the ground truth."""

    title: str  # e.g. "CT PANCREAS_0003 slice 41"
    image: np.ndarray  # [Y, X] float in [0, 1] (windowed)
    maps: Mapping[str, np.ndarray]  # model label -> [Y, X] probability in [0, 1]
    truth: np.ndarray  # [Y, X] mask


def plot_probability_maps(rows: Sequence[ProbabilityRow], path: str | os.PathLike, subtitle: str = "") -> Path:
    """Columns: input, one probability map per model, ground truth; one row per modality."""
    n_cols = 2 + max((len(r.maps) for r in rows), default=0)
    fig = new_figure(PANEL_INCHES * 0.8 * n_cols, PANEL_INCHES * 0.85 * len(rows))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for row_axes, row in zip(axes, rows):
        panels = [("input", row.image, "gray")] + [(k, v, "jet") for k, v in row.maps.items()]
        panels.append(("ground truth", row.truth.astype(float), "gray"))
        for ax, (label, image, cmap) in zip(row_axes, panels):
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(label, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row_axes[len(panels):]:
            ax.set_axis_off()
        row_axes[0].set_ylabel(row.title, fontsize="small")
    if subtitle:
        fig.suptitle(subtitle, fontsize="small")
    return save_figure(fig, path)


def crop_box(mask: np.ndarray, margin_fraction: float = 1.0, min_side: int = 48) -> tuple[slice, slice]:
    """Square in-plane window around a ``[Y, X]`` mask: its bounding box grown by
    ``margin_fraction`` of its size on each side, at least ``min_side`` px; the whole slice if empty."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    if rows.size == 0:
        return slice(0, height), slice(0, width)
    side = max(int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1)
    side = int(min(max(side * (1 + 2 * margin_fraction), min_side), height, width))
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    y0 = int(np.clip(cy - side // 2, 0, height - side))
    x0 = int(np.clip(cx - side // 2, 0, width - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)


# ---------------------------------------------------------------------------
# Fig. 9: 3D surfaces
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SurfaceCase:
    """One column of Fig. 9."""

    title: str  # e.g. "PANCREAS_0007, DSC 90.1 %"
    truth: np.ndarray  # [Z, Y, X] mask
    prediction: np.ndarray  # [Z, Y, X] mask
    spacing: tuple[float, float, float]  # (z, y, x) mm


def _mesh(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes surface of a mask in mm (vertices ``[N, 3]`` as z, y, x), ``None`` if empty."""
    from skimage.measure import marching_cubes

    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        return None
    box = tuple(slice(max(i.min() - 1, 0), i.max() + 2) for i in np.nonzero(mask))
    offset = np.array([s.start for s in box], float) * np.asarray(spacing, float)
    volume = np.pad(mask[box], 1).astype(np.float32)
    step = max(1, math.ceil((volume.size / MAX_MESH_VOXELS) ** (1 / 3)))
    verts, faces, _, _ = marching_cubes(volume, level=0.5, spacing=tuple(float(s) for s in spacing), step_size=step)
    return verts + offset - np.asarray(spacing, float), faces


def plot_surfaces(cases: Sequence[SurfaceCase], path: str | os.PathLike, subtitle: str = "") -> Path:
    """Top row: ground-truth surfaces (yellow); bottom row: predicted surfaces (green); in mm."""
    fig = new_figure(PANEL_INCHES * len(cases), PANEL_INCHES * 2)
    for column, case in enumerate(cases):
        for row, (mask, color, kind) in enumerate(((case.truth, GT_COLOR, "ground truth"),
                                                    (case.prediction, PRED_COLOR, "prediction"))):
            ax = fig.add_subplot(2, len(cases), row * len(cases) + column + 1, projection="3d")
            mesh = _mesh(mask, case.spacing)
            ax.set_title(f"{case.title}\n{kind}" if row == 0 else kind, fontsize="small")
            if mesh is None:
                ax.text2D(0.5, 0.5, "empty", transform=ax.transAxes, ha="center")
                continue
            verts, faces = mesh
            xyz = verts[:, ::-1]  # draw x, y, z
            ax.add_collection3d(Poly3DCollection(xyz[faces], facecolor=color, edgecolor="none", alpha=0.9))
            low, high = xyz.min(axis=0), xyz.max(axis=0)
            centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1.0)
            ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
                   zlim=(centre[2] - half, centre[2] + half), xlabel="x (mm)", ylabel="y (mm)", zlabel="z (mm)")
            ax.tick_params(labelsize="x-small")
    if subtitle:
        fig.suptitle(subtitle, fontsize="small")
    return save_figure(fig, path)
