"""Sending the outbox: claim due delivery rows, hand them to the channels, record the fate.

A delivery is claimed (state `sending`, with a lease), sent, and recorded. A crash
between send and record leaves it `sending` with a lease that runs out; the next
claim re-sends it and flags it possibly duplicated: at-least-once, honestly.
Sends run concurrently (bounded by the channels' limits) while results are
recorded in small batches on a thread, so the database never stalls the fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from channels.base import Channel, ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import ChannelError, PermanentError
from channels.retry import RetryPolicy
from dispatcher import audit, bulk, lifecycle
from dispatcher.claims import claim, release_dead_claims
from dispatcher.compose.composer import ACK_URL_TAG
from dispatcher.compose.templates import wording
from dispatcher.crypto import UNREADABLE_HINT, Unreadable, Vault
from dispatcher.db import Database, db_now
from dispatcher.dispatch.failover import on_dead_path
from dispatcher.dispatch.whatsapp import WhatsAppSend, plan_sends
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    AlertState,
    DeliveryPurpose,
    DeliveryState,
    RecipientState,
)
from dispatcher.models import Alert, Contact, Delivery, Recipient, table
from dispatcher.settings import Settings
from dispatcher.tokens import ack_url

log = logging.getLogger(__name__)

#: Deliveries claimed per transaction, in multiples of the concurrency: enough to keep the
#: provider busy, few enough that a crash leaves little "possibly duplicated".
CLAIM_FACTOR = 2
CLAIM_MIN, CLAIM_MAX = 50, 1000
#: Results written per transaction while a fan-out is running, at most; no more than the
#: concurrency, so a kill leaves at most about twice the concurrency sent but unrecorded
#: (tests/reliability/test_kill_fanout.py).
RECORD_BATCH = 400
#: How long the recorder waits for a batch to fill before writing what it has: each
#: transaction costs a commit (an fsync on SQLite), so a large fan-out writes a few
#: large ones; at a trickle this is all a result waits.
RECORD_LINGER_SECONDS = 0.05
#: Messages at the provider or awaiting their record, at most, per unit of send
#: concurrency: what a crash may send twice (those in flight, and one batch of results).
UNRECORDED_FACTOR = 2
#: How often an empty claim looks again while a streamed alert's rows are being written.
FILL_POLL_SECONDS = 0.02
#: Purposes that stop once the recipient has acknowledged.
STOP_AFTER_ACK = (DeliveryPurpose.REMINDER,)
#: Calls of these purposes ask for a key press (1 confirms, 9 asks for help).
ASKING_PURPOSES = (DeliveryPurpose.ALERT, DeliveryPurpose.FAILOVER, DeliveryPurpose.REMINDER)
#: SMS of these purposes expire at the provider after `sms_validity_seconds` unsent.
EXPIRING_PURPOSES = frozenset(
    {DeliveryPurpose.ALERT, DeliveryPurpose.FAILOVER, DeliveryPurpose.REMINDER})

ProgressFn = Callable[[int], None]


class _Backlog:
    """Messages handed to the provider whose result is not written yet, kept under a
    limit: a send waits for room. A process killed at any moment has at most `limit`
    messages at the provider that the outbox does not know were sent (they go again,
    flagged), however slow its database is at that moment."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.closed = False
        self._room = asyncio.Event()
        self._room.set()

    async def enter(self) -> bool:
        """Room for one more; False once closed (the results can no longer be written)."""
        while self.count >= self.limit and not self.closed:
            self._room.clear()
            await self._room.wait()
        if self.closed:
            return False
        self.count += 1
        return True

    def leave(self, n: int) -> None:
        self.count -= n
        if self.count < self.limit:
            self._room.set()

    def close(self) -> None:
        self.closed = True
        self._room.set()


@dataclass
class Outcome:
    delivery_id: int
    recipient_id: int
    alert_id: int
    receipt: Receipt | None = None
    error: ChannelError | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed delivery: what sending it needs, read as a plain row."""

    id: int
    alert_id: int
    recipient_id: int
    contact_id: int
    channel: str
    purpose: str
    language: str
    subject: str | None
    body: str
    html: str | None
    attempts: int


#: `Claimed`'s fields, in order, as columns.
CLAIMED_COLUMNS = tuple(getattr(Delivery, f.name) for f in fields(Claimed))


#: Why a delivery failed when no configured key opens its contact.
UNREADABLE_CONTACT = f"the contact {UNREADABLE_HINT}"


class Sender:
    """Sends whatever is due in the outbox through the configured channels."""

    def __init__(self, db: Database, settings: Settings, vault: Vault,
                 channels: Mapping[ChannelKind, Channel], worker: str) -> None:
        self.db = db
        self.settings = settings
        self.vault = vault
        self.channels = channels
        self.worker = worker
        self.claim_batch = max(CLAIM_MIN, min(CLAIM_MAX,
                                              CLAIM_FACTOR * settings.send_concurrency))
        self.record_batch = max(1, min(RECORD_BATCH, settings.send_concurrency))
        #: The channels' retry policy also decides when a delivery is tried again.
        self.policy = RetryPolicy.from_config(ChannelsConfig.from_settings(settings))
        #: How each claimed WhatsApp delivery goes (session or template), by delivery id.
        self._whatsapp: dict[int, WhatsAppSend] = {}
        #: During `send_due`: the sends at the provider or awaiting their record, and
        #: which deliveries hold a place in it.
        self._backlog = _Backlog(UNRECORDED_FACTOR * settings.send_concurrency)
        self._gated: set[int] = set()
        #: Alerts a committed record has moved past `sending`: an alert never goes back,
        #: so later batches of theirs need not ask again.
        self._past_sending: set[int] = set()

    async def send_due(self, alert_id: int | None = None,
                       progress: ProgressFn | None = None,
                       more: Callable[[], bool] | None = None) -> int:
        """Send every delivery due now (of one alert, or all); returns how many were tried.

        A pipeline: the next batch is claimed while the current one is at the provider,
        so the provider always has `send_concurrency` requests in flight. While `more()`
        says rows are still being written (a streamed alert's fill), an empty claim waits
        for them rather than ending.
        """
        results: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self._backlog = _Backlog(UNRECORDED_FACTOR * self.settings.send_concurrency)
        self._gated = set()
        recorder = asyncio.create_task(self._record_loop(results, progress))
        # A recorder that stops (a full disk) frees the sends waiting for room: they give
        # up rather than send what could not be written down.
        recorder.add_done_callback(lambda _: self._backlog.close())
        keeper = asyncio.create_task(self._keep_leases())
        in_flight: set[asyncio.Task[None]] = set()
        room = asyncio.Event()
        low_water = self.claim_batch // 2

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if len(in_flight) <= low_water:
                room.set()

        total = 0
        try:
            # A recorder that failed (a full disk) stops the claiming: sends whose results
            # cannot be written would only be sent again later.
            while not recorder.done():
                # Asked before claiming: a fill that ended before this claim has all its
                # rows committed, so an empty claim after it means there is nothing left.
                coming = more is not None and more()
                batch = await asyncio.to_thread(self._claim, alert_id)
                if not batch:
                    if coming:
                        await asyncio.sleep(FILL_POLL_SECONDS)
                        continue
                    break
                total += len(batch)
                for task in self._start_batch(batch, results):
                    in_flight.add(task)
                    task.add_done_callback(finished)
                # Claim the next batch once half of this one is out of the way.
                while len(in_flight) > low_water:
                    room.clear()
                    await room.wait()
            if in_flight:
                await asyncio.gather(*in_flight)
        finally:
            # When claiming failed (a full disk), sends already at the provider still
            # finish and go to the recorder, rather than die unreported with the loop.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await results.put(None)
            try:
                await recorder
            finally:
                # Even when recording failed: rows whose results were not written must
                # come back to the outbox when their lease runs out.
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        return total

    async def _keep_leases(self) -> None:
        """The rows this sender holds stay its own while it works on them: their lease is
        renewed every third of it, so a slow machine (a long batch, a busy database)
        never lets another worker take a message that is at the provider and send it
        twice. A dead sender renews nothing, and its rows are taken over as before."""
        every = max(0.1, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self._renew_leases)
            except Exception as exc:  # a busy database: the next beat tries again
                log.warning("could not renew the send leases of %s: %s", self.worker, exc)

    def _renew_leases(self) -> int:
        with self.db.session() as session:
            now = db_now(session)
            held = select(Delivery.id).where(Delivery.state == DeliveryState.SENDING,
                                             Delivery.claimed_by == self.worker)
            if session.get_bind().dialect.name == "postgresql":
                # In id order, passing over rows the recorder is writing (they leave
                # `sending` anyway): never a deadlock with it.
                held = held.order_by(Delivery.id).with_for_update(skip_locked=True)
            renewed = session.execute(
                update(Delivery).where(Delivery.id.in_(held.scalar_subquery()))
                # Not a change an officer sees: the board's stamp stays as it was.
                .values(lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                        updated_at=Delivery.updated_at))
            return int(renewed.rowcount or 0)  # type: ignore[attr-defined]

    # --- claiming -------------------------------------------------------------------------

    def _claim(self, alert_id: int | None) -> list[tuple[Claimed, str]]:
        with self.db.session() as session:
            now = db_now(session)
            release_dead_claims(session, Delivery, DeliveryState.SENDING, now)
            due = or_(
                and_(Delivery.state == DeliveryState.PENDING,
                     or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now)),
                and_(Delivery.state == DeliveryState.SENDING, Delivery.lease_until < now),
            )
            crashed_q = select(Delivery.id).where(Delivery.state == DeliveryState.SENDING,
                                                  Delivery.lease_until < now)
            if alert_id is not None:
                due = and_(due, Delivery.alert_id == alert_id)
                crashed_q = crashed_q.where(Delivery.alert_id == alert_id)
            # Rows left `sending` by a dead worker may already be at the provider.
            crashed = list(session.scalars(crashed_q))
            if crashed:
                session.execute(update(Delivery).where(Delivery.id.in_(crashed))
                                .values(possibly_duplicate=True))
                for did in crashed:
                    audit.record(session, "system", "delivery.possibly_duplicated",
                                 delivery_id=did)
            ids = claim(session, Delivery, due, worker=self.worker, now=now,
                        lease_seconds=self.settings.lease_seconds, limit=self.claim_batch,
                        claimed_state=DeliveryState.SENDING, attempts=Delivery.attempts + 1)
            if not ids:
                return []
            # Plain rows, not ORM objects: a fan-out claims thousands, and only the rare
            # one that cannot go is loaded as an object, to be moved and failed over.
            rows = session.execute(
                select(*CLAIMED_COLUMNS, Contact.value_enc, Alert.state, Recipient.state)
                .join(Contact, Contact.id == Delivery.contact_id)
                .join(Alert, Alert.id == Delivery.alert_id)
                .join(Recipient, Recipient.id == Delivery.recipient_id)
                .where(Delivery.id.in_(ids)).order_by(Delivery.id)
            ).all()
            ready: list[tuple[Claimed, str]] = []
            dropped: list[int] = []
            for row in rows:
                claimed = Claimed(*row[:len(CLAIMED_COLUMNS)])
                enc, alert_state, rec_state = row[len(CLAIMED_COLUMNS):]
                if _obsolete(claimed, alert_state, rec_state):
                    dropped.append(claimed.id)
                elif claimed.attempts > self.policy.max_claims:
                    delivery = session.get_one(Delivery, claimed.id)
                    lifecycle.move(delivery, DeliveryState.FAILED)
                    delivery.failed_at = now
                    on_dead_path(session, delivery, "gave up after repeated provider errors",
                                 recipient_specific=False)
                else:
                    try:
                        ready.append((claimed, self.vault.decrypt(enc)))
                    except Unreadable:
                        # A lost key: not the path's fault (restoring the key mends it),
                        # but nothing can be sent to it now, so fail over or escalate.
                        delivery = session.get_one(Delivery, claimed.id)
                        lifecycle.move(delivery, DeliveryState.FAILED)
                        delivery.failed_at, delivery.error_message = now, UNREADABLE_CONTACT
                        log.error("delivery %s: contact %s %s", delivery.id,
                                  delivery.contact_id, UNREADABLE_CONTACT,
                                  extra={"alert_id": delivery.alert_id})
                        on_dead_path(session, delivery, UNREADABLE_CONTACT,
                                     recipient_specific=False)
            if dropped:
                lifecycle.move_rows(session, Delivery, DeliveryState.CANCELLED,
                                    Delivery.id.in_(dropped), lease_until=None)
            whatsapp = [d.id for d, _ in ready if d.channel == ChannelKind.WHATSAPP]
            if whatsapp:
                self._whatsapp.update(plan_sends(session, self.settings.config_dir,
                                                 whatsapp, now))
            return ready

    # --- sending --------------------------------------------------------------------------

    def _start_batch(self, batch: Sequence[tuple[Claimed, str]],
                     results: asyncio.Queue[Outcome | None]) -> list[asyncio.Task[None]]:
        by_channel: dict[str, list[tuple[Claimed, Message]]] = {}
        for delivery, to in batch:
            by_channel.setdefault(delivery.channel, []).append(
                (delivery, self._message(delivery, to)))
        tasks = []
        for channel_name, items in by_channel.items():
            channel = self.channels.get(ChannelKind(channel_name))
            if channel is None:
                for d, _ in items:
                    results.put_nowait(Outcome(
                        d.id, d.recipient_id, d.alert_id, error=PermanentError(
                            provider=channel_name, status=None, code="not-configured",
                            message=f"no {channel_name} provider is configured",
                            recipient="", recipient_specific=False)))
                continue
            if channel_name == ChannelKind.EMAIL:
                tasks.append(asyncio.create_task(self._send_many(channel, items, results)))
            else:
                tasks.extend(asyncio.create_task(self._send_one(channel, d, m, results))
                             for d, m in items)
        return tasks

    async def _send_one(self, channel: Channel, d: Claimed, m: Message,
                        results: asyncio.Queue[Outcome | None]) -> None:
        if not await self._backlog.enter():
            return  # never sent: the row comes back to the outbox when its lease ends
        self._gated.add(d.id)
        try:
            receipt = await channel.send(m)
            results.put_nowait(Outcome(d.id, d.recipient_id, d.alert_id, receipt=receipt))
        except ChannelError as exc:
            results.put_nowait(Outcome(d.id, d.recipient_id, d.alert_id, error=exc))

    async def _send_many(self, channel: Channel, items: list[tuple[Claimed, Message]],
                         results: asyncio.Queue[Outcome | None]) -> None:
        answers = await channel.send_many([m for _, m in items])
        for (d, _), answer in zip(items, answers, strict=True):
            if isinstance(answer, ChannelError):
                results.put_nowait(Outcome(d.id, d.recipient_id, d.alert_id, error=answer))
            else:
                results.put_nowait(Outcome(d.id, d.recipient_id, d.alert_id, receipt=answer))

    def _message(self, d: Claimed, to: str) -> Message:
        reference = str(d.id)
        custom = {"aln_delivery": reference, "aln_alert": str(d.alert_id)}
        if d.channel == ChannelKind.SMS:
            validity = (self.settings.sms_validity_seconds if d.purpose in EXPIRING_PURPOSES
                        else None)
            return Message(channel=ChannelKind.SMS, to=to, body=d.body, reference=reference,
                           custom=custom, validity_seconds=validity)
        if d.channel == ChannelKind.VOICE:
            asks = d.purpose in ASKING_PURPOSES
            prompt = wording(self.settings.config_dir, d.language, "voice_prompt") if asks \
                else None
            return Message(channel=ChannelKind.VOICE, to=to, body=d.body, reference=str(d.id),
                           custom=custom, language=d.language, prompt=prompt,
                           voicemail=d.subject if asks else None)
        if d.channel == ChannelKind.WHATSAPP:
            how = self._whatsapp.pop(d.id, None) or WhatsAppSend(False, None, {})
            return Message(channel=ChannelKind.WHATSAPP, to=to, body=d.body,
                           reference=str(d.id), custom=custom, free_text=how.free_text,
                           template_sid=how.template_sid, template_variables=how.variables)
        subs = {ACK_URL_TAG: ack_url(self.settings.public_url, self.vault, d.recipient_id,
                                     d.alert_id)}
        return Message(channel=ChannelKind.EMAIL, to=to, body=d.body, subject=d.subject,
                       html=d.html, reference=str(d.id), custom=custom, substitutions=subs)

    # --- recording ------------------------------------------------------------------------

    async def _record_loop(self, results: asyncio.Queue[Outcome | None],
                           progress: ProgressFn | None) -> None:
        done = False
        while not done:
            first = await results.get()
            if first is None:
                break
            chunk = [first]
            done = _drain(results, chunk, self.record_batch)
            if not done and len(chunk) < self.record_batch:
                # Let a batch fill rather than pay a commit for a handful of results.
                await self._linger(results, len(chunk))
                done = _drain(results, chunk, self.record_batch)
            await asyncio.to_thread(self._record, chunk)
            written = [o.delivery_id for o in chunk if o.delivery_id in self._gated]
            self._gated.difference_update(written)
            self._backlog.leave(len(written))
            if progress:
                progress(len(chunk))

    async def _linger(self, results: asyncio.Queue[Outcome | None], have: int) -> None:
        """Wait until a batch is queued, or the linger time is over."""
        loop = asyncio.get_running_loop()
        until = loop.time() + RECORD_LINGER_SECONDS
        while have + results.qsize() < self.record_batch and loop.time() < until:
            await asyncio.sleep(RECORD_LINGER_SECONDS / 10)

    def _record(self, outcomes: Sequence[Outcome]) -> None:
        """One transaction for a batch of results, run again if PostgreSQL chose it as a
        deadlock's victim (nothing of a failed run is kept)."""
        ok = [o for o in outcomes if o.receipt is not None]
        activate = {o.alert_id for o in ok} - self._past_sending

        def work(session: Session) -> None:
            now = db_now(session)
            if ok:
                _record_accepted(session, ok, now, activate)
            for o in outcomes:
                if o.error is not None:
                    self._record_error(session, o, now)

        self.db.run(work)
        self._past_sending |= activate

    def _record_error(self, session: Session, o: Outcome, now: datetime) -> None:
        err = o.error
        assert err is not None
        d = session.get(Delivery, o.delivery_id)
        if d is None:
            return
        if d.state != DeliveryState.SENDING:
            # A status callback already told this message's fate (the provider took it
            # although our request seemed to fail, e.g. a time-out after it answered):
            # that news is better than ours, and re-sending would send it twice.
            log.info("delivery %s: error %s after a receipt moved it to %s; kept", d.id,
                     err.code or err.status, d.state.value,
                     extra={"delivery_id": d.id, "alert_id": d.alert_id})
            return
        d.error_code = str(err.code or err.status or "")[:32] or None
        d.error_message = str(err.message)[:500]
        d.claimed_by = None
        wait = self.policy.requeue_after(d.attempts, err)
        if wait is None:
            lifecycle.move(d, DeliveryState.FAILED)
            d.failed_at = now
            d.lease_until = None
            log.warning("delivery %s failed (%s %s)%s", d.id, err.provider, err.code,
                        "" if isinstance(err, PermanentError) else " after repeated errors",
                        extra={"delivery_id": d.id, "alert_id": d.alert_id})
            on_dead_path(session, d, f"{err.provider} {err.code}: {err.message}"[:200],
                         recipient_specific=isinstance(err, PermanentError)
                         and err.recipient_specific)
        else:
            # The send's retries gave up for now (an outage): back to the outbox for later.
            lifecycle.move(d, DeliveryState.PENDING)
            d.lease_until = now + timedelta(seconds=wait)
            log.warning("delivery %s: provider still failing (%s), retrying in %.1fs", d.id,
                        err.code or err.status, wait,
                        extra={"delivery_id": d.id, "alert_id": d.alert_id})


def _drain(results: asyncio.Queue[Outcome | None], chunk: list[Outcome], limit: int) -> bool:
    """Move queued results into `chunk`, up to `limit`; True once the end marker is taken."""
    while len(chunk) < limit and not results.empty():
        item = results.get_nowait()
        if item is None:
            return True
        chunk.append(item)
    return False


def _obsolete(d: Claimed, alert_state: str, rec_state: str) -> bool:
    """Re-checked just before sending: nothing goes out for a cancelled alert or after an ack."""
    if alert_state == AlertState.CANCELLED and d.purpose != DeliveryPurpose.CANCEL:
        return True
    return d.purpose in STOP_AFTER_ACK and rec_state == RecipientState.ACKNOWLEDGED


def _record_accepted(session: Session, ok: Sequence[Outcome], now: datetime,
                     activate: Iterable[int]) -> None:
    """Write a batch of receipts; the alerts in `activate` become active (the others are
    known to be past `sending` already)."""
    # On the Core connection, with statements built once: a fan-out runs them for every
    # batch, and building each one and passing it through the ORM cost the recorder more
    # than the database's own work.
    conn = session.connection()
    sql = _record_statements(conn.dialect.name)
    # The last receipt of a delivery is the one kept, as writing them in turn would.
    receipts = {o.delivery_id: o.receipt for o in ok}
    ids = list(receipts)
    rows = [(i, r.provider_id, r.segments)  # type: ignore[union-attr]
            for i, r in receipts.items()]
    if sql.postgresql:
        conn.execute(sql.write_receipts, {
            "b_ids": ids, "b_pids": [r[1] for r in rows], "b_segs": [r[2] for r in rows],
            "b_now": now})
        batch: object = ids
    else:
        batch = json.dumps(ids)
        text = bulk.sqlite_json(rows)
        if text is None:  # a provider id JSON cannot carry to SQLite: row by row
            conn.execute(_WRITE_RECEIPT, [{"b_id": i, "b_pid": pid, "b_seg": seg, "b_now": now}
                                          for i, pid, seg in rows])
        else:
            conn.execute(sql.write_receipts, {"b_rows": text, "b_now": now})
    conn.execute(sql.accept, {"b_ids": batch})
    conn.execute(sql.stamp_notified, {"b_ids": batch, "b_now": now})
    conn.execute(sql.notify, {"b_ids": batch})
    for alert_id in activate:
        conn.execute(_ACTIVATE, {"alert_id": alert_id})


_DELIVERIES, _RECIPIENTS = table(Delivery), table(Recipient)
#: What every receipt writes besides its provider id and segments: it is no longer claimed.
_RECEIPT_VALUES: dict[str, Any] = dict(
    sent_at=bindparam("b_now"), lease_until=None, claimed_by=None,
    # An earlier attempt's error is cleared; a callback's that came first (30003 on an
    # `undelivered` row) is kept.
    error_code=case((_DELIVERIES.c.state == DeliveryState.SENDING.value, None),
                    else_=_DELIVERIES.c.error_code),
    updated_at=bindparam("b_now"))
#: One receipt (bind `b_id`, `b_pid`, `b_seg`, `b_now`): SQLite's way for a provider id
#: JSON cannot carry.
_WRITE_RECEIPT = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id")).values(
    provider_id=bindparam("b_pid"), segments=bindparam("b_seg"), **_RECEIPT_VALUES)
_ACTIVATE = lifecycle.move_statement(Alert, AlertState.ACTIVE,
                                     table(Alert).c.id == bindparam("alert_id"))


@dataclass(frozen=True)
class _RecordStatements:
    """The recorder's statements on one database, each a single statement for a whole
    batch: a batch's rows travel as one JSON array (SQLite) or as arrays (PostgreSQL),
    so neither SQLAlchemy nor the driver binds a parameter per row."""

    postgresql: bool
    #: Each receipt's provider id and segments (bind `b_rows` or `b_ids`, `b_pids`,
    #: `b_segs`; `b_now`).
    write_receipts: Update
    #: A status callback may already have moved it further: only `sending` becomes
    #: `accepted` (bind `b_ids`).
    accept: Update
    #: The recipients reached (bind `b_ids`, `b_now`).
    stamp_notified: Update
    notify: Update


@functools.cache
def _record_statements(dialect: str) -> _RecordStatements:
    postgresql = dialect == "postgresql"
    row_id: Any
    pid: Any
    seg: Any
    if postgresql:
        rows = func.unnest(bindparam("b_ids", type_=ARRAY(BigInteger)),
                           bindparam("b_pids", type_=ARRAY(String)),
                           bindparam("b_segs", type_=ARRAY(Integer))
                           ).table_valued("id", "pid", "seg").render_derived(name="r")
        row_id, pid, seg = rows.c.id, rows.c.pid, rows.c.seg
        in_batch = _DELIVERIES.c.id == any_(bindparam("b_ids", type_=ARRAY(BigInteger)))
    else:
        rows = func.json_each(bindparam("b_rows")).table_valued("value")
        row_id, pid, seg = (rows.c.value.op("->>")(literal_column(str(i))) for i in range(3))
        in_batch = _DELIVERIES.c.id.in_(
            select(func.json_each(bindparam("b_ids")).table_valued("value").c.value))
    # A callback that beat this record may have said the message died (a bounce): that
    # acceptance reached nobody and must not revive a recipient whose paths are all dead.
    # (Spelled out: a literal list would be rendered again on every execution.)
    reached = _RECIPIENTS.c.id.in_(select(_DELIVERIES.c.recipient_id).where(
        in_batch, *(_DELIVERIES.c.state != s.value for s in sorted(DEAD_DELIVERY_STATES))))
    return _RecordStatements(
        postgresql=postgresql,
        write_receipts=update(_DELIVERIES).where(_DELIVERIES.c.id == row_id).values(
            provider_id=pid, segments=seg, **_RECEIPT_VALUES),
        accept=lifecycle.move_statement(Delivery, DeliveryState.ACCEPTED, in_batch,
                                        only_from=(DeliveryState.SENDING,)),
        stamp_notified=update(_RECIPIENTS).where(reached, _RECIPIENTS.c.notified_at.is_(None))
        .values(notified_at=bindparam("b_now")),
        notify=lifecycle.move_statement(Recipient, RecipientState.NOTIFIED, reached,
                                        only_from=(RecipientState.PENDING,
                                                   RecipientState.FAILED)))
