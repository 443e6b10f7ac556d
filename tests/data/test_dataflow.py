import multiprocessing

import numpy as np

from pancreas_seg.config import DataConfig
from pancreas_seg.data.dataflow import (SequenceFlow, SliceStackFlow, as_generator, batched, close_flow, prepare_cases,
                                        sample_positions)

CONFIG = DataConfig(input_size=32, crop="body", augment=False, sequence_length=4, focus_margin=1,
                    focus_fraction=0.5)


def test_prepare_cases_caches_and_reuses(tiny_store, tmp_path):
    first = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path / "c", progress=False)
    second = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path / "c", progress=False)
    assert [c.case_id for c in first] == tiny_store.case_ids
    assert isinstance(second[0].image, np.memmap)
    np.testing.assert_array_equal(first[1].image, second[1].image)
    assert first[0].image.shape == (12, 32, 32) and first[0].mask.dtype == np.uint8


def test_cases_prepared_in_worker_processes_equal_those_prepared_here(tiny_store, tmp_path):
    here = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path / "here", progress=False)
    pooled = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path / "pool", progress=False,
                           jobs=2)
    assert [c.case_id for c in pooled] == tiny_store.case_ids
    for one, other in zip(here, pooled):
        np.testing.assert_array_equal(one.image, other.image)
        np.testing.assert_array_equal(one.mask, other.mask)
        assert one.transform == other.transform


def test_slice_stacks_match_their_case(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    flow = SliceStackFlow(cases, CONFIG, shuffle=False)
    flow.reset_state()
    points = list(flow)
    assert len(points) == len(flow)
    stack, mask = points[0]
    assert stack.shape == (32, 32, 3) and mask.shape == (32, 32, 1)
    case_index, slice_index = sample_positions(cases, CONFIG.focus_fraction, CONFIG.focus_margin, None)[0]
    np.testing.assert_array_equal(stack[..., 1], cases[case_index].image[slice_index])
    np.testing.assert_array_equal(mask[..., 0], cases[case_index].mask[slice_index])


def test_focused_sampling_share(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    # blob cases: pancreas in slices 3..9 of 12; margin 1 -> 9 near slices (2..10), 3 far (0, 1, 11).
    # focus 0.9 -> round(9 * 0.1 / 0.9) = 1 far slice per case; focus 0 -> all 12 slices.
    assert [c.pancreas_slices.tolist() for c in cases[:1]] == [list(range(3, 10))]
    positions = sample_positions(cases, 0.9, 1, np.random.default_rng(0))
    far = [s for _, s in positions if s in (0, 1, 11)]
    assert len(positions) == 4 * 10 and len(far) == 4
    assert len(sample_positions(cases, 0.0, 1, None)) == 4 * 12


def test_shuffled_flow_is_reproducible_with_its_seed(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    runs = []
    for _ in range(2):
        flow = SliceStackFlow(cases, CONFIG, shuffle=True, augment=True)
        flow.reset_state()
        runs.append(np.stack([p[0] for p in flow]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_sequences_are_consecutive_and_stay_in_one_case(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    flow = SequenceFlow(cases, CONFIG, shuffle=False)
    flow.reset_state()
    for stacks, masks in flow:
        assert stacks.shape == (4, 32, 32, 3) and masks.shape == (4, 32, 32, 1)
        matches = [(ci, s) for ci, c in enumerate(cases) for s in range(12 - 3)
                   if np.array_equal(c.image[s:s + 4], stacks[..., 1])]
        assert matches, "run is not 4 consecutive slices of one case"


def test_batched_generator_yields_batches(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    generator = as_generator(batched(SliceStackFlow(cases, CONFIG), batch_size=5, repeat=True))
    for _ in range(10):
        inputs, targets = next(generator)
        assert inputs.shape == (5, 32, 32, 3) and targets.shape == (5, 32, 32, 1)


def test_prefetch_workers_deliver_batches(tiny_store, tmp_path):
    cases = prepare_cases(tiny_store, tiny_store.case_ids, CONFIG, cache_dir=tmp_path, progress=False)
    before = set(multiprocessing.active_children())
    flow = batched(SliceStackFlow(cases, CONFIG), batch_size=4, workers=2, repeat=True)
    generator = as_generator(flow)
    batches = [next(generator) for _ in range(6)]
    assert all(b[0].shape == (4, 32, 32, 3) for b in batches)
    workers = [p for p in multiprocessing.active_children() if p not in before]
    assert len(workers) == 2 and all(p.is_alive() for p in workers)
    close_flow(flow)
    assert not any(p.is_alive() for p in workers), "prefetch workers must stop when the flow is closed"


def _case_with_pancreas_on(depth: int, first: int, last: int):
    from pancreas_seg.data.preprocess import PreparedCase

    mask = np.zeros((depth, 4, 4), np.uint8)
    mask[first:last + 1, 1, 1] = 1
    return PreparedCase("c", np.zeros((depth, 4, 4), np.float32), mask, None)


def test_sequence_runs_include_pancreas_free_ones_in_the_cnn_share():
    from pancreas_seg.data.dataflow import sequence_starts

    case = _case_with_pancreas_on(100, 40, 49)  # near the pancreas (margin 0): slices 40-49
    starts = sequence_starts([case], 4, focus_fraction=0.5, margin=0, rng=None)
    firsts = np.array([s for _, s in starts])
    touching = (firsts + 3 >= 40) & (firsts <= 49)
    # candidates every 2 slices: 38..48 touch (6 runs); as many others, evenly spread, for a share of one half
    assert touching.sum() == 6 and (~touching).sum() == 6
    assert firsts[~touching].min() == 0 and firsts[~touching].max() == 96
    drawn = sequence_starts([case], 4, 0.5, 0, np.random.default_rng(0))
    assert len(drawn) == 12 and len(set(drawn)) == 12
    only_near = sequence_starts([case], 4, focus_fraction=1.0, margin=0, rng=None)
    assert len(only_near) == 6
