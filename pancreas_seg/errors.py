"""Project errors: user-facing problems with a file or an argument.

The CLI turns any :class:`PancreasSegError` into one line on stderr and a
non-zero exit; everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os


class PancreasSegError(Exception):
    """Base class of errors caused by user input, not by a bug."""


class InputError(PancreasSegError, ValueError):
    """A file or folder given by the user cannot be used.

    The message always names the path and the problem: ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{self.path}: {problem}")


class UsageError(PancreasSegError):
    """An argument or option that cannot be used, or does not fit the input it is given with."""


MAX_MESSAGE_CHARS = 200  # an unexpected error's message is cut to this length in a one-line report


def one_line(exc: BaseException, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """An exception's message on one line, cut to ``max_chars`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= max_chars else text[:max_chars] + "..."


class TrainingCollapsed(PancreasSegError):
    """A training stage collapsed (non-finite values, the loss pinned at its ceiling, a constant
    output): its model is no result, and the run stops instead of selecting from it."""

    def __init__(self, stage: str, epoch: int, problem: str):
        self.stage, self.epoch, self.problem = stage, epoch, problem
        super().__init__(f"training collapsed in stage {stage}, epoch {epoch}: {problem}")
