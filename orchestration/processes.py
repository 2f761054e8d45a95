"""Whether a process that ran a run still lives: the command-line runner asks, after a crash."""

from __future__ import annotations

import os
from pathlib import Path


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
