"""Ctrl-C that cannot be lost.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. Two ways
that goes missing in a long-running launch: the process inherited SIGINT as ignored (a
non-interactive shell starts background jobs so, as CI runners and scripts do), and Python
then installs no handler at all; or the exception is raised inside a weakref callback or a
`__del__` during garbage collection, where Python prints "Exception ignored" and drops it.
`catch_ctrl_c` fixes the first and records every SIGINT; loops that wait (the launcher on its
workers, a worker between trials) call `raise_if_interrupted` to re-raise a dropped one.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def catch_ctrl_c() -> None:
    """Turn SIGINT into KeyboardInterrupt (recorded) even if it was inherited as ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived, in case Python dropped the first one."""
    if _requested.is_set():
        raise KeyboardInterrupt
