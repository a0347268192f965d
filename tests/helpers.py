"""Test helpers: waiting on a condition with a deadline (never a bare sleep); a write held
open in another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextmanager
def write_held_open(db: Any, statement: Any) -> Iterator[None]:
    """Another thread of this process holds a write transaction open, `statement` run in
    it and not yet committed, while the block runs (a batch of the replies' intake, a
    fill's chunk)."""
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:
        with db.session() as s:
            s.execute(statement)
            writing.set()
            done.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10), "the writer did not start"
        yield
    finally:
        done.set()
        thread.join(30)


def returns_within(seconds: float, work: Callable[[], T]) -> list[T]:
    """`work`'s result in a list, run in a thread; empty when it has not returned within
    `seconds` (it waited on something)."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    return out
