"""Per-case batch work: skip the cases already done, run the rest in worker processes with a progress bar."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def pending(items: Iterable[Item], done: Callable[[Item], bool], overwrite: bool = False) -> tuple[list[Item], list[Item]]:
    """``(todo, skipped)``: the items still to do and those ``done`` already (all to do with ``overwrite``)."""
    todo: list[Item] = []
    skipped: list[Item] = []
    for item in items:
        (todo if overwrite or not done(item) else skipped).append(item)
    return todo, skipped


def run_cases(work: Callable[[Item], Result], items: Sequence[Item], *, jobs: int = 1, desc: str,
              progress: bool = True) -> Iterator[Result]:
    """Yield ``work(item)`` for every item, in order, advancing a tqdm bar (unit "case") after each.

    With ``jobs`` > 1 and more than one item, ``work`` runs in a pool of ``min(jobs, len(items))``
    processes (``work`` and the items must then be picklable: a module-level function); otherwise
    in this process. The caller handles each result as it comes (e.g. records it in a manifest), so
    an interrupted run keeps what was finished.
    """
    with tqdm(total=len(items), desc=desc, unit="case", disable=not progress) as bar:
        if jobs > 1 and len(items) > 1:
            with ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
                for result in pool.map(work, items):
                    yield result
                    bar.update()
        else:
            for item in items:
                yield work(item)
                bar.update()
