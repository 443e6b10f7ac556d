"""Running a command for a person: one line per user error, exit codes, interruptions, logging.

The command line (:mod:`pancreas_seg.cli`), the scripts in ``experiments/`` and ``data_prep/``
share these, so every entry point answers bad input and Ctrl-C the same way.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Callable

from pancreas_seg.errors import PancreasSegError

EXIT_USER_ERROR = 2
EXIT_SOME_FAILED = 1  # batch prediction or summarize: some cases failed, the others were written
EXIT_SIGNAL_BASE = 128  # the shell's exit code of a process ended by signal N is 128 + N (Ctrl-C: 130)
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # turned into Interrupted, as Ctrl-C into KeyboardInterrupt
QUIET_LIBRARIES = ("highdicom",)  # libraries whose INFO logs are noise to our users


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP received: unwinds like Ctrl-C, so the atomic writers remove their temporaries."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install_signal_handlers() -> dict[int, Any]:
    """Make SIGTERM and SIGHUP raise :class:`Interrupted` in this process (main thread only).

    Processes forked from this one (worker pools, which their owners stop with SIGTERM) keep the
    default action: they die at once, as they would without this handler.

    Returns:
        the previous handlers, ``{signum: handler}``, for :func:`signal.signal` to restore.
    """
    owner = os.getpid()

    def handle(signum: int, _frame) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    return {signum: signal.signal(signum, handle) for signum in TERMINATING_SIGNALS}


def run_guarded(main: Callable[[], int]) -> int:
    """Run ``main``; turn user errors into one clear line and a non-zero exit code, and an
    interruption (Ctrl-C, SIGTERM, SIGHUP) into "interrupted" and 128 + the signal number.

    In the main thread, SIGTERM and SIGHUP raise :class:`Interrupted` while ``main`` runs, so the
    atomic writers remove their temporary files on the way out.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers need it
    previous = install_signal_handlers() if in_main_thread else {}
    try:
        return main()
    except PancreasSegError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def setup_logging(verbose: bool = False) -> None:
    """Log INFO (DEBUG with ``verbose``) to stderr as ``LEVEL module: message``; chatty libraries at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose else logging.WARNING)
