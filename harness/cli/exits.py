"""How a command ends when it did not finish: one line and an exit status, never a traceback."""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from harness.core.errors import HarnessError, Interrupted
from harness.lab.pool import STOPS


def fail(error: HarnessError) -> None:
    """The one line for a user's mistake (exit status 2) or an interruption (130): no traceback."""
    if isinstance(error, Interrupted):
        print(error, file=sys.stderr)
        raise SystemExit(130)
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


def _interrupt(signum: int, frame: Any) -> None:
    for number in STOPS:  # the first stop is the one that counts: a second never cuts its clean-up short
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's stop, `kill`) stops the command as Ctrl-C does: one line, exit 130; and
    once one of them has, the command ignores the next (a second Ctrl-C while it removes what an
    unfinished run wrote, or kills its workers, printed a traceback or the wrong line)."""
    for number in STOPS:
        signal.signal(number, _interrupt)


def quiet_start() -> None:
    """Until the command takes its stops over (stop_on_sigterm), Ctrl-C or SIGTERM ends it with one
    line and status 130: importing torch, pandas and Hydra takes a second or two, and nothing has run."""
    for number in STOPS:
        signal.signal(number, _stopped_starting)


def _stopped_starting(signum: int, frame: Any) -> None:
    print("interrupted while starting: nothing was run or written", file=sys.stderr)
    os._exit(130)  # in the middle of an import: no exit handler has anything to do


def exit_quickly() -> None:
    """At exit, skip the garbage collector's last passes over every object the command made or
    imported (~0.5 s of a command's end with torch loaded): they are frozen, which only spares them the
    passes. Open files are closed and logs flushed before then, by the code that opened them and by the
    exit handlers registered before this one. Registered once however often a command is called."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """A command's process: main, then an exit that a late Ctrl-C or SIGTERM leaves alone. Once main
    has ended, its work is finished or has said in one line why not; a stop landing in the
    interpreter's exit handlers would only print their traceback ("Exception ignored in atexit
    callback"), or turn a finished command's status into a signal's."""
    try:
        status = main()
    finally:
        for number in STOPS:
            signal.signal(number, signal.SIG_IGN)
    sys.exit(status)
