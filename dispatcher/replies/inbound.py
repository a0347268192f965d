"""An inbound SMS, understood and acted on: acknowledge, flag for help, opt out, or keep.

The request is stored first (encrypted, deduplicated by MessageSid), then
processed in the same transaction; whatever happens, the text is kept for the
officers. Choice for a bare "YES" while several alerts wait for the sender's
answer: acknowledge none and answer with their codes, since a wrong guess would
stop escalation in a zone nobody covered. With one waiting alert, YES is for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from channels.masking import mask_contact
from dispatcher import audit
from dispatcher.acks import acknowledge, open_recipients
from dispatcher.compose.templates import pick_language, wording
from dispatcher.crypto import Vault
from dispatcher.db import Database, db_now
from dispatcher.domain import Channel, RecipientState, ResponseKind
from dispatcher.models import (
    Alert,
    Contact,
    InboundMessage,
    Post,
    Recipient,
    Response,
    Volunteer,
    utcnow,
)
from dispatcher.replies.parser import ParsedReply, ReplyKind, parse_reply
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

#: The sender's phone paths by keyed hash, with their volunteers (built once).
_SENDER = (select(Contact)
           .where(Contact.channel == Channel.SMS.value, Contact.value_hash == bindparam("digest"))
           .options(joinedload(Contact.volunteer)))
_PROCESSED = (update(InboundMessage).where(InboundMessage.id == bindparam("p_id"))
              .values(processed_at=bindparam("p_at")))
#: The store statement, per database dialect (built on first use).
_STORE: dict[str, Any] = {}
#: Parsed kinds that acknowledge the alert they answer.
ACK_KINDS = (ReplyKind.ACK, ReplyKind.SAFE, ReplyKind.HEADCOUNT)


@dataclass(frozen=True)
class InboundResult:
    duplicate: bool
    answer: str | None
    acknowledged_alert: int | None = None
    kind: str | None = None


def store_inbound(session: Session, vault: Vault, source: str, dedupe_key: str,
                  raw: Mapping[str, object], sender: str | None,
                  now: datetime | None = None) -> int | None:
    """Write the request before acting on it; its id, or None when already received.

    One `INSERT ... ON CONFLICT DO NOTHING`: a repeat (Twilio or SendGrid retrying) is
    recognised without a savepoint or an exception.
    """
    dialect = session.get_bind().dialect.name
    stmt = _STORE.get(dialect)
    if stmt is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = _STORE[dialect] = insert(InboundMessage).values(
            source=bindparam("p_source"), dedupe_key=bindparam("p_key"),
            raw_enc=bindparam("p_raw"), sender_hash=bindparam("p_sender"),
            received_at=bindparam("p_at"),
        ).on_conflict_do_nothing(index_elements=["source", "dedupe_key"]) \
            .returning(InboundMessage.id)
    return session.execute(stmt, {
        "p_source": source, "p_key": dedupe_key[:200],
        "p_raw": vault.encrypt(json.dumps(raw, ensure_ascii=False, default=str)),
        "p_sender": vault.lookup_hash(sender) if sender else None,
        "p_at": now or utcnow(),
    }).scalar_one_or_none()


def receive_sms(db: Database, settings: Settings, vault: Vault,
                params: Mapping[str, str]) -> InboundResult:
    """Store the message and act on it in one transaction. If acting fails, that
    transaction is rolled back and the message is stored again on its own with the
    error, so what a volunteer said is never lost and nothing half-done remains."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    sender = params.get("From", "")
    try:
        with db.session() as session:
            now = db_now(session)
            inbound_id = store_inbound(session, vault, "twilio_sms", sid, dict(params),
                                       sender, now)
            if inbound_id is None:
                return InboundResult(duplicate=True, answer=None)
            result = _act(session, settings, vault, inbound_id, sender,
                          parse_reply(params.get("Body", "")), now)
            session.execute(_PROCESSED, {"p_id": inbound_id, "p_at": now})
            return result
    except Exception as exc:
        log.exception("inbound message could not be processed; kept for an officer")
        with db.session() as session:
            inbound_id = store_inbound(session, vault, "twilio_sms", sid, dict(params), sender)
            if inbound_id is not None:
                session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id)
                                .values(error=f"{type(exc).__name__}: {exc}"[:500]))
        return InboundResult(duplicate=False, answer=None)


def _act(session: Session, settings: Settings, vault: Vault, inbound_id: int,
         sender: str, parsed: ParsedReply, now: datetime) -> InboundResult:
    digest = vault.lookup_hash(sender) if sender else ""
    contacts = list(session.scalars(_SENDER, {"digest": digest})) if digest else []
    volunteers = [c.volunteer for c in contacts]
    masked = mask_contact(sender) if sender else None
    lang = volunteers[0].language_list[0] if volunteers and volunteers[0].language_list else "en"

    def say(key: str, **values: object) -> str:
        return wording(settings.config_dir, lang, key, **values)

    def keep(kind: ResponseKind, **fields: object) -> Response:
        resp = Response(inbound_id=inbound_id, channel=Channel.SMS, kind=kind,
                        text=parsed.text[:2000], sender_masked=masked,
                        volunteer_id=volunteers[0].id if volunteers else None, **fields)
        session.add(resp)
        return resp

    if parsed.kind in (ReplyKind.OPT_OUT, ReplyKind.OPT_IN):
        # Twilio's own keywords: STOP blocks the number at Twilio too, START lifts it.
        out = parsed.kind == ReplyKind.OPT_OUT
        for c in contacts:
            c.opted_out, c.opted_out_at = out, now if out else None
        kind = ResponseKind.OPT_OUT if out else ResponseKind.OPT_IN
        keep(kind)
        audit.record(session, "volunteer",
                     "contact.opted_out" if out else "contact.opted_in", contact=masked)
        return InboundResult(False, say(kind.value), kind=kind)
    if not volunteers:
        keep(ResponseKind.FIELD_REPORT, urgent=parsed.kind == ReplyKind.HELP)
        log.info("message from an unknown number %s kept as a field report", masked)
        return InboundResult(False, say("field_report"), kind=ResponseKind.FIELD_REPORT)

    recipients = open_recipients(session, [v.id for v in volunteers], now)
    target, ambiguous = _choose(session, recipients, parsed.code)
    volunteer = target.volunteer if target is not None else volunteers[0]
    lang = pick_language(volunteer.language_list, _languages(session, target), "en")
    name = volunteer.name.split()[0]
    link = {"alert_id": target.alert_id, "recipient_id": target.id, "zone_id": target.zone_id,
            "volunteer_id": volunteer.id} if target is not None else {}

    if parsed.kind == ReplyKind.HELP:
        resp = keep(ResponseKind.HELP, urgent=True)
        for key, value in link.items():
            setattr(resp, key, value)
        audit.record(session, "volunteer", "volunteer.needs_help",
                     alert_id=link.get("alert_id"), volunteer=volunteer.name)
        post = session.get(Post, volunteer.post_id)
        return InboundResult(False, say("help_answer", help_line=post.help_line if post else ""),
                             kind=ResponseKind.HELP)
    if parsed.kind in ACK_KINDS:
        if target is None:
            resp = keep(ResponseKind.UNPARSED)
            codes = ", ".join(sorted({_alert(session, r).reply_code for r in recipients}))
            if ambiguous:
                return InboundResult(False, say("ack_which", codes=codes),
                                     kind=ResponseKind.UNPARSED)
            return InboundResult(False, say("field_report"), kind=ResponseKind.UNPARSED)
        kind = {ReplyKind.ACK: ResponseKind.ACK, ReplyKind.SAFE: ResponseKind.SAFE,
                ReplyKind.HEADCOUNT: ResponseKind.HEADCOUNT}[parsed.kind]
        resp = keep(kind, headcount_reached=parsed.headcount_reached,
                    headcount_need_help=parsed.headcount_need_help)
        for key, value in link.items():
            setattr(resp, key, value)
        # A volunteer serving two zones answers once for both.
        zones = [acknowledge(session, settings, r, at=now, via="sms").zone
                 for r in recipients if r.alert_id == target.alert_id]
        alert = _alert(session, target)
        code = f"EXERCISE {alert.reply_code}" if alert.exercise else alert.reply_code
        if parsed.kind == ReplyKind.HEADCOUNT:
            answer = say("headcount_thanks", name=name, reached=parsed.headcount_reached or 0,
                         need_help=parsed.headcount_need_help or 0, code=code)
        elif parsed.kind == ReplyKind.SAFE:
            answer = say("safe_thanks", name=name, code=code)
        else:
            answer = say("ack_thanks", name=name, zone=", ".join(zones), code=code)
        return InboundResult(False, answer, acknowledged_alert=alert.id, kind=kind)
    resp = keep(ResponseKind.FIELD_REPORT)
    for key, value in link.items():
        setattr(resp, key, value)
    return InboundResult(False, say("field_report"), kind=ResponseKind.FIELD_REPORT)


def _choose(session: Session, recipients: list[Recipient],
            code: str | None) -> tuple[Recipient | None, bool]:
    """The recipient row the reply answers, and whether several alerts made it ambiguous.

    With a code: the newest alert with that code. Without: the one alert this volunteer
    has not yet acknowledged; several such alerts are ambiguous and acknowledge none.
    """
    if not recipients:
        return None, False
    alerts = {r.alert_id for r in recipients}
    if code:
        matching = [r for r in recipients if _alert(session, r).reply_code == code]
        if not matching:
            return None, len(alerts) > 1
        newest = matching[0].alert_id
        return _prefer_waiting([r for r in matching if r.alert_id == newest]), False
    waiting_alerts = {r.alert_id for r in recipients if r.state != RecipientState.ACKNOWLEDGED}
    if len(waiting_alerts) == 1:
        (only,) = waiting_alerts
        return _prefer_waiting([r for r in recipients if r.alert_id == only]), False
    if not waiting_alerts and len(alerts) == 1:
        return recipients[0], False
    return None, True


def _prefer_waiting(recipients: list[Recipient]) -> Recipient:
    """A volunteer in two zones answers once: the zone still waiting comes first."""
    for r in recipients:
        if r.state != RecipientState.ACKNOWLEDGED:
            return r
    return recipients[0]


def _alert(session: Session, r: Recipient) -> Alert:
    return r.alert  # loaded with the recipient by open_recipients


def _languages(session: Session, r: Recipient | None) -> list[str]:
    return list(_alert(session, r).bodies) if r is not None else ["en"]


def volunteer_by_phone(session: Session, vault: Vault, phone: str) -> list[Volunteer]:
    digest = vault.lookup_hash(phone)
    return [c.volunteer for c in session.scalars(select(Contact).where(
        Contact.channel == Channel.SMS, Contact.value_hash == digest))]
