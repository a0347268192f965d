"""An inbound SMS or WhatsApp message, understood and acted on: acknowledge, flag for
help, opt out, or keep.

The request is stored first (encrypted, deduplicated by MessageSid), then
processed in the same transaction; whatever happens, the text is kept for the
officers. Choice for a bare "YES" while several alerts wait for the sender's
answer: acknowledge none and answer with their codes, since a wrong guess would
stop escalation in a zone nobody covered. With one waiting alert, YES is for it.

Messages that arrive together are handled together (`receive_batch`, fed by
`dispatcher.replies.intake`): one transaction and a handful of statements for the
batch, with the outcome of handling them one at a time (tests/replies/test_batch.py).

WhatsApp replies come to the same webhook with `From=whatsapp:+E164`: the same rules,
the volunteer found by the same number, but STOP and START move only the WhatsApp path
(and Twilio's carrier opt-out, which a bare YES lifts on SMS, does not exist there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, bindparam, case, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from channels.errors import TWILIO_UNSUBSCRIBED
from channels.masking import mask_contact
from channels.twilio_whatsapp import strip_address
from dispatcher import audit
from dispatcher.acks import LATE_REPLY_WINDOW, Waiting, acknowledge, takes_replies
from dispatcher.compose.templates import pick_language, wording
from dispatcher.crypto import Vault
from dispatcher.db import Database, db_now
from dispatcher.domain import (
    OPEN_ALERT_STATES,
    Channel,
    RecipientState,
    ResponseKind,
    ZoneState,
)
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    InboundMessage,
    Post,
    Recipient,
    Response,
    Volunteer,
    Zone,
    language_list,
    table,
    utcnow,
)
from dispatcher.replies.parser import ParsedReply, ReplyKind, parse_reply
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings

log = logging.getLogger(__name__)
P = TypeVar("P")
R = TypeVar("R")

#: Channels a text reply arrives on; their contact rows hold the same E.164 number.
REPLY_CHANNELS = (Channel.SMS.value, Channel.WHATSAPP.value)
#: Parsed kinds that acknowledge the alert they answer.
ACK_KINDS = (ReplyKind.ACK, ReplyKind.SAFE, ReplyKind.HEADCOUNT)
RESPONSE_KIND = {ReplyKind.ACK: ResponseKind.ACK, ReplyKind.SAFE: ResponseKind.SAFE,
                 ReplyKind.HEADCOUNT: ResponseKind.HEADCOUNT}

# Every statement on this path is built once, on tables rather than ORM entities, and run
# on the session's Core connection: a reply costs a handful of statements and no unit of
# work. (Through the ORM a reply cost 2.4 ms of Python; now about 0.25 ms in a batch.)
_inbound, _responses, _contacts = table(InboundMessage), table(Response), table(Contact)
_volunteers, _recipients, _alerts = table(Volunteer), table(Recipient), table(Alert)
_az, _zones, _posts = table(AlertZone), table(Zone), table(Post)
#: The senders' phone paths and volunteers (by keyed hash of the number), each with the
#: recipient rows of alerts that still take replies (newest alert first), in one query.
_SENDERS = (
    select(_contacts.c.value_hash, _contacts.c.id, _contacts.c.channel, _volunteers.c.id,
           _volunteers.c.name, _volunteers.c.languages, _volunteers.c.post_id,
           _recipients.c.id, _recipients.c.alert_id,
           _recipients.c.zone_id, _recipients.c.tier, _recipients.c.state,
           _alerts.c.reply_code, _alerts.c.exercise, _alerts.c.bodies, _az.c.state,
           _zones.c.name, _alerts.c.state)
    .select_from(
        _contacts.join(_volunteers, _volunteers.c.id == _contacts.c.volunteer_id)
        .outerjoin(_recipients, and_(
            _recipients.c.volunteer_id == _volunteers.c.id,
            _recipients.c.alert_id.in_(select(_alerts.c.id).where(
                takes_replies(bindparam("recent"))).scalar_subquery())))
        .outerjoin(_alerts, _alerts.c.id == _recipients.c.alert_id)
        .outerjoin(_az, and_(_az.c.alert_id == _recipients.c.alert_id,
                             _az.c.zone_id == _recipients.c.zone_id))
        .outerjoin(_zones, _zones.c.id == _recipients.c.zone_id))
    .where(_contacts.c.channel.in_(REPLY_CHANNELS),
           _contacts.c.value_hash.in_(bindparam("digests", expanding=True)))
    .order_by(_alerts.c.id.desc(), _recipients.c.id)
)
_KEEP = insert(_responses)
_OPT_OUT = (update(_contacts).where(_contacts.c.id.in_(bindparam("ids", expanding=True)))
            .values(opted_out=True, opted_out_at=bindparam("at")))
#: A path the sender or a status callback marked dead with Twilio's "unsubscribed
#: recipient" code ("twilio 21610: ...", "twilio failed 21610"): Twilio lifts that block
#: when the number opts back in, so we do too. Other dead reasons stay.
_DEAD_BY_STOP = _contacts.c.dead_reason.like(f"twilio %{TWILIO_UNSUBSCRIBED}%")
_OPT_IN = (update(_contacts)
           .where(_contacts.c.id.in_(bindparam("ids", expanding=True)),
                  or_(_contacts.c.opted_out.is_(True), _DEAD_BY_STOP))
           .values(opted_out=False, opted_out_at=None,
                   dead_reason=case((_DEAD_BY_STOP, None), else_=_contacts.c.dead_reason),
                   dead_at=case((_DEAD_BY_STOP, None), else_=_contacts.c.dead_at)))
_HELP_LINE = select(_posts.c.help_line).where(_posts.c.id == bindparam("id"))
_FAILED = update(_inbound).where(_inbound.c.id == bindparam("i_id")).values(
    error=bindparam("i_error"))
#: The store statement, per database dialect (built on first use).
_STORE: dict[str, Any] = {}


@dataclass(frozen=True)
class InboundResult:
    duplicate: bool
    answer: str | None
    acknowledged_alert: int | None = None
    kind: str | None = None
    #: This reply covered a zone: the worker may have stand-down messages to send.
    queued_work: bool = False


@dataclass(frozen=True)
class SenderVolunteer:
    id: int
    name: str
    languages: list[str]
    post_id: int


@dataclass(frozen=True)
class OpenRecipient:
    """One of the sender's recipient rows in an alert that still takes replies."""

    waiting: Waiting
    volunteer: SenderVolunteer
    reply_code: str
    exercise: bool
    alert_languages: list[str]
    alert_state: str

    @property
    def alert_id(self) -> int:
        return self.waiting.alert_id

    @property
    def acknowledged(self) -> bool:
        return self.waiting.state == RecipientState.ACKNOWLEDGED

    @property
    def awaited(self) -> bool:
        """The alert is still waiting on this volunteer: it is open, their zone is not
        covered, and they have not answered (their tier was asked, or passed the duty on)."""
        return (self.alert_state in OPEN_ALERT_STATES
                and self.waiting.zone_state == ZoneState.WAITING
                and self.waiting.state not in (RecipientState.ACKNOWLEDGED,
                                               RecipientState.CANCELLED))


@dataclass
class Sender:
    """Who sent an SMS, as far as the roster knows: no volunteer for a stranger."""

    #: The sender's contact rows on each reply channel: {contact id: channel}.
    contacts: dict[int, str] = field(default_factory=dict)
    volunteers: list[SenderVolunteer] = field(default_factory=list)
    recipients: list[OpenRecipient] = field(default_factory=list)

    def contact_ids(self, channel: str) -> list[int]:
        """The paths a STOP or START on `channel` moves: that channel's only."""
        return [cid for cid, ch in self.contacts.items() if ch == channel]


def find_senders(conn: Connection, digests: Iterable[str], now: datetime,
                 aliases: Mapping[str, str] | None = None) -> dict[str, Sender]:
    """Who sent each number (by keyed hash); a stranger's hash has an empty Sender.
    `aliases` maps a number's hash under a previous key to its current one (during a key
    rotation a contact's stored hash may still be the old one)."""
    senders = {digest: Sender() for digest in digests}
    if not senders:
        return senders
    aliases = {old: new for old, new in (aliases or {}).items() if new in senders}
    volunteers: dict[int, SenderVolunteer] = {}
    seen: set[tuple[str, int]] = set()
    rows: Iterable[Any] = conn.execute(_SENDERS, {"digests": [*senders, *aliases],
                                                  "recent": now - LATE_REPLY_WINDOW})
    for row in rows:
        (digest, contact_id, channel, vid, name, languages, post_id, rid, alert_id, zone_id,
         tier, state, code, exercise, bodies, zone_state, zone_name, alert_state) = row
        sender = senders[aliases.get(digest, digest)]
        if vid not in volunteers:
            volunteers[vid] = SenderVolunteer(vid, name, language_list(languages), post_id)
            sender.volunteers.append(volunteers[vid])
        sender.contacts.setdefault(contact_id, channel)
        # A recipient row comes once per reply channel the volunteer has: keep it once.
        if rid is not None and (key := (aliases.get(digest, digest), rid)) not in seen:
            seen.add(key)
            sender.recipients.append(OpenRecipient(
                Waiting(rid, alert_id, zone_id, tier, state, zone_name, zone_state),
                volunteers[vid], code, bool(exercise), list(bodies or {}) or ["en"],
                alert_state))
    return senders


def _store_statement(conn: Connection) -> Any:
    stmt = _STORE.get(conn.dialect.name)
    if stmt is None:
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        stmt = _STORE[conn.dialect.name] = insert_(_inbound).values(
            source=bindparam("p_source"), dedupe_key=bindparam("p_key"),
            raw_enc=bindparam("p_raw"), sender_hash=bindparam("p_sender"),
            received_at=bindparam("p_at"), processed_at=bindparam("p_done"),
        ).on_conflict_do_nothing(index_elements=["source", "dedupe_key"]) \
            .returning(_inbound.c.id, _inbound.c.dedupe_key)
    return stmt


def _inbound_row(vault: Vault, source: str, key: str, raw: Mapping[str, object],
                 digest: str | None, at: datetime, done: datetime | None) -> dict[str, object]:
    """The parameters of `_store_statement` for one request: raw text encrypted."""
    return {"p_source": source, "p_key": key[:200], "p_sender": digest,
            "p_raw": vault.encrypt(json.dumps(raw, ensure_ascii=False, default=str)),
            "p_at": at, "p_done": done}


def store_inbound(session: Session, vault: Vault, source: str, dedupe_key: str,
                  raw: Mapping[str, object], sender: str | None) -> int | None:
    """Write the request before acting on it; its id, or None when already received.

    One `INSERT ... ON CONFLICT DO NOTHING`: a repeat (Twilio or SendGrid retrying) is
    recognised without a savepoint or an exception.
    """
    conn = session.connection()
    row = _inbound_row(vault, source, dedupe_key, raw,
                       vault.lookup_hash(sender) if sender else None, utcnow(), None)
    inbound_id: int | None = conn.execute(_store_statement(conn), row).scalar()
    return inbound_id


def receive_sms(db: Database, settings: Settings, vault: Vault,
                params: Mapping[str, str]) -> InboundResult:
    """Store one inbound SMS and act on it in one transaction (see `receive_batch`)."""
    return receive_batch(db, settings, vault, [params])[0]


def receive_batch(db: Database, settings: Settings, vault: Vault,
                  batch: Sequence[Mapping[str, str]]) -> list[InboundResult]:
    """Store each message and act on it; the whole batch commits at once.

    Messages are handled in order, each seeing what the ones before it did (a repeated
    MessageSid is a duplicate even inside one batch). One message that cannot be handled
    costs nothing but itself (see `batch_or_alone`).
    """

    def run(session: Session, messages: Sequence[Mapping[str, str]]) -> list[InboundResult]:
        return Batch(session, settings, vault, db_now(session)).run(messages)

    def failed(session: Session, params: Mapping[str, str], exc: Exception) -> InboundResult:
        keep_failed(session, vault, "twilio_sms", _sid(params), params,
                    sender_number(params)[0] or None, exc)
        return InboundResult(duplicate=False, answer=None)

    return batch_or_alone(db, batch, run, failed, "inbound message")


def sms_batch(rt: Runtime, batch: Sequence[Mapping[str, str]]) -> list[InboundResult]:
    """`receive_batch` as the intake thread calls it."""
    return receive_batch(rt.db, rt.settings, rt.vault, batch)


def batch_or_alone(db: Database, batch: Sequence[P], run: Callable[[Session, Sequence[P]], list[R]],
                   failed: Callable[[Session, P, Exception], R], what: str) -> list[R]:
    """`run` the batch in one transaction. If it fails, the batch is rolled back and each
    request run again alone, so one bad request cannot cost the others; one that fails
    alone is handed to `failed` in a new transaction (to be kept with its error), so what
    a volunteer or a provider said is never lost and nothing half-done remains."""
    try:
        with db.session() as session:
            return run(session, batch)
    except Exception as exc:
        if len(batch) > 1:
            log.warning("a batch of %d %ss failed (%s); handling them one by one", len(batch),
                        what, type(exc).__name__)
            return [batch_or_alone(db, [one], run, failed, what)[0] for one in batch]
        log.exception("%s could not be processed; kept for an officer", what)
        with db.session() as session:
            return [failed(session, batch[0], exc)]


def keep_failed(session: Session, vault: Vault, source: str, key: str,
                raw: Mapping[str, object], sender: str | None, exc: Exception) -> None:
    """Store a request that could not be acted on, unprocessed, with the reason."""
    inbound_id = store_inbound(session, vault, source, key, dict(raw), sender)
    if inbound_id is not None:
        session.connection().execute(_FAILED, {
            "i_id": inbound_id, "i_error": f"{type(exc).__name__}: {exc}"[:500]})


def sender_number(params: Mapping[str, str]) -> tuple[str, str]:
    """The number a message came from, and its channel (`whatsapp:+...` is WhatsApp)."""
    number, whatsapp = strip_address(params.get("From", ""))
    return number, Channel.WHATSAPP.value if whatsapp else Channel.SMS.value


def _sid(params: Mapping[str, str]) -> str:
    return params.get("MessageSid") or params.get("SmsSid") or ""


class Batch:
    """Inbound SMS handled in one transaction, with as few statements as the rules allow.

    Per batch: one insert of every message (repeats fall out by the unique key), one
    query for every sender, one insert of the responses and one of the audit events.
    Per acknowledgement: one update of the recipient row. A sender view read at the start
    is read again when a message earlier in the batch may have changed it (the same
    sender, or a zone covered in the same alert).
    """

    def __init__(self, session: Session, settings: Settings, vault: Vault,
                 now: datetime) -> None:
        self.session, self.settings, self.vault, self.now = session, settings, vault, now
        self.conn = session.connection()
        self.responses: list[dict[str, object]] = []
        self.seen: set[str] = set()
        self.changed_alerts: set[int] = set()

    def run(self, batch: Sequence[Mapping[str, str]]) -> list[InboundResult]:
        phones = [sender_number(params)[0] for params in batch]
        digests = [self.vault.lookup_hash(phone) if phone else None for phone in phones]
        aliases = {old: digest for phone, digest in zip(phones, digests, strict=True)
                   if phone and digest for old in self.vault.lookup_hashes(phone)[1:]}
        with audit.batched(self.session):
            ids = self.store(batch, digests)
            senders = find_senders(self.conn, {d for d, i in zip(digests, ids, strict=True)
                                               if d and i is not None}, self.now, aliases)
            results = []
            for params, phone, digest, inbound_id in zip(batch, phones, digests, ids,
                                                         strict=True):
                if inbound_id is None:
                    results.append(InboundResult(duplicate=True, answer=None))
                    continue
                sender = senders.get(digest, Sender()) if digest else Sender()
                if digest and self._stale(digest, sender):
                    sender = find_senders(self.conn, [digest], self.now, aliases)[digest]
                reply = Reply(self, inbound_id, phone, sender,
                              parse_reply(params.get("Body", "")), sender_number(params)[1])
                results.append(reply.act())
                if digest:
                    self.seen.add(digest)
                if self.session.identity_map or self.session.new or self.session.dirty:
                    # A zone was covered through the ORM: its changes go to the database
                    # before the next message reads there.
                    self.session.flush()
                    self.session.expunge_all()
            if self.responses:
                self.conn.execute(_KEEP, self.responses)
        return results

    def _stale(self, digest: str, sender: Sender) -> bool:
        return digest in self.seen or any(r.alert_id in self.changed_alerts
                                          for r in sender.recipients)

    def store(self, batch: Sequence[Mapping[str, str]],
              digests: list[str | None]) -> list[int | None]:
        """Every message written before any is acted on; None for a repeat."""
        rows, keys = [], []
        first: set[str] = set()
        for params, digest in zip(batch, digests, strict=True):
            key = _sid(params)[:200]
            keys.append(key if key not in first else None)
            if key in first:
                continue
            first.add(key)
            # Marked processed at once: acting on it commits with it, or neither does.
            rows.append(_inbound_row(self.vault, "twilio_sms", key, dict(params), digest,
                                     self.now, self.now))
        returned: Iterable[Any] = self.conn.execute(_store_statement(self.conn), rows)
        stored = {str(key): int(inbound_id) for inbound_id, key in returned}
        return [stored.get(key) if key is not None else None for key in keys]


class Reply:
    """Acting on one stored inbound SMS, within its batch."""

    def __init__(self, batch: Batch, inbound_id: int, phone: str, sender: Sender,
                 parsed: ParsedReply, channel: str = Channel.SMS.value) -> None:
        self.batch, self.session, self.settings = batch, batch.session, batch.settings
        self.conn, self.now = batch.conn, batch.now
        self.parsed, self.inbound_id, self.sender = parsed, inbound_id, sender
        self.channel = channel
        self.masked = mask_contact(phone) if phone else None
        first = sender.volunteers[0] if sender.volunteers else None
        self.volunteer = first
        self.lang = first.languages[0] if first and first.languages else "en"

    def say(self, key: str, **values: object) -> str:
        return wording(self.settings.config_dir, self.lang, key, **values)

    def keep(self, kind: ResponseKind, target: OpenRecipient | None = None,
             **fields: object) -> None:
        """The message as understood, for the officers' inbox and the report."""
        row: dict[str, object] = {
            # Stamped by the database clock: a WhatsApp one opens a 24-hour session.
            "inbound_id": self.inbound_id, "channel": self.channel, "kind": kind.value,
            "created_at": self.now,
            "text": self.parsed.text[:2000], "sender_masked": self.masked,
            "volunteer_id": self.volunteer.id if self.volunteer else None,
            "alert_id": None, "recipient_id": None, "zone_id": None, "urgent": False,
            "headcount_reached": None, "headcount_need_help": None, **fields}
        if target is not None:
            row.update(alert_id=target.alert_id, recipient_id=target.waiting.recipient_id,
                       zone_id=target.waiting.zone_id, volunteer_id=target.volunteer.id)
        self.batch.responses.append(row)

    def act(self) -> InboundResult:
        kind = self.parsed.kind
        if kind in (ReplyKind.OPT_OUT, ReplyKind.OPT_IN):
            return self.opt(kind == ReplyKind.OPT_OUT)
        if kind == ReplyKind.ACK and self.parsed.opts_in and self.channel == Channel.SMS:
            # A bare YES: Twilio has opted the number back in, and it acknowledges too.
            self.resume(always_audit=False)
        if self.volunteer is None:
            self.keep(ResponseKind.FIELD_REPORT, urgent=kind == ReplyKind.HELP)
            log.info("message from an unknown number %s kept as a field report", self.masked)
            return InboundResult(False, self.say("field_report"),
                                 kind=ResponseKind.FIELD_REPORT)
        target, candidates = choose(self.sender.recipients, self.parsed.code)
        if target is not None:
            self.volunteer = target.volunteer
            self.lang = pick_language(target.volunteer.languages, target.alert_languages, "en")
        if kind == ReplyKind.HELP:
            return self.help(target)
        if kind == ReplyKind.INFO:
            return self.info(target)
        if kind in ACK_KINDS:
            return self.acknowledge(target, candidates)
        self.keep(ResponseKind.FIELD_REPORT, target)
        return InboundResult(False, self.say("field_report"), kind=ResponseKind.FIELD_REPORT)

    def opt(self, out: bool) -> InboundResult:
        # Twilio's own keywords: STOP blocks the number at Twilio too, START lifts it.
        kind = ResponseKind.OPT_OUT if out else ResponseKind.OPT_IN
        self.keep(kind)
        ids = self.sender.contact_ids(self.channel)
        if out:
            if ids:
                self.conn.execute(_OPT_OUT, {"ids": ids, "at": self.now})
            # Ids, never the number or a name: the audit log is append-only and must
            # not keep what `aln roster erase` removes (see dispatcher/privacy/erasure.py).
            audit.record(self.session, "volunteer", "contact.opted_out", contact_ids=ids,
                         channel=self.channel)
        else:
            self.resume(always_audit=True)
        key = kind.value if self.channel == Channel.SMS else f"{kind.value}_{self.channel}"
        return InboundResult(False, self.say(key), kind=kind)

    def resume(self, *, always_audit: bool) -> None:
        """The number is opted in again at Twilio: clear our opt-out and a STOP-dead path."""
        changed = 0
        ids = self.sender.contact_ids(self.channel)
        if ids:
            changed = self.conn.execute(_OPT_IN, {"ids": ids}).rowcount
        if changed or always_audit:
            audit.record(self.session, "volunteer", "contact.opted_in", contact_ids=ids,
                         channel=self.channel)

    def info(self, target: OpenRecipient | None) -> InboundResult:
        """INFO is Twilio's help keyword for "what is this number?": answered with the
        embassy's line, kept, but not raised to officers as an urgent HELP."""
        assert self.volunteer is not None
        self.keep(ResponseKind.INFO, target)
        help_line = self.conn.execute(_HELP_LINE, {"id": self.volunteer.post_id}).scalar()
        return InboundResult(False, self.say("info_answer", help_line=help_line or ""),
                             kind=ResponseKind.INFO)

    def help(self, target: OpenRecipient | None) -> InboundResult:
        assert self.volunteer is not None
        self.keep(ResponseKind.HELP, target, urgent=True)
        audit.record(self.session, "volunteer", "volunteer.needs_help",
                     alert_id=target.alert_id if target else None, volunteer_id=self.volunteer.id)
        help_line = self.conn.execute(_HELP_LINE, {"id": self.volunteer.post_id}).scalar()
        return InboundResult(False, self.say("help_answer", help_line=help_line or ""),
                             kind=ResponseKind.HELP)

    def acknowledge(self, target: OpenRecipient | None,
                    candidates: list[OpenRecipient]) -> InboundResult:
        assert self.volunteer is not None
        if target is None and candidates:
            # Shown on each candidate alert's board, for an officer to attach (audited).
            for candidate in candidates:
                self.keep(ResponseKind.AMBIGUOUS, candidate)
            codes = ", ".join(sorted({r.reply_code for r in candidates}))
            return InboundResult(False, self.say("ack_which", codes=codes),
                                 kind=ResponseKind.AMBIGUOUS)
        if target is None:
            self.keep(ResponseKind.UNPARSED)
            return InboundResult(False, self.say("field_report"), kind=ResponseKind.UNPARSED)
        parsed = self.parsed
        kind = RESPONSE_KIND[parsed.kind]
        self.keep(kind, target, headcount_reached=parsed.headcount_reached,
                  headcount_need_help=parsed.headcount_need_help)
        # A volunteer serving two zones answers once for both.
        outcomes = [acknowledge(self.session, self.settings, r.waiting, at=self.now,
                                via=self.channel)
                    for r in self.sender.recipients if r.alert_id == target.alert_id]
        if any(o.covered for o in outcomes):
            self.batch.changed_alerts.add(target.alert_id)
        code = f"EXERCISE {target.reply_code}" if target.exercise else target.reply_code
        name = self.volunteer.name.split()[0] if self.volunteer.name.split() else ""
        if parsed.kind == ReplyKind.HEADCOUNT:
            answer = self.say("headcount_thanks", name=name,
                              reached=parsed.headcount_reached or 0,
                              need_help=parsed.headcount_need_help or 0, code=code)
        elif parsed.kind == ReplyKind.SAFE:
            answer = self.say("safe_thanks", name=name, code=code)
        else:
            answer = self.say("ack_thanks", name=name, zone=", ".join(o.zone for o in outcomes),
                              code=code)
        return InboundResult(False, answer, acknowledged_alert=target.alert_id, kind=kind,
                             queued_work=any(o.covered for o in outcomes))


def choose(recipients: list[OpenRecipient],
           code: str | None) -> tuple[OpenRecipient | None, list[OpenRecipient]]:
    """The recipient row a reply answers, or none and the alerts it could answer.

    With a code: the newest alert with that code. Without: the alert still waiting on
    this volunteer (`OpenRecipient.awaited`); alerts that are finished or only in their
    late-reply window count only when no alert is waiting. Several candidates are
    ambiguous: nothing is acknowledged, since a wrong guess would stop escalation in a
    zone nobody covered. Returns (target, candidates), one row per candidate alert.
    """
    if not recipients:
        return None, []
    if code:
        matching = [r for r in recipients if r.reply_code == code]
        if not matching:
            return None, []
        newest = matching[0].alert_id
        return _prefer_waiting([r for r in matching if r.alert_id == newest]), []
    for pool in ([r for r in recipients if r.awaited],
                 [r for r in recipients if not r.acknowledged
                  and r.waiting.state != RecipientState.CANCELLED]):
        alerts = list(dict.fromkeys(r.alert_id for r in pool))
        if len(alerts) == 1:
            return _prefer_waiting([r for r in recipients if r.alert_id == alerts[0]]), []
        if len(alerts) > 1:
            return None, [next(r for r in pool if r.alert_id == a) for a in alerts]
    # Every alert was answered already: a repeat goes to the newest, changing nothing.
    newest = recipients[0].alert_id
    return _prefer_waiting([r for r in recipients if r.alert_id == newest]), []


def _prefer_waiting(recipients: list[OpenRecipient]) -> OpenRecipient:
    """A volunteer in two zones answers once: the zone still waiting comes first."""
    for r in recipients:
        if not r.acknowledged:
            return r
    return recipients[0]
