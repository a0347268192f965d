"""The worker: sends the outbox and fires deadlines; APScheduler only wakes it up.

All state lives in the database (delivery and deadline rows with leases). The
scheduler holds one date job at the next due time plus a periodic sweep; if it
loses a job (a misfire while the process was down), the sweep and the start-up
pass find the due rows anyway. On SQLite one worker per database file runs; a
second says so and stops, since SQLite has no `SKIP LOCKED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from channels.base import Channel, ChannelKind
from channels.config import ChannelsConfig
from channels.factory import build_channels
from dispatcher.claims import HEARTBEAT_STALE_SECONDS, process_is_gone, worker_id
from dispatcher.db import db_now
from dispatcher.dispatch.fill import Filling
from dispatcher.dispatch.sender import Sender
from dispatcher.domain import DeliveryState
from dispatcher.errors import Refused
from dispatcher.escalation.engine import fire_due, next_due_at
from dispatcher.models import Delivery, WorkerLease
from dispatcher.privacy.retention import run_if_due
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: Pause after a failed tick before trying again.
ERROR_BACKOFF_SECONDS = 1.0
#: How often the worker asks whether the daily retention run is due.
RETENTION_CHECK_SECONDS = 3600.0


def worker_name() -> str:
    return worker_id()


def make_channels(rt: Runtime) -> dict[ChannelKind, Channel]:
    """Channels from settings; must be called inside the event loop that will use them."""
    return build_channels(ChannelsConfig.from_settings(rt.settings))


class Worker:
    """Runs ticks (send due deliveries, fire due deadlines) until stopped."""

    def __init__(self, rt: Runtime, name: str | None = None,
                 channels: Mapping[ChannelKind, Channel] | None = None) -> None:
        self.rt = rt
        self.name = name or worker_name()
        self._channels = channels
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        self.ticks = 0
        self.registered = False

    # --- single-worker guard for SQLite ------------------------------------------------------

    def register(self) -> None:
        """Record this worker; on SQLite refuse to run beside a live one.

        A lease whose process is gone from this host (SIGKILL, a crash) is taken over at
        once, so a supervisor's restart succeeds; a lease from another host can only be
        judged by its heartbeat.
        """
        if self.registered:
            return
        with self.rt.db.session() as session:
            now = self._refuse_beside_a_live_one(session)
            session.add(WorkerLease(name=self.name, host=socket.gethostname(),
                                    pid=os.getpid(), started_at=now, heartbeat_at=now))
        self.registered = True

    def ensure_alone(self) -> None:
        """Refused (one line) if this worker could not register; registers nothing. `aln
        serve` asks before starting its server, whose start-up would print a traceback."""
        with self.rt.db.session() as session:
            self._refuse_beside_a_live_one(session)

    def _refuse_beside_a_live_one(self, session: Session) -> datetime:
        now = db_now(session)
        stale = now - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
        session.execute(delete(WorkerLease).where(WorkerLease.heartbeat_at < stale))
        # A lease whose process is gone from this host is taken over at once: a supervisor
        # restarting a killed `aln serve` must not be refused for 15 s.
        dead = [lease.id for lease in session.scalars(select(WorkerLease))
                if process_is_gone(lease.host, lease.pid, alive_at=lease.heartbeat_at)]
        if dead:
            log.warning("taking over %d worker lease(s) of dead processes", len(dead))
            session.execute(delete(WorkerLease).where(WorkerLease.id.in_(dead)))
        if self.rt.db.is_sqlite:
            other = session.scalar(select(WorkerLease).limit(1))
            if other is not None:
                raise Refused(
                    f"another worker ({other.name}, pid {other.pid} on {other.host}) is "
                    "running on this SQLite database; SQLite allows one worker per file. "
                    "Stop it, or use PostgreSQL (ALN_DATABASE_URL) for several workers.")
        return now

    def heartbeat(self) -> None:
        with self.rt.db.session() as session:
            lease = session.scalar(select(WorkerLease).where(WorkerLease.name == self.name))
            if lease is None:
                session.add(WorkerLease(name=self.name, host=socket.gethostname(),
                                        pid=os.getpid()))
            else:
                lease.heartbeat_at = db_now(session)

    def unregister(self) -> None:
        with self.rt.db.session() as session:
            session.execute(delete(WorkerLease).where(WorkerLease.name == self.name))

    # --- the loop ---------------------------------------------------------------------------

    async def tick(self) -> int:
        """One pass: fire due deadlines (which may enqueue sends), then send what is due;
        a large alert's first wave (an API send, or one a killed process left) is written
        beside the sending, which sends its chunks as they commit."""
        channels = await self._get_channels()
        db, settings = self.rt.db, self.rt.settings
        # Due fills are claimed with the deadlines (one transaction: each one holds SQLite's
        # write lock, which the webhooks of this process wait for).
        fills: list[int] = []
        fired = await asyncio.to_thread(fire_due, db, settings, self.name, fills)
        filling = Filling(db, settings, fills, self.name)
        try:
            sender = Sender(db, settings, self.rt.vault, channels, self.name)
            sent = await sender.send_due(more=filling.more)
        finally:
            written = await filling.wait()
        self.ticks += 1
        return fired + sent + written

    async def drain(self) -> int:
        """Finish all work due now, then return (`aln worker --drain`)."""
        total = 0
        while True:
            n = await self.tick()
            total += n
            if n == 0:
                return total

    async def run(self) -> None:
        """Run until `stop()`; ticks on wake-ups and on the periodic sweep."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.register()
        self._start_scheduler()
        try:
            while not self._stop.is_set():
                try:
                    await self.tick()
                    self.schedule_next()
                except Exception:
                    log.exception("worker tick failed; retrying")
                    await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                sweep = self.rt.settings.sweep_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=sweep)
                self._wake.clear()
        finally:
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
            await self.aclose()
            self.unregister()

    def stop(self) -> None:
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Thread-safe: make the loop tick now (webhooks call this after an ack or a receipt)."""
        # The scheduler's thread or Ctrl-C may call this after the loop has closed.
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                self._loop.call_soon_threadsafe(self._wake.set)

    def _start_scheduler(self) -> None:
        # The scheduler keeps nothing that matters: a date job at the next due time and
        # a sweep. misfire_grace_time=None: a wake-up that came due while busy still runs.
        self.scheduler = BackgroundScheduler(job_defaults={"misfire_grace_time": None,
                                                           "coalesce": True})
        self.scheduler.add_job(self.wake, "interval", seconds=self.rt.settings.sweep_seconds,
                               id="sweep")
        self.scheduler.add_job(self.heartbeat, "interval", seconds=5, id="heartbeat")
        # Hourly, and at start: `run_if_due` reads the last run from the audit log, so
        # retention runs once a day however often the worker restarts.
        self.scheduler.add_job(self.retention, "interval", seconds=RETENTION_CHECK_SECONDS,
                               id="retention", next_run_time=datetime.now(UTC))
        self.scheduler.start()

    def retention(self) -> None:
        """Erase what `ALN_RETENTION_DAYS` says is kept too long, once a day."""
        try:
            run_if_due(self.rt)
        except Exception:
            log.exception("retention failed; trying again within the hour")

    def schedule_next(self) -> None:
        if self.scheduler is None:
            return
        due = _next_due(self.rt)
        if due is None:
            return
        self.scheduler.add_job(self.wake, "date", run_date=due, id="next-due",
                               replace_existing=True)

    async def _get_channels(self) -> Mapping[ChannelKind, Channel]:
        if self._channels is None:
            self._channels = make_channels(self.rt)
        return self._channels

    async def aclose(self) -> None:
        if self._channels:
            for channel in self._channels.values():
                await channel.aclose()
            self._channels = None


def _next_due(rt: Runtime) -> datetime | None:
    due = next_due_at(rt.db)
    with rt.db.session() as session:
        retry = session.scalar(select(Delivery.lease_until).where(
            Delivery.state == DeliveryState.PENDING, Delivery.lease_until.is_not(None))
            .order_by(Delivery.lease_until).limit(1))
    candidates = [d for d in (due, retry) if d is not None]
    return min(candidates) if candidates else None
