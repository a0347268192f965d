"""A key pressed during an alert call: 1 acknowledges, 9 asks for help, anything else is kept.

Twilio posts the key to our signed gather webhook with the call's parameters
(`CallSid`, `Digits`, `From`, `To`) and `ref`, the delivery the call belongs to (we
wrote it into the Gather's action, and Twilio's signature covers it). The request is
stored first, deduplicated by call and key, so a replayed webhook acts once; 1 goes
through `dispatcher.acks.acknowledge` exactly as an SMS "YES" does (a volunteer in two
zones answers once for both), 9 becomes an urgent HELP in the officers' inbox as an SMS
HELP does. The call itself already says which alert it is about: no reply code needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.acks import acknowledge
from dispatcher.compose.templates import wording
from dispatcher.db import db_now
from dispatcher.domain import Channel, ResponseKind
from dispatcher.models import Alert, Contact, Recipient, Response
from dispatcher.receipts import find_delivery
from dispatcher.replies.inbound import batch_or_alone, keep_failed, store_inbound
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: The keys a call asks for.
ACK_DIGIT = "1"
HELP_DIGIT = "9"
SOURCE = "twilio_gather"


@dataclass(frozen=True)
class GatherResult:
    """What the call says back (in `language`), and what the key did."""

    answer: str | None
    language: str | None = None
    kind: str | None = None
    duplicate: bool = False
    acknowledged_alert: int | None = None
    #: A zone was covered: the worker may have stand-down messages to send.
    queued_work: bool = False


#: Told to a caller whose key could not be stored yet (it waits on disk).
KEPT = GatherResult(answer=None)


def _key(params: Mapping[str, str]) -> str:
    return f"{params.get('CallSid', '')}:{params.get('Digits', '')}"


def gather_batch(rt: Runtime, batch: Sequence[tuple[Mapping[str, str], str | None]]
                 ) -> list[GatherResult]:
    """Keys pressed (parameters, our `ref`), stored and acted on in one transaction, as
    the intake thread calls it."""

    def run(session: Session, items: Sequence[tuple[Mapping[str, str], str | None]]
            ) -> list[GatherResult]:
        return [_one(rt, session, params, ref) for params, ref in items]

    def failed(session: Session, item: tuple[Mapping[str, str], str | None],
               exc: Exception) -> GatherResult:
        params = item[0]
        keep_failed(session, rt.vault, SOURCE, _key(params), params, params.get("To"), exc)
        return KEPT

    return batch_or_alone(rt.db, batch, run, failed, "call key press")


def _one(rt: Runtime, session: Session, params: Mapping[str, str],
         ref: str | None) -> GatherResult:
    digit = (params.get("Digits") or "").strip()[:1]
    d = find_delivery(session, ref, None)
    call_sid = params.get("CallSid") or ""
    if d is None or d.channel != Channel.VOICE or (d.provider_id and d.provider_id != call_sid):
        # Signed, so Twilio sent it, but about no call of ours (or another call than the
        # one this delivery placed): kept for the record, nothing acted on.
        store_inbound(session, rt.vault, SOURCE, _key(params), params, params.get("To"))
        log.info("key press for an unknown call; kept, nothing acknowledged")
        return GatherResult(answer=None)
    alert = session.get(Alert, d.alert_id)
    rec = session.get(Recipient, d.recipient_id)
    assert alert is not None and rec is not None
    config, lang = rt.settings.config_dir, d.language
    if digit == ACK_DIGIT:
        kind, answer = ResponseKind.ACK, wording(config, lang, "voice_thanks")
    elif digit == HELP_DIGIT:
        kind, answer = ResponseKind.HELP, wording(config, lang, "voice_help")
    else:
        kind = ResponseKind.UNPARSED
        answer = wording(config, lang, "voice_other", code=alert.reply_code)
    inbound_id = store_inbound(session, rt.vault, SOURCE, _key(params), params,
                               params.get("To"))
    if inbound_id is None:  # Twilio repeating itself: the same answer, nothing done again
        return GatherResult(answer, lang, kind.value, duplicate=True)
    if not d.provider_id and call_sid:
        d.provider_id = call_sid[:100]
    contact = session.get(Contact, d.contact_id)
    session.add(Response(
        inbound_id=inbound_id, alert_id=alert.id, recipient_id=rec.id,
        volunteer_id=rec.volunteer_id, zone_id=rec.zone_id, channel=Channel.VOICE.value,
        kind=kind.value, text=f"pressed {digit}" if digit else "pressed nothing",
        sender_masked=contact.masked if contact else None, urgent=kind == ResponseKind.HELP))
    if kind == ResponseKind.HELP:
        audit.record(session, "volunteer", "volunteer.needs_help", alert_id=alert.id,
                     volunteer_id=rec.volunteer_id)
    if kind != ResponseKind.ACK:
        return GatherResult(answer, lang, kind.value)
    now = db_now(session)
    # A volunteer serving two zones answers once for both, as by SMS.
    mine = session.scalars(select(Recipient).where(
        Recipient.alert_id == alert.id, Recipient.volunteer_id == rec.volunteer_id)
        .order_by(Recipient.id)).all()
    outcomes = [acknowledge(session, rt.settings, r, at=now, via=Channel.VOICE.value)
                for r in mine]
    return GatherResult(answer, lang, kind.value, acknowledged_alert=alert.id,
                        queued_work=any(o.covered for o in outcomes))

