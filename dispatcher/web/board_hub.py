"""The boards this server process is showing: one producer per alert (not per browser),
looking for changes only while someone watches, each event encoded once and handed to
every watcher's stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from dispatcher.board_feed import BoardFeed
from dispatcher.errors import NotFound
from dispatcher.metrics import BOARD_CPU
from dispatcher.runtime import Runtime

#: How often a watched board looks for changes.
BOARD_POLL_SECONDS = 0.5
#: Events waiting for one browser before its stream is ended (it reconnects with
#: Last-Event-ID and catches up): a stalled browser never holds the others back.
WATCHER_BACKLOG = 64
#: A board nobody has watched or loaded for this long is dropped (its producer's memory:
#: a row stamp per recipient). A browser coming back later gets a snapshot, as after a
#: restart; a server running for years keeps only the boards in use.
BOARD_IDLE_SECONDS = 15 * 60
#: How long closing the boards waits for looks still reading.
LOOKS_END_SECONDS = 30.0

log = logging.getLogger(__name__)


def sse(event: dict[str, Any], kind: str) -> str:
    """One server-sent event: its id (for Last-Event-ID), its kind, its JSON."""
    return (f"id: {event['event_id']}\nevent: {kind}\n"
            f"data: {json.dumps(event, default=str, separators=(',', ':'))}\n\n")


@contextlib.contextmanager
def board_work() -> Iterator[None]:
    """The block's CPU time, on the thread that runs it, counted as the boards'
    (`aln_board_cpu_seconds_total`)."""
    started = time.thread_time()
    try:
        yield
    finally:
        BOARD_CPU.inc(time.thread_time() - started)


def seq_of(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


@dataclass
class _Board:
    feed: BoardFeed
    watchers: set[asyncio.Queue[tuple[int, str] | None]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    #: When it was last asked for (a page, a stream, a look), by the hub's clock.
    used_at: float = 0.0

    def idle(self) -> bool:
        return not self.watchers and (self.task is None or self.task.done())


class BoardHub:
    """Per alert: one `BoardFeed`, the queues of its watchers, and the task feeding them."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self._rt = rt
        self._boards: dict[int, _Board] = {}
        self._creating = threading.Lock()
        self._clock = clock
        #: Looks running in a thread: a producer cancelled (its last watcher gone) does
        #: not stop its look's thread, which reads until done; `close` waits for them,
        #: so nothing reads the database after the server has shut its boards.
        self._looks: set[asyncio.Task[dict[str, Any] | None]] = set()

    def __len__(self) -> int:
        """How many boards this process holds."""
        return len(self._boards)

    def feed(self, alert_id: int) -> BoardFeed:
        return self._board(alert_id).feed

    def _board(self, alert_id: int) -> _Board:
        # Page loads (threads) and streams (the event loop) may ask at once: one board.
        with self._creating:
            now = self._clock()
            for stale in [a for a, b in self._boards.items() if a != alert_id and b.idle()
                          and now - b.used_at > BOARD_IDLE_SECONDS]:
                del self._boards[stale]
            board = self._boards.get(alert_id)
            if board is None:
                board = self._boards[alert_id] = _Board(BoardFeed(alert_id))
            board.used_at = now
            return board

    def snapshot(self, alert_id: int) -> dict[str, Any]:
        """The whole board now (blocking: call it from a thread). Boards only read, in one
        snapshot beside the writers (`Database.reading`): on SQLite a look no longer
        takes the writers' lock, which the replies' intake then waited for."""
        with board_work(), self._rt.db.reading() as session:
            # No statement before the feed's lock: the transaction reads the database as
            # of its first one, and a look taken in between would number its event past
            # a snapshot older than it (the browser then never got that change).
            try:
                return self.feed(alert_id).snapshot(session)
            except NotFound:
                self._forget(alert_id)  # no producer for an alert that does not exist
                raise

    def _forget(self, alert_id: int) -> None:
        """Drop a board nobody watches (one asked for an alert that does not exist)."""
        with self._creating:
            board = self._boards.get(alert_id)
            if board is not None and board.idle():
                del self._boards[alert_id]

    @contextlib.asynccontextmanager
    async def watch(self, alert_id: int) -> AsyncIterator[asyncio.Queue[tuple[int, str] | None]]:
        """A queue of (seq, encoded event) for one browser; None in it ends the stream."""
        board = self._board(alert_id)
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(WATCHER_BACKLOG)
        board.watchers.add(queue)
        if board.task is None or board.task.done():
            board.task = asyncio.create_task(self._produce(board))
        try:
            yield queue
        finally:
            board.watchers.discard(queue)
            board.used_at = self._clock()
            if not board.watchers and board.task is not None:
                board.task.cancel()
                board.task = None

    async def _produce(self, board: _Board) -> None:
        loop = asyncio.get_running_loop()
        while board.watchers:
            # A steady beat, not a pause after each look: a slow look (a busy machine)
            # must not stretch the time from a reply to the boards.
            due = loop.time() + BOARD_POLL_SECONDS
            look = asyncio.create_task(run_in_threadpool(self._look, board.feed))
            self._looks.add(look)
            look.add_done_callback(self._looks.discard)
            event = await asyncio.shield(look)
            if event is not None:
                with board_work():
                    item = (seq_of(event["event_id"]), sse(event, "change"))
                for queue in list(board.watchers):
                    try:
                        queue.put_nowait(item)
                    except asyncio.QueueFull:
                        board.watchers.discard(queue)
                        while not queue.empty():
                            queue.get_nowait()
                        queue.put_nowait(None)
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _look(self, feed: BoardFeed) -> dict[str, Any] | None:
        with board_work(), self._rt.db.reading() as session:
            return feed.look(session)

    async def close(self) -> None:
        """Stop every producer, and return once no look is reading any more (or, should
        one hang, after `LOOKS_END_SECONDS`: a server's shutdown is not held forever)."""
        for board in self._boards.values():
            if board.task is not None:
                board.task.cancel()
        if self._looks:
            _, running = await asyncio.wait(self._looks, timeout=LOOKS_END_SECONDS)
            if running:
                log.warning("boards closed with %d look(s) still reading", len(running))
