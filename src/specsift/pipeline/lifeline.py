"""Worker processes that end with their parent.

Why: ``ProcessPoolExecutor`` workers block in torch or on their task queue and do not notice
when the process that started them is killed (SIGKILL runs no clean-up); each then lives on
holding its model in memory (seen: 390 MB each, 83 s after the kill, on the way to the next
unit).  A worker therefore asks Linux to send it SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``) and, on any system, a daemon thread polls the parent pid and
exits the worker when it has changed (the parent died, the worker was adopted).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll: float = 0.5) -> None:
    """Make this process end when ``parent_pid`` does (call first thing in a worker)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):          # no prctl: the poll below still works
            pass
    if os.getppid() != parent_pid:                 # died before the prctl took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(poll)
        os._exit(1)

    threading.Thread(target=watch, name="specsift-parent-watch", daemon=True).start()
