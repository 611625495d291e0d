"""Ctrl-C as a stop request, seen at safe points.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. Inside a
database call (SQLAlchemy's pool ping, a commit) that leaves the connection mid-transaction, so
the cleanup that should fail the interrupted trials fails itself and the process exits 1 instead
of 130. So the code that writes to a study (`launch`, `worker`, `retrain`) runs under
`ctrl_c_as_request`: the first SIGINT only sets an event; the loops check it between their
storage, Ray and training calls (`raise_if_interrupted`, or the event as a worker's stop
switch) and wait in slices of at most `CHECK_EVERY_S`. A second SIGINT raises at once: the user
insists. Everywhere else `catch_ctrl_c` keeps Python's behaviour, also when SIGINT was inherited
as ignored (a non-interactive shell starts background jobs so, as CI runners and scripts do, and
Python then installs no handler at all).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The longest a loop that waits may go without looking at the stop request.
CHECK_EVERY_S = 0.5

_requested = threading.Event()
# How many `ctrl_c_as_request` blocks the main thread is in: the outermost one owns the handler.
_depth = 0


def _raise(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def _request(signum: int, frame: FrameType | None) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def catch_ctrl_c() -> None:
    """Turn SIGINT into KeyboardInterrupt even if it was inherited as ignored."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, _raise)


@contextmanager
def ctrl_c_as_request() -> Iterator[threading.Event]:
    """Within: the first SIGINT sets the returned event and raises nothing; a second raises
    KeyboardInterrupt. On leaving, a request the body did not act on raises KeyboardInterrupt,
    so a caller always learns that the user asked to stop. Blocks nest (the CLI opens one
    before its command imports torch, whose import a KeyboardInterrupt would leave half done;
    the API function it calls opens another); off the main thread, where no signal arrives, it
    only yields the event."""
    global _depth
    if not _in_main_thread():
        yield _requested
        return
    if _depth == 0:
        _requested.clear()
        previous = signal.signal(signal.SIGINT, _request)
    _depth += 1
    try:
        yield _requested
    finally:
        _depth -= 1
        if _depth == 0:
            signal.signal(signal.SIGINT, previous)
    raise_if_interrupted()


def stop_requested() -> bool:
    """Whether Ctrl-C was pressed in this process."""
    return _requested.is_set()


def raise_if_interrupted() -> None:
    """At a safe point: raise KeyboardInterrupt if a stop was requested."""
    if _requested.is_set():
        raise KeyboardInterrupt
