"""The cyclic garbage collector around bursts of many small objects that form no cycles."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
#: How many `collector_paused` blocks are running now (in any thread), and whether the
#: collector was on when the first of them began.
_paused = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector while a burst of acyclic objects (rows, targets) is built.

    Each full collection rescans every object alive, so building 100,000 volunteers' rows
    triggered collections that cost more than the building itself (a second of a
    100,000-volunteer alert's planning); reference counting still frees them.

    The collector is process-wide and blocks overlap across threads (a fill beside a status
    read in `aln serve`): the first block in turns it off, the last one out turns it back
    on if it was on, so an overlap never leaves it off for good nor on mid-burst.
    """
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
