"""The per-case batch helper: skipping, order, worker processes, progress bar."""
from __future__ import annotations

from pancreas_seg.data.parallel import pending, run_cases


def _square(n: int) -> int:  # module level: picklable for the worker processes
    return n * n


def test_pending_skips_what_is_done_unless_overwrite():
    assert pending([1, 2, 3, 4], lambda n: n % 2 == 0) == ([1, 3], [2, 4])
    assert pending([1, 2, 3, 4], lambda n: n % 2 == 0, overwrite=True) == ([1, 2, 3, 4], [])


def test_run_cases_in_process_and_in_workers_gives_results_in_order():
    items = [3, 1, 2, 5]
    assert list(run_cases(_square, items, desc="test", progress=False)) == [9, 1, 4, 25]
    assert list(run_cases(_square, items, jobs=2, desc="test", progress=False)) == [9, 1, 4, 25]
    assert list(run_cases(_square, [], jobs=2, desc="test", progress=False)) == []


def test_run_cases_shows_a_bar_with_its_description(capsys):
    list(run_cases(_square, [1, 2], desc="squares", progress=True))
    err = capsys.readouterr().err
    assert "squares" in err and "2/2" in err
