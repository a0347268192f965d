"""A large alert's first wave, written in chunks while the sender sends them.

`send_alert` writes a streamed alert (`Plan.streamed`) with one `fill` deadline per
zone in place of its first tier's rows. Filling one reads the zone's first tier,
skips the volunteers who already have a recipient row (a fill resumed after a
crash), and writes the rest in committed chunks, each claimable by the sender as
soon as it commits; the last chunk's transaction adds the zone's deadlines and
closes the fill. The fill deadline is the durable record that work remains: a
process killed mid-fill leaves it claimed, and the next worker takes it over when
the lease ends (at once when the killed process was on this host).

Each chunk's transaction locks the fill deadline and checks it is still this
filler's: a cancel (which cancels the deadline), or another worker that took the
fill over, stops it before it writes anything more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher import lifecycle
from dispatcher.acks import cover_zone, quorum_met
from dispatcher.db import Database, db_now, db_today
from dispatcher.dispatch.failover import escalate_if_tier_dead
from dispatcher.dispatch.outbox import not_yet_asked, tier_deadlines, tier_messages, write_chunk
from dispatcher.dispatch.targeting import Target, tier_targets, zone_members
from dispatcher.domain import OPEN_ALERT_STATES, DeadlineKind, DeadlineState, ZoneState
from dispatcher.escalation.policy import EscalationPolicy
from dispatcher.heap import collector_paused
from dispatcher.models import Alert, AlertZone, Deadline, Post
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

#: The first chunk is small, so the first message leaves while the rest are written.
FIRST_CHUNK = 500
#: Later chunks: recipients per transaction.
CHUNK = 5000
#: Fills written at once on PostgreSQL, each on its own connection (`run_fills`).
PG_LANES = 2


def run_fills(db: Database, settings: Settings, deadline_ids: Sequence[int],
              worker: str) -> int:
    """Fill each of these claimed fills to the end; returns the recipients written. Only
    the first fill starts with a small chunk: by the next, messages are already leaving.

    On PostgreSQL the fills are shared among `PG_LANES` lanes, each writing on its own
    connection: the server checks each row's foreign keys and updates its indexes in the
    writing connection's process, and one lane kept one core busy while the other
    waited. SQLite has one writer at a time: one lane."""
    lanes = 1 if db.is_sqlite else max(1, min(PG_LANES, len(deadline_ids)))
    split = [list(deadline_ids[i::lanes]) for i in range(lanes)]
    failed: list[Exception] = []
    # The other lanes start once the first chunk has committed: started beside it, they
    # had delayed the first message by 0.1-0.2 s.
    first = threading.Event()
    with ThreadPoolExecutor(lanes - 1 or 1, thread_name_prefix="fill-lane") as pool:
        others = [pool.submit(_run_lane, db, settings, ids, worker, CHUNK, failed, first)
                  for ids in split[1:]]
        try:
            written = _run_lane(db, settings, split[0], worker, FIRST_CHUNK, failed,
                                started=first)
        finally:
            first.set()
        written += sum(lane.result() for lane in others)
    if failed:
        raise failed[0]
    return written


def _run_lane(db: Database, settings: Settings, deadline_ids: list[int], worker: str,
              first_chunk: int, failed: list[Exception],
              after: threading.Event | None = None,
              started: threading.Event | None = None) -> int:
    """One lane's fills, one after the other (once `after` is set, when given; `started`
    is set when its first chunk has committed); a failed fill is logged and added to
    `failed`, and the lane goes on.

    Once the lane's first chunk has committed (the first message waits for nothing
    else), a second thread reads the next zone's wave (`read_wave`, outside the writers'
    lock) while this one writes the zone before it."""
    if after is not None:
        after.wait()
    written = 0
    with ThreadPoolExecutor(1, thread_name_prefix="fill-read") as reader:
        ahead = reader.submit(read_wave, db, deadline_ids[0], worker) if deadline_ids else None

        def read_after(i: int) -> None:
            """Read the wave of the fill after `i`, unless it is being read already."""
            nonlocal ahead
            if ahead is None and i + 1 < len(deadline_ids):
                ahead = reader.submit(read_wave, db, deadline_ids[i + 1], worker)

        def committed(i: int) -> None:
            """A chunk of fill `i` has committed (or the fill ended): the other lanes may
            start, and the next zone's wave is read while this one goes on."""
            if started is not None:
                started.set()
            read_after(i)

        # A fill's targets live as long as it runs, and its chunks' rows die with their
        # chunk: with the collector running, each collection the chunks set off scanned
        # the targets again (a quarter of a 100,000-volunteer alert's enqueue, and pauses
        # of the fan-out beside it). None of them form cycles. Paused for the whole lane,
        # not zone by zone: the first allocation after each zone's end had set off a
        # collection of everything made since (the next zone's wave, read ahead). The
        # pause is the process's: the fan-out beside the fill collects no cycles until
        # the lane ends (its objects are freed by reference counting all the same).
        with collector_paused():
            for i, deadline_id in enumerate(deadline_ids):
                assert ahead is not None
                wave_read, ahead = ahead, None
                if i > 0:
                    # The next zone's wave is read while this one is written, not after
                    # its first chunk: the writer had waited for a quarter of its time.
                    read_after(i)
                try:
                    for n in fill_steps(db, settings, deadline_id, worker,
                                        first_chunk=first_chunk if i == 0 else CHUNK,
                                        wave=wave_read.result(),
                                        queued=deadline_ids[i + 1:]):
                        written += n
                        committed(i)
                except Exception as exc:
                    # The other zones go on; this one is taken over when its lease runs
                    # out.
                    log.exception("fill %s failed; it is taken over when its lease runs out",
                                  deadline_id, extra={"deadline_id": deadline_id})
                    failed.append(exc)
                committed(i)  # also when this fill wrote nothing (taken over, say)
    return written


@dataclass(frozen=True)
class Wave:
    """What a fill writes, read before its first chunk: the zone's first-tier targets,
    and those of them not asked yet (all, unless a crashed fill is resumed)."""

    zone_id: int
    tier: int
    asked_at: datetime
    targets: list[Target]
    fresh: list[Target]


def read_wave(db: Database, deadline_id: int, worker: str) -> Wave | None:
    """The wave of this fill, or None when the fill is not (or no longer) this worker's.
    Reads only (`Database.reading`): it may run beside another fill's writes."""
    with db.reading() as session, collector_paused():
        d = session.get(Deadline, deadline_id)
        if d is None or d.state != DeadlineState.CLAIMED or d.claimed_by != worker:
            return None
        alert = session.get(Alert, d.alert_id)
        assert alert is not None
        post = session.get(Post, alert.post_id)
        assert post is not None
        members = zone_members(session, [d.zone_id], d.tier).get(d.zone_id, [])
        targets = tier_targets(members, d.tier, alert.channels or None,
                               db_today(session, post.timezone))
        fresh = not_yet_asked(session, alert.id, d.zone_id, targets)
        return Wave(d.zone_id, d.tier, alert.sent_at or d.due_at, targets, fresh)


def fill_steps(db: Database, settings: Settings, deadline_id: int, worker: str, *,
               first_chunk: int | None = None, wave: Wave | None = None,
               queued: Sequence[int] = ()) -> Iterator[int]:
    """Fill one zone's first wave, a committed chunk per step (yields the recipients each
    wrote; the first `first_chunk` at most, by default `FIRST_CHUNK`); stops early,
    writing nothing more, when the fill is no longer this worker's. `wave`: the fill's
    wave when already read (`read_wave`); each chunk checks the fill again all the same.
    Each chunk renews the lease of this fill and of the `queued` fills after it (only
    these: another lane's fill is that lane's to renew, and locking it here would wait
    on that lane, which may wait on this one)."""
    if wave is None:
        wave = read_wave(db, deadline_id, worker)
    if wave is None:
        return
    zone_id, tier, asked_at, targets, fresh = (wave.zone_id, wave.tier, wave.asked_at,
                                               wave.targets, wave.fresh)
    del wave
    first = FIRST_CHUNK if first_chunk is None else first_chunk
    # A small first chunk, for the first message; a lane's later zones start with a
    # whole one, sized as any later chunk is.
    sizes = [first] if first < CHUNK and len(fresh) > first else []
    start = 0
    while True:
        size = sizes.pop() if sizes else later_chunk(len(fresh) - start)
        chunk, start = fresh[start:start + size], start + size
        last = start >= len(fresh)
        with db.session() as session:
            d = session.scalars(select(Deadline).where(Deadline.id == deadline_id)
                                .with_for_update()).one()
            if d.state != DeadlineState.CLAIMED or d.claimed_by != worker:
                log.info("fill %s stopped: %s", deadline_id,
                         "cancelled" if d.state == DeadlineState.CANCELLED else "taken over",
                         extra={"alert_id": d.alert_id})
                return
            alert = session.get(Alert, d.alert_id)
            post = session.get(Post, alert.post_id) if alert else None
            az = session.scalars(select(AlertZone).where(
                AlertZone.alert_id == d.alert_id, AlertZone.zone_id == zone_id)).one()
            assert alert is not None and post is not None
            policy = EscalationPolicy.from_dict(alert.policy or {})
            now = db_now(session)
            if az.state != ZoneState.WAITING and policy.stand_down:
                # Covered, and its volunteers told to stand down: the rest are not asked.
                lifecycle.move(d, DeadlineState.DONE)
                d.fired_at = now
                log.info("fill %s stopped: zone covered", deadline_id,
                         extra={"alert_id": d.alert_id})
                return
            if chunk:
                write_chunk(session, alert, az, tier, chunk, policy, asked_at,
                            tier_messages(session, alert, az, post))
            if last:
                _close(session, settings, d, alert, az, targets, policy, asked_at, now)
            # This fill's lease (until its last chunk), and those of the fills queued
            # behind it: a lane of zones of one chunk each renews its queue too.
            renew = [*queued] if last else [deadline_id, *queued]
            if renew:
                session.execute(update(Deadline).where(
                    Deadline.id.in_(renew),
                    Deadline.kind == DeadlineKind.FILL, Deadline.state == DeadlineState.CLAIMED,
                    Deadline.claimed_by == worker)
                    .values(lease_until=now + timedelta(seconds=settings.lease_seconds))
                    .execution_options(synchronize_session=False))
        yield len(chunk)
        if last:
            return


def later_chunk(remaining: int) -> int:
    """How many of the `remaining` recipients a fill's next chunk (after its first)
    writes: `CHUNK`, or all of them when fewer than half a chunk would be left over.
    A zone of 6,667 volunteers is one transaction rather than two: each commit syncs
    SQLite's log, and each chunk reads the fill, the alert and the zone again."""
    return remaining if remaining - CHUNK < CHUNK // 2 else CHUNK


def _close(session: Session, settings: Settings, d: Deadline, alert: Alert, az: AlertZone,
           targets: Sequence[Target], policy: EscalationPolicy, asked_at: datetime,
           now: datetime) -> None:
    """The last chunk's transaction: the fill is done, and the zone gets what a tier
    written at once gets. A zone covered meanwhile needs no window, steps or reminders."""
    lifecycle.move(d, DeadlineState.DONE)
    d.fired_at = now
    if az.state != ZoneState.WAITING:
        return
    tier_deadlines(session, alert, az, d.tier, targets, policy, asked_at)
    session.flush()
    # Judged on the rows as they are: every path of the tier may have failed meanwhile.
    escalate_if_tier_dead(session, alert, az.zone_id, d.tier)
    if policy.mode == "each":
        # Acknowledgements that came while the duties were being written wait for this.
        az = session.scalars(select(AlertZone).where(
            AlertZone.alert_id == alert.id, AlertZone.zone_id == az.zone_id)
            .with_for_update().execution_options(populate_existing=True)).one()
        if (az.state == ZoneState.WAITING and alert.state in OPEN_ALERT_STATES
                and quorum_met(session, alert, az)):
            cover_zone(session, settings, alert, az, now)


class Filling:
    """Fills running in a thread beside a fan-out, which sends their rows as they commit
    (`Sender.send_due(more=filling.more)`). Made inside the event loop that waits."""

    def __init__(self, db: Database, settings: Settings, deadline_ids: Sequence[int],
                 worker: str) -> None:
        self._task: asyncio.Future[int] | None = (
            asyncio.ensure_future(asyncio.to_thread(run_fills, db, settings, deadline_ids,
                                                    worker)) if deadline_ids else None)

    def more(self) -> bool:
        """True while rows are still being written."""
        return self._task is not None and not self._task.done()

    async def wait(self) -> int:
        """The recipients written; a fill's error is raised here (its lease then runs
        out, and a worker takes it over)."""
        return await self._task if self._task is not None else 0
