"""The localiser: the coarse stage of coarse-to-fine prediction (the paper's Sec. V, after Zhou et
al. [9]): a small CNN of its own, trained to find the pancreas at a fraction of the fine network's
resolution, whose answer widened by a margin gives the slices and the box the fine network runs on.

The localiser sees the fine network's prepared volume ``[Z, S, S]`` resized to its own side ``s``
(same slices, same in-plane crop), so its region maps onto the fine grid by the factor ``S / s``.
A fine stage trained on crops around the pancreas (``data.crop == "pancreas"``) has no whole-slice
grid: its localiser sees the whole slice as the preset crops it, and its region is mapped to the
scan's voxels (:func:`locate_in_scan`), where the fine stage's square is cut.
Its hits (probability above ``HIT_FRACTION`` x its threshold, on every slice) span a slice range
and a box; the margin, in mm through-plane and in-plane, is chosen on the validation cases as the
cheapest pair that keeps at least ``coverage`` of every case's true pancreas voxels inside.
A run folder keeps the localiser in ``localiser/`` (a run folder of its own) with the chosen
margin in ``localiser/margin.json`` (:mod:`pancreas_seg.run_folder`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
from skimage.transform import resize

from pancreas_seg.config import PNET_POOL_SIZE, DataConfig, ExperimentConfig
from pancreas_seg.data.preprocess import prepare_volume
from pancreas_seg.networks import Box, ModelRunner
from pancreas_seg.roi import Roi
from pancreas_seg.vocabulary import PANCREAS_CROP

LOCALISER_DOWNSCALE = 4  # the localiser's side is the fine network's over this (Zhou et al.: coarse, then fine)
LOCALISER_MIN_SIZE = 64  # px, least localiser side: the pancreas must stay a few pixels wide
LOCALISER_MODEL = "pnet_msa"  # the localiser's network
HIT_FRACTION = 0.5  # hits: localiser probability above this fraction of its mask threshold
COVERAGE = 0.995  # least share of every validation case's pancreas voxels inside the widened region
MARGIN_STEP_MM = 2.5  # mm, margin candidates are multiples of this
MAX_MARGIN_MM = 150.0  # mm, largest margin tried (through-plane and in-plane)
WHOLE_SLICE_CROP = "body"  # the localiser's crop for a run on crops whose base is one too (the CLI passes the run)


def localiser_size(fine_size: int, units: int) -> int:
    """The localiser's side: ``fine_size / LOCALISER_DOWNSCALE``, at least ``LOCALISER_MIN_SIZE`` and
    no more than ``fine_size``, rounded up to a multiple of its max-pool factor."""
    factor = PNET_POOL_SIZE ** (units - 1)
    side = min(fine_size, max(LOCALISER_MIN_SIZE, fine_size // LOCALISER_DOWNSCALE))
    return int(math.ceil(side / factor) * factor)


def localiser_config(run: ExperimentConfig, base: ExperimentConfig) -> ExperimentConfig:
    """The localiser's config: ``base``'s network and training budget (a preset) at
    :func:`localiser_size`, with the run's preprocessing (modality, window, crop, context) and fold
    settings, so that it sees the run's slices and its cases. No fine-tuning on training +
    validation: its margin is chosen on the validation cases, which it must not have learned."""
    data = replace(run.data, input_size=localiser_size(run.data.input_size, base.model.units),
                   augment=base.data.augment, focus_fraction=base.data.focus_fraction)
    if run.data.crop == PANCREAS_CROP:
        whole = base.data if base.data.crop != PANCREAS_CROP else DataConfig(crop=WHOLE_SLICE_CROP)
        data = replace(data, crop=whole.crop, fov_mm=whole.fov_mm)
    model = replace(base.model, name=LOCALISER_MODEL, input_slices=run.data.context_slices)
    train = replace(base.train, loss="jac", epochs_finetune=0, distribute=run.train.distribute)
    return ExperimentConfig(data=data, model=model, train=train)


@dataclass(frozen=True)
class Margin:
    """The localiser's margin (mm) and how it was chosen (validation coverage, cases it missed)."""

    through_plane_mm: float
    inplane_mm: float
    coverage_target: float = COVERAGE
    validation_coverage: dict[str, float] = field(default_factory=dict)  # case id -> share of pancreas voxels inside
    missed: tuple[str, ...] = ()  # validation cases on which the localiser found nothing
    region_share: float = 1.0  # mean share of the fine grid's voxels inside the widened region (validation)

    def to_dict(self) -> dict:
        return {**asdict(self), "missed": list(self.missed)}

    @classmethod
    def from_dict(cls, data: dict) -> "Margin":
        return cls(float(data["through_plane_mm"]), float(data["inplane_mm"]), float(data["coverage_target"]),
                   {k: float(v) for k, v in data.get("validation_coverage", {}).items()},
                   tuple(data.get("missed", ())), float(data.get("region_share", 1.0)))


def to_localiser_grid(volume: np.ndarray, side: int) -> np.ndarray:
    """The fine grid ``[Z, S, S]`` resized to the localiser's ``[Z, side, side]`` float32."""
    if volume.shape[1] == side:
        return volume
    return resize(volume, (volume.shape[0], side, side), order=1, anti_aliasing=volume.shape[1] > side,
                  preserve_range=True).astype(np.float32)


def localiser_probability(runner: ModelRunner, volume: np.ndarray) -> np.ndarray:
    """The localiser's probability ``[Z, s, s]`` on every slice of the fine grid ``volume`` ``[Z, S, S]``."""
    small = to_localiser_grid(volume, runner.model.config.data.input_size)
    return runner.cnn_slices(small, range(small.shape[0]), (0, small.shape[1], 0, small.shape[2]))


def hit_region(probability: np.ndarray, threshold: float, fine_size: int) -> Roi | None:
    """Slices and box (on the fine grid of side ``fine_size``) of the localiser's hits, before any
    margin; ``None`` without a hit."""
    hits = probability > HIT_FRACTION * threshold
    slices = np.flatnonzero(hits.any(axis=(1, 2)))
    if slices.size == 0:
        return None
    ys, xs = np.flatnonzero(hits.any(axis=(0, 2))), np.flatnonzero(hits.any(axis=(0, 1)))
    scale = fine_size / probability.shape[1]
    box = (int(ys[0] * scale), int(math.ceil((ys[-1] + 1) * scale)),
           int(xs[0] * scale), int(math.ceil((xs[-1] + 1) * scale)))
    return Roi(int(slices[0]), int(slices[-1]) + 1, box)


def widen(region: Roi, margin: Margin, slice_mm: float, pixel_mm: float, shape: tuple[int, int, int]) -> Roi:
    """``region`` widened by ``margin`` (mm; ``slice_mm``, ``pixel_mm``: the fine grid's spacing) and
    clipped to the grid ``shape`` ``[Z, S, S]``."""
    dz = int(math.ceil(margin.through_plane_mm / slice_mm - 1e-9))
    dp = int(math.ceil(margin.inplane_mm / pixel_mm - 1e-9))
    y0, y1, x0, x1 = region.box
    box: Box = (max(0, y0 - dp), min(shape[1], y1 + dp), max(0, x0 - dp), min(shape[2], x1 + dp))
    return Roi(max(0, region.z0 - dz), min(shape[0], region.z1 + dz), box)


def locate(runner: ModelRunner, volume: np.ndarray, margin: Margin, slice_mm: float, pixel_mm: float) -> Roi | None:
    """The region the fine network should run on: the localiser's hits on the fine grid ``volume``
    widened by ``margin``; ``None`` when it finds nothing."""
    probability = localiser_probability(runner, volume)
    region = hit_region(probability, runner.model.config.train.threshold, volume.shape[1])
    return None if region is None else widen(region, margin, slice_mm, pixel_mm, volume.shape)


def locate_in_scan(runner: ModelRunner, image: np.ndarray, spacing: tuple[float, float, float],
                   margin: Margin) -> Roi | None:
    """For a fine stage trained on crops: the localiser on the scan ``image`` ``[Z, Y, X]``
    (canonical orientation; ``spacing`` ``(z, y, x)`` mm) prepared as it was trained, its region
    widened by ``margin``, with the box in the scan's pixels; ``None`` when it finds nothing."""
    data = runner.model.config.data
    volume, transform = prepare_volume(image, spacing, data.modality, data)
    region = locate(runner, volume, margin, *transform.grid_mm(spacing))
    return None if region is None else Roi(region.z0, region.z1, transform.to_scan_box(region.box))


def calibration_grid(run: ExperimentConfig, localiser: ExperimentConfig) -> DataConfig:
    """The preprocessing of the grid a localiser's margin is measured on: the fine network's, or
    for a fine stage trained on crops (no whole-slice grid) the localiser's own."""
    return localiser.data if run.data.crop == PANCREAS_CROP else run.data


def needed_margins(region: Roi, mask: np.ndarray, slice_mm: float, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """For every pancreas voxel of ``mask`` ``[Z, S, S]``: the through-plane and in-plane margins (mm)
    that ``region`` needs to hold it (0 inside)."""
    z, y, x = np.nonzero(mask)
    y0, y1, x0, x1 = region.box
    outside_z = np.maximum(0, np.maximum(region.z0 - z, z - (region.z1 - 1)))
    outside_y = np.maximum(0, np.maximum(y0 - y, y - (y1 - 1)))
    outside_x = np.maximum(0, np.maximum(x0 - x, x - (x1 - 1)))
    return outside_z * slice_mm, np.maximum(outside_y, outside_x) * pixel_mm


@dataclass(frozen=True)
class CalibrationCase:
    """One validation case for the margin: the localiser's hit region (``None``: found nothing),
    the true mask ``[Z, S, S]`` on the fine grid and the grid's spacing (mm)."""

    case_id: str
    region: Roi | None
    mask: np.ndarray
    slice_mm: float
    pixel_mm: float


def _coverage_table(case: CalibrationCase, grid: np.ndarray) -> np.ndarray:
    """``[len(grid), len(grid)]`` share of the case's pancreas voxels held with margins
    ``(grid[i], grid[j])`` (through-plane, in-plane)."""
    need_z, need_p = needed_margins(case.region, case.mask, case.slice_mm, case.pixel_mm)
    if not need_z.size:  # a pancreas-free case: any region holds all of nothing
        return np.ones((len(grid), len(grid)))
    iz = np.searchsorted(grid, need_z - 1e-9)  # first margin that holds the voxel
    ip = np.searchsorted(grid, need_p - 1e-9)
    counts = np.zeros((len(grid) + 1, len(grid) + 1))
    np.add.at(counts, (iz, ip), 1)
    return counts.cumsum(axis=0).cumsum(axis=1)[:len(grid), :len(grid)] / max(1, len(need_z))


def _region_shares(case: CalibrationCase, grid: np.ndarray) -> np.ndarray:
    """``[len(grid), len(grid)]`` share of the fine grid inside the widened region, per margin pair."""
    depth, size, _ = case.mask.shape
    y0, y1, x0, x1 = case.region.box
    dz = np.ceil(grid / case.slice_mm - 1e-9)
    dp = np.ceil(grid / case.pixel_mm - 1e-9)
    slices = np.minimum(depth, case.region.z1 + dz) - np.maximum(0, case.region.z0 - dz)
    height = np.minimum(size, y1 + dp) - np.maximum(0, y0 - dp)
    width = np.minimum(size, x1 + dp) - np.maximum(0, x0 - dp)
    return np.outer(slices / depth, height * width / size ** 2)


def choose_margin(cases: Sequence[CalibrationCase], coverage: float = COVERAGE) -> Margin:
    """The margin pair (multiples of ``MARGIN_STEP_MM`` up to ``MAX_MARGIN_MM``) with the smallest
    mean region that holds ``coverage`` of every found case's pancreas; the largest pair when none
    does (its coverage is then recorded as it is). Cases with pancreas that the localiser missed
    are listed apart; pancreas-free cases constrain nothing."""
    grid = np.arange(0.0, MAX_MARGIN_MM + MARGIN_STEP_MM / 2, MARGIN_STEP_MM)
    found = [case for case in cases if case.region is not None]
    missed = tuple(case.case_id for case in cases if case.region is None and case.mask.any())
    if not found:
        return Margin(MAX_MARGIN_MM, MAX_MARGIN_MM, coverage, {}, missed, 1.0)
    tables = [_coverage_table(case, grid) for case in found]
    shares = np.mean([_region_shares(case, grid) for case in found], axis=0)
    feasible = np.min(tables, axis=0) >= coverage
    if feasible.any():
        i, j = np.unravel_index(np.argmin(np.where(feasible, shares, np.inf)), shares.shape)
    else:
        i = j = len(grid) - 1
    held = {case.case_id: round(float(table[i, j]), 5) for case, table in zip(found, tables)}
    return Margin(float(grid[i]), float(grid[j]), coverage, held, missed, round(float(shares[i, j]), 5))
