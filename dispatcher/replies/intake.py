"""Webhooks handed from the web server's event loop to one writer thread, in batches.

Replies and delivery receipts arrive in bursts: a drill to five thousand volunteers
brings thousands of "YES" within a minute, and two or three status callbacks per
message. SQLite takes one writer at a time, so webhooks handled in a thread pool
would each wait for the lock, then pay for their own transaction. Here one thread
takes whatever has arrived since its last commit (up to `MAX_BATCH`) and gives each
kind to its batch handler, which handles it in one transaction; each webhook waits
only for the batch it is in. Under light load a batch is one request and nothing
waits. When the database cannot take a batch at all, its requests wait on local disk
(`dispatcher.replies.spool`) and are replayed once a batch commits again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dispatcher.replies.spool import Spool
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: Most messages in one transaction: enough to amortise the commit, small enough that
#: the write lock is never held long (about 0.5 ms per message).
MAX_BATCH = 64

P = TypeVar("P")
R = TypeVar("R")
#: Handles a batch of one kind of request in one transaction: one result per request,
#: in order. It must not raise for one bad request (it keeps that one aside instead).
BatchHandler = Callable[[Runtime, Sequence[P]], list[R]]
_Item = tuple[BatchHandler[Any, Any], Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class Intake:
    """`await intake.submit(handler, payload)`: the request stored, acted on, committed."""

    def __init__(self, rt: Runtime, max_batch: int = MAX_BATCH,
                 spool: Spool | None = None) -> None:
        self.rt = rt
        self.max_batch = max_batch
        self.spool = spool or Spool(rt.settings.spool_path(), rt.vault)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, handler: BatchHandler[P, R], payload: P) -> R:
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put((handler, payload, loop, future))
        return await future

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="aln-intake",
                                                     daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        """Finish what was submitted, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        self._replay()  # what an earlier run could not store
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            kinds: dict[BatchHandler[Any, Any], list[_Item]] = {}
            for one in batch:
                kinds.setdefault(one[0], []).append(one)
            for handler, items in kinds.items():
                self._handle(handler, items)
            if stop:
                return

    def _handle(self, handler: BatchHandler[Any, Any], batch: list[_Item]) -> None:
        outcomes: list[Any] | BaseException
        payloads = [payload for _, payload, _, _ in batch]
        stored = False
        try:
            outcomes = handler(self.rt, payloads)
            stored = True
        except Exception as exc:  # the database cannot take even one request
            outcomes = self._keep(handler, payloads, exc)
        for i, (_, _, loop, future) in enumerate(batch):
            outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[i]
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:  # the server's loop has closed; nobody is waiting
                pass
        if stored:
            # The database takes writes again: what waited on disk goes in, after this
            # batch's webhooks have their answers.
            self._replay()

    def _replay(self) -> None:
        try:
            self.spool.replay(self.rt)
        except Exception:  # never let the spool stop the intake
            log.exception("replaying kept webhooks failed; they stay on disk")

    def _keep(self, handler: BatchHandler[Any, Any], payloads: list[Any],
              exc: Exception) -> list[Any] | BaseException:
        if self.spool.accepts(handler):
            try:
                return [self.spool.put(handler, payload) for payload in payloads]
            except Exception:
                log.exception("could not keep webhooks on disk either")
        log.error("a batch of %d webhooks could not be stored (%s)", len(payloads), exc)
        return exc  # every webhook in it gets a 5xx


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the request was cancelled (client went away)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
