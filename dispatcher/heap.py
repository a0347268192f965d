"""The cyclic garbage collector around bursts of many small objects that form no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector while a burst of acyclic objects (rows, targets) is built.

    Each full collection rescans every object alive, so building 100,000 volunteers' rows
    triggered collections that cost more than the building itself (a second of a
    100,000-volunteer alert's planning); reference counting still frees them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
