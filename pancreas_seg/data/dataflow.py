"""tensorpack DataFlows feeding the networks (paper Sec. III-A, III-B).

* :class:`SliceStackFlow`: ``[stack [S, S, 3] float32, mask [S, S, 1] float32]``, slices
  τ−1, τ, τ+1 of one case (edges replicated) with the middle slice's mask, for the CNN.
* :class:`SequenceFlow`: ``[stacks [T, S, S, 3], masks [T, S, S, 1]]``, T consecutive slices
  of one case in order, for the recurrent stage; a run never crosses cases.

Cases are prepared once (:func:`prepare_cases`: window, crop, resize) and cached as ``.npy``
files opened memory-mapped, so forked prefetch workers share them instead of copying.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tensorpack.dataflow import BatchData, DataFlow, MultiProcessRunnerZMQ, RepeatedData

from pancreas_seg.config import DataConfig
from pancreas_seg.data.preprocess import (InplaneTransform, PreparedCase, mask_region, prepare_volume,
                                          preprocessing_hash, slice_stack)
from pancreas_seg.data.parallel import pending, run_cases
from pancreas_seg.data.store import CaseStore
from pancreas_seg.io.atomic import atomic_write, atomic_write_json
from pancreas_seg.vocabulary import PANCREAS_CROP

log = logging.getLogger(__name__)

PREPARED_DIR = "prepared"
AUGMENT_SHIFT_FRACTION = 0.06  # max random in-plane translation, share of the slice size
AUGMENT_GAIN = 0.1  # intensity gain drawn from 1 ± this
AUGMENT_BIAS = 0.05  # intensity offset drawn from ± this
PREFETCH_BATCHES = 8  # ZMQ high-water mark of the prefetch queue, in batches


def _load_prepared(folder: Path, case_id: str) -> PreparedCase | None:
    meta = folder / f"{case_id}.json"
    if not meta.is_file():
        return None
    transform = InplaneTransform.from_dict(json.loads(meta.read_text()))
    return PreparedCase(case_id, np.load(folder / f"{case_id}.image.npy", mmap_mode="r"),
                        np.load(folder / f"{case_id}.mask.npy", mmap_mode="r"), transform)


def _save_prepared(folder: Path, prepared: PreparedCase) -> None:
    for name, array in (("image", prepared.image), ("mask", prepared.mask)):
        atomic_write(folder / f"{prepared.case_id}.{name}.npy", lambda tmp, a=array: np.save(tmp, a))
    atomic_write_json(folder / f"{prepared.case_id}.json", prepared.transform.to_dict())


def prepare_cases(store: CaseStore, case_ids: Sequence[str], config: DataConfig,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True,
                  jobs: int = 1) -> list[PreparedCase]:
    """Cases on the network grid, from the cache when present, else prepared and cached.

    The cache lives in ``cache_dir`` (default ``<store>/prepared``) under a folder named after
    :func:`~pancreas_seg.data.preprocess.preprocessing_hash`, so changing the window or size
    never reuses stale arrays. Missing cases are prepared in ``jobs`` processes.
    """
    key = preprocessing_hash(replace(config, modality=store.modality))
    folder = Path(cache_dir or store.root / PREPARED_DIR) / key
    folder.mkdir(parents=True, exist_ok=True)
    todo, _ = pending(case_ids, lambda case_id: (folder / f"{case_id}.json").is_file())
    work = functools.partial(_prepare_and_cache, store.root, config, folder)
    for _ in run_cases(work, todo, jobs=jobs, desc="prepare cases", progress=progress and bool(todo)):
        pass
    return [_load_prepared(folder, case_id) for case_id in case_ids]


def _prepare_and_cache(store_root: Path, config: DataConfig, folder: Path, case_id: str) -> None:
    """Prepare one case of the store at ``store_root`` and cache it in ``folder`` (a worker's task)."""
    case = CaseStore(store_root).read_case(case_id)
    region = mask_region(case.mask, case.spacing) if config.crop == PANCREAS_CROP else None
    image, transform = prepare_volume(case.image, case.spacing, case.modality, config, region)
    _save_prepared(folder, PreparedCase(case_id, image, transform.apply_mask(case.mask), transform))


def _worker_rng(seed: int) -> np.random.Generator:
    """The flow's RNG: ``seed`` alone in the main process (reproducible); mixed with the process
    id in forked prefetch workers, so that workers do not all draw the same samples."""
    if multiprocessing.parent_process() is None:
        return np.random.default_rng(seed)
    return np.random.default_rng([seed, os.getpid()])


def focused_slices(case: PreparedCase, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices within ``margin`` of the pancreas, and all the others."""
    depth = case.image.shape[0]
    near = np.zeros(depth, bool)
    slices = case.pancreas_slices
    if slices.size:
        near[max(0, slices[0] - margin):min(depth, slices[-1] + margin + 1)] = True
    return np.flatnonzero(near), np.flatnonzero(~near)


def sample_positions(cases: Sequence[PreparedCase], focus_fraction: float, margin: int,
                     rng: np.random.Generator | None) -> list[tuple[int, int]]:
    """``(case index, slice index)`` pairs for one epoch.

    All slices near the pancreas plus enough others that they make ``1 − focus_fraction`` of the
    epoch (``focus_fraction`` 0 = every slice once). Without ``rng``, the others are taken
    evenly spaced instead of at random (validation).
    """
    positions = []
    for case_index, case in enumerate(cases):
        near, far = focused_slices(case, margin)
        if focus_fraction <= 0 or near.size == 0:
            chosen = np.arange(case.image.shape[0])
        else:
            wanted = min(far.size, int(round(near.size * (1 - focus_fraction) / focus_fraction)))
            if rng is None:
                others = far[np.linspace(0, far.size - 1, wanted).astype(int)] if wanted else far[:0]
            else:
                others = rng.choice(far, size=wanted, replace=False)
            chosen = np.sort(np.concatenate([near, others]))
        positions.extend((case_index, int(s)) for s in chosen)
    return positions


def augment(stack: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random in-plane translation (image and mask alike) and intensity gain/offset.

    No flips: mirroring an abdomen puts the pancreas on the wrong side of the body.
    """
    size = stack.shape[-3]
    max_shift = int(AUGMENT_SHIFT_FRACTION * size)
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    stack, mask = _translate(stack, dy, dx), _translate(mask, dy, dx)
    gain = rng.uniform(1 - AUGMENT_GAIN, 1 + AUGMENT_GAIN)
    bias = rng.uniform(-AUGMENT_BIAS, AUGMENT_BIAS)
    return np.clip(stack * gain + bias, 0.0, 1.0).astype(np.float32), mask


def _translate(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the two axes before the last by (dy, dx), filling with zeros."""
    out = np.zeros_like(array)
    h, w = array.shape[-3], array.shape[-2]
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x, :] = array[..., src_y, src_x, :]
    return out


class SliceStackFlow(DataFlow):
    """3-slice stacks and middle-slice masks: ``[[S, S, C] float32, [S, S, 1] float32]``."""

    def __init__(self, cases: Sequence[PreparedCase], config: DataConfig, shuffle: bool = True,
                 augment: bool | None = None, focus_fraction: float | None = None):
        self.cases = list(cases)
        self.config = config
        self.shuffle = shuffle
        self.augment = config.augment if augment is None else augment
        self.focus_fraction = config.focus_fraction if focus_fraction is None else focus_fraction
        self.rng = None
        self._length = len(sample_positions(self.cases, self.focus_fraction, config.focus_margin, None))

    def reset_state(self) -> None:
        self.rng = _worker_rng(self.config.seed)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        positions = sample_positions(self.cases, self.focus_fraction, self.config.focus_margin,
                                     self.rng if self.shuffle else None)
        if self.shuffle:
            positions = [positions[i] for i in self.rng.permutation(len(positions))]
        for case_index, slice_index in positions:
            case = self.cases[case_index]
            stack = slice_stack(case.image, slice_index, self.config.context_slices).astype(np.float32)
            mask = case.mask[slice_index, :, :, None].astype(np.float32)
            if self.augment:
                stack, mask = augment(stack, mask, self.rng)
            yield [stack, mask]


def sequence_starts(cases: Sequence[PreparedCase], length: int, focus_fraction: float, margin: int,
                    rng: np.random.Generator | None) -> list[tuple[int, int]]:
    """``(case index, first slice)`` of the runs of ``length`` slices for one epoch.

    Runs start every ``length // 2`` slices. As :func:`sample_positions` does for single slices:
    all runs that touch the pancreas (± ``margin``) plus enough of the others that they make
    ``1 − focus_fraction`` of the epoch, at random with ``rng``, evenly spaced without (validation),
    so the recurrent stage sees pancreas-free slices in the same share as the CNN did.
    """
    starts = []
    for case_index, case in enumerate(cases):
        near, _ = focused_slices(case, margin)
        candidates = np.arange(0, case.image.shape[0] - length + 1, max(1, length // 2))
        if focus_fraction <= 0 or near.size == 0:
            chosen = candidates
        else:
            touches = (candidates + length - 1 >= near[0]) & (candidates <= near[-1])
            close, far = candidates[touches], candidates[~touches]
            wanted = min(far.size, int(round(close.size * (1 - focus_fraction) / focus_fraction)))
            if rng is None:
                others = far[np.linspace(0, far.size - 1, wanted).astype(int)] if wanted else far[:0]
            else:
                others = rng.choice(far, size=wanted, replace=False)
            chosen = np.sort(np.concatenate([close, others]))
        starts.extend((case_index, int(s)) for s in chosen)
    return starts


class SequenceFlow(DataFlow):
    """Ordered runs of ``T`` consecutive slices of one case: ``[[T, S, S, C], [T, S, S, 1]]``.

    Runs near the pancreas and elsewhere in the CNN's proportion (:func:`sequence_starts`); a case
    shorter than ``T`` slices is skipped with a warning.
    """

    def __init__(self, cases: Sequence[PreparedCase], config: DataConfig, shuffle: bool = True,
                 augment: bool | None = None):
        self.length = config.sequence_length
        self.cases = [c for c in cases if c.image.shape[0] >= self.length]
        for case in set(c.case_id for c in cases) - set(c.case_id for c in self.cases):
            log.warning("case %s has fewer than %d slices; left out of the sequence flow", case, self.length)
        self.config = config
        self.shuffle = shuffle
        self.augment = config.augment if augment is None else augment
        self.rng = None
        self._length = len(self._starts(None))

    def reset_state(self) -> None:
        self.rng = _worker_rng(self.config.seed)

    def _starts(self, rng: np.random.Generator | None) -> list[tuple[int, int]]:
        return sequence_starts(self.cases, self.length, self.config.focus_fraction, self.config.focus_margin, rng)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        starts = self._starts(self.rng if self.shuffle else None)
        if self.shuffle:
            starts = [starts[i] for i in self.rng.permutation(len(starts))]
        context = self.config.context_slices
        for case_index, start in starts:
            case = self.cases[case_index]
            stacks = np.stack([slice_stack(case.image, start + t, context) for t in range(self.length)])
            masks = case.mask[start:start + self.length, :, :, None].astype(np.float32)
            stacks = stacks.astype(np.float32)
            if self.augment:
                stacks, masks = augment(stacks, masks, self.rng)
            yield [stacks, masks]


def batched(flow: DataFlow, batch_size: int, workers: int = 0, repeat: bool = True,
            remainder: bool = False) -> DataFlow:
    """Batch a flow, prefetching whole batches in ``workers`` forked processes (0 = in-process)
    and repeating it forever when ``repeat`` (training)."""
    flow = BatchData(flow, batch_size, remainder=remainder)
    if workers > 0:
        flow = MultiProcessRunnerZMQ(flow, num_proc=workers, hwm=PREFETCH_BATCHES)
    return RepeatedData(flow, -1) if repeat else flow


def close_flow(flow: DataFlow) -> None:
    """Stop the prefetch processes of a flow built by :func:`batched` (no-op without workers).

    tensorpack only stops them when the runner is garbage-collected; a trainer that builds a flow
    per stage would otherwise keep every stage's workers alive until the process ends.
    """
    while flow is not None:
        if isinstance(flow, MultiProcessRunnerZMQ):
            flow.__del__()  # tensorpack's own clean-up: closes the socket, terminates the workers
            return
        flow = getattr(flow, "ds", None)


def as_generator(flow: DataFlow) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Reset a flow and yield its datapoints as ``(inputs, targets)`` tuples for Keras."""
    flow.reset_state()
    for inputs, targets in flow:
        yield inputs, targets
