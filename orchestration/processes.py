"""Processes: whether one that ran a run still lives (the command-line runner asks, after a
crash), and the interrupt signals the Dagster processes we start inherit."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def interruptible_children() -> None:
    """Let the processes this one starts from now on be interrupted, even if this one was started
    with SIGINT ignored (a shell's background job, nohup, some CI runners: an ignored signal is
    inherited across exec).

    Dagster's processes handle SIGTERM as they handle SIGINT, so a code server that inherited an
    ignored SIGINT ignores SIGTERM too, and so do the processes it starts: the `tail` that captures
    each run's logs then outlives the run's end by 30 s (Dagster waits that long for it to stop,
    once for stdout, once for stderr), a minute added to every micro-batch run in the code server.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped (a run process whose
    parent is gone is reaped by init, which in a container may never do it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill() said it exists
    return state != "Z"
