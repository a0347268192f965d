"""Delivery receipts: Twilio status callbacks (messages and calls) and SendGrid events
move deliveries forward.

Providers reorder and repeat callbacks, so a receipt only ever moves a delivery
to a later state (`domain.delivery_can_move`); a dead path (undelivered, failed,
bounced, dropped) fails over to the volunteer's other channel at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.twilio_whatsapp import OUTSIDE_SESSION
from dispatcher import lifecycle
from dispatcher.db import db_now
from dispatcher.dispatch.failover import on_dead_path
from dispatcher.domain import DEAD_DELIVERY_STATES, DeliveryState, RecipientState, delivery_can_move
from dispatcher.models import Contact, Delivery, Recipient
from dispatcher.replies.inbound import batch_or_alone, keep_failed, store_inbound
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: Twilio MessageStatus -> our delivery state.
TWILIO_STATUS = {
    "accepted": DeliveryState.ACCEPTED, "queued": DeliveryState.ACCEPTED,
    "scheduled": DeliveryState.ACCEPTED, "sending": DeliveryState.SENT,
    "sent": DeliveryState.SENT, "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED, "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED, "canceled": DeliveryState.CANCELLED,
}
#: Twilio CallStatus -> our delivery state. A call that ends unanswered (rang out, busy,
#: a voicemail) is not a dead path: the number is fine, nobody confirmed.
TWILIO_CALL_STATUS = {
    "queued": DeliveryState.ACCEPTED, "initiated": DeliveryState.SENT,
    "ringing": DeliveryState.SENT, "in-progress": DeliveryState.ANSWERED,
    "completed": DeliveryState.DELIVERED, "busy": DeliveryState.BUSY,
    "no-answer": DeliveryState.NO_ANSWER, "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.CANCELLED,
}
#: Twilio's `AnsweredBy` values (answering-machine detection) that are not a person.
MACHINE_ANSWERS = ("machine", "fax")
#: Error codes in callbacks that say the handset may come back (do not mark the number dead).
TWILIO_TEMPORARY = {"30001", "30003", "30005", "30008"}
#: Codes that refused the message, not the number: WhatsApp free text outside the 24-hour
#: session (63016) leaves the path live; the template goes on it (dispatch.failover).
TWILIO_MESSAGE_ONLY = {OUTSIDE_SESSION}
#: SendGrid event -> our delivery state; opens and clicks are not acknowledgements.
SENDGRID_EVENT = {
    "processed": DeliveryState.ACCEPTED, "delivered": DeliveryState.DELIVERED,
    "bounce": DeliveryState.BOUNCED, "dropped": DeliveryState.BOUNCED,
}


#: The most digits a delivery reference (`?ref=`, a row id) has.
REF_DIGITS = 18


def delivery_ref(ref: str | None) -> int | None:
    """The delivery id of our reference, or None when it is not one."""
    if ref and len(ref) <= REF_DIGITS and ref.isascii() and ref.isdigit():
        return int(ref)
    return None


def find_delivery(session: Session, ref: str | None, provider_id: str | None) -> Delivery | None:
    """By our reference (sent with the message) first: a callback may beat our own record."""
    delivery_id = delivery_ref(ref)
    if delivery_id is not None:
        d = session.get(Delivery, delivery_id)
        if d is not None:
            return d
    if provider_id:
        return session.scalar(select(Delivery).where(Delivery.provider_id == provider_id))
    return None


def apply_state(session: Session, d: Delivery, new: DeliveryState, *, error_code: str | None,
                reason: str, recipient_specific: bool, now: datetime | None = None) -> bool:
    """Move the delivery forward if `new` is progress; react to a dead path. True if moved.
    `now`: the batch's time (by default the database's clock, read now)."""
    # A callback may beat the sender's own record (state still `sending`): moving on is
    # right, and the sender only turns `sending` into `accepted`, never backwards.
    current = DeliveryState(d.state)
    if not delivery_can_move(current, new):
        return False
    now = now or db_now(session)
    lifecycle.move(d, new)
    if error_code:
        d.error_code = error_code[:32]
    if new == DeliveryState.DELIVERED:
        d.delivered_at = now
    if new in (DeliveryState.ACCEPTED, DeliveryState.SENT, DeliveryState.ANSWERED,
               DeliveryState.DELIVERED):
        rec = session.get(Recipient, d.recipient_id)
        if rec is not None:
            if rec.notified_at is None:
                rec.notified_at = now
            if rec.state == RecipientState.PENDING:
                lifecycle.move(rec, RecipientState.NOTIFIED)
    if new in DEAD_DELIVERY_STATES:
        d.failed_at = now
        log.warning("delivery %s %s (%s)", d.id, new.value, error_code or "no code",
                    extra={"delivery_id": d.id, "alert_id": d.alert_id})
        on_dead_path(session, d, reason, recipient_specific=recipient_specific)
    return True


def call_state(params: Mapping[str, str]) -> DeliveryState | None:
    """What a call's status callback says about its delivery (None: nothing we track)."""
    new = TWILIO_CALL_STATUS.get((params.get("CallStatus") or "").lower())
    answered_by = (params.get("AnsweredBy") or "").lower()
    if new in (DeliveryState.ANSWERED, DeliveryState.DELIVERED) and answered_by.startswith(
            MACHINE_ANSWERS):
        return DeliveryState.MACHINE
    return new


def apply_call_status(session: Session, params: Mapping[str, str], ref: str | None,
                      now: datetime | None = None) -> bool:
    new = call_state(params)
    if new is None:
        return False
    d = find_delivery(session, ref, params.get("CallSid"))
    if d is None or d.channel != "voice":
        log.info("call status callback for an unknown call; ignored")
        return False
    if not d.provider_id and params.get("CallSid"):
        d.provider_id = params["CallSid"][:100]
    code = params.get("ErrorCode") or params.get("SipResponseCode") or None
    status = params.get("CallStatus", "").lower()
    # A failed call says little about the number (a carrier's bad minute): fail over to
    # the volunteer's other paths, but do not mark this one dead.
    return apply_state(session, d, new, error_code=code,
                       reason=f"twilio call {status} {code or ''}".strip(),
                       recipient_specific=False, now=now)


def apply_twilio_status(session: Session, params: Mapping[str, str], ref: str | None,
                        now: datetime | None = None) -> bool:
    if params.get("CallSid") and not params.get("MessageSid"):
        return apply_call_status(session, params, ref, now)
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    new = TWILIO_STATUS.get(status)
    if new is None:
        return False
    d = find_delivery(session, ref, params.get("MessageSid"))
    if d is None:
        log.info("status callback for an unknown message; ignored")
        return False
    if not d.provider_id and params.get("MessageSid"):
        d.provider_id = params["MessageSid"][:100]
    code = params.get("ErrorCode") or None
    return apply_state(session, d, new, error_code=code,
                       reason=f"twilio {status} {code or ''}".strip(),
                       recipient_specific=code not in TWILIO_TEMPORARY | TWILIO_MESSAGE_ONLY,
                       now=now)


def status_batch(rt: Runtime, batch: Sequence[tuple[Mapping[str, str], str | None]]
                 ) -> list[bool]:
    """Twilio status callbacks (parameters, our `ref`), stored and applied in one
    transaction, as the intake thread calls it. True for each that moved a delivery."""

    def run(session: Session, items: Sequence[tuple[Mapping[str, str], str | None]]
            ) -> list[bool]:
        moved = []
        # One time for the batch (reading PostgreSQL's clock flushed the session, a write
        # per callback), and its deliveries read at once; held for the batch, as the
        # session keeps unchanged rows only while they are used.
        now = db_now(session)
        loaded = load_referenced(session, [ref for _, ref in items])
        for params, ref in items:
            stored = store_inbound(session, rt.vault, "twilio_status", _status_key(params),
                                   params, params.get("To"))
            moved.append(stored is not None
                         and apply_twilio_status(session, params, ref, now))
        del loaded
        return moved

    def failed(session: Session, item: tuple[Mapping[str, str], str | None],
               exc: Exception) -> bool:
        params = item[0]
        keep_failed(session, rt.vault, "twilio_status", _status_key(params), params,
                    params.get("To"), exc)
        return False

    return batch_or_alone(rt.db, batch, run, failed, "status callback")


def load_referenced(session: Session, refs: Sequence[str | None]) -> list[Any]:
    """The deliveries a batch of callbacks names by our reference, and their recipients,
    read in two statements and kept in the session, where `find_delivery` and
    `apply_state` then find them: a query for each, per callback, cost more than the
    rest of the callback's handling."""
    ids = {i for i in map(delivery_ref, refs) if i is not None}
    if not ids:
        return []
    # Locked (PostgreSQL; a SQLite writer is alone), in id order: read once for the batch,
    # a row another process changed meanwhile (an acknowledgement committed) would be
    # written back as it was read. Writers of these rows wait for the batch instead.
    deliveries = list(session.scalars(
        select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
        .with_for_update().execution_options(populate_existing=True)))
    recipients = list(session.scalars(
        select(Recipient).where(Recipient.id.in_({d.recipient_id for d in deliveries}))
        .order_by(Recipient.id).with_for_update()
        .execution_options(populate_existing=True))) if deliveries else []
    return [*deliveries, *recipients]


def _status_key(params: Mapping[str, str]) -> str:
    """A status callback's dedupe key: the same message or call may report each status
    once (a call's answer also by whom it was answered)."""
    if params.get("CallSid") and not params.get("MessageSid"):
        return (f"{params['CallSid']}:{params.get('CallStatus', '')}:"
                f"{params.get('AnsweredBy', '')}")
    return f"{params.get('MessageSid', '')}:{params.get('MessageStatus', '')}"


def _event_key(event: Mapping[str, Any]) -> str:
    return str(event.get("sg_event_id") or "")


def _event_address(event: Mapping[str, Any]) -> str:
    return str(event.get("email") or "")


def sendgrid_batch(rt: Runtime, events: Sequence[Mapping[str, Any]]) -> list[bool]:
    """SendGrid's events (one POST carries many), stored and applied in one transaction;
    events without an `sg_event_id` are ignored (SendGrid always sends one)."""

    def run(session: Session, batch: Sequence[Mapping[str, Any]]) -> list[bool]:
        moved = []
        now = db_now(session)  # as for status callbacks
        loaded = load_referenced(session, [_event_ref(event) for event in batch])
        for event in batch:
            key = _event_key(event)
            stored = key and store_inbound(session, rt.vault, "sendgrid_event", key, event,
                                           _event_address(event))
            moved.append(bool(stored) and apply_sendgrid_event(session, event, now))
        del loaded
        return moved

    def failed(session: Session, event: Mapping[str, Any], exc: Exception) -> bool:
        if key := _event_key(event):
            keep_failed(session, rt.vault, "sendgrid_event", key, event,
                        _event_address(event), exc)
        return False

    return batch_or_alone(rt.db, events, run, failed, "SendGrid event")


def _event_ref(event: Mapping[str, Any]) -> str:
    """Our reference of the delivery a SendGrid event is about (custom arguments)."""
    return str(event.get("aln_delivery") or event.get("aln_ref") or "")


def apply_sendgrid_event(session: Session, event: Mapping[str, Any],
                         now: datetime | None = None) -> bool:
    kind = str(event.get("event", "")).lower()
    if kind in ("spamreport", "unsubscribe", "group_unsubscribe"):
        return _email_opt_out(session, event, now)
    new = SENDGRID_EVENT.get(kind)
    if new is None:
        return False
    d = find_delivery(session, _event_ref(event), None)
    if d is None:
        return False
    reason = f"sendgrid {kind}: {str(event.get('reason') or event.get('type') or '')[:120]}"
    return apply_state(session, d, new, error_code=str(event.get("status") or "")[:32] or None,
                       reason=reason.strip(": "), recipient_specific=True, now=now)


def _email_opt_out(session: Session, event: Mapping[str, Any], now: datetime | None) -> bool:
    d = find_delivery(session, str(event.get("aln_delivery") or ""), None)
    if d is None:
        return False
    contact = session.get(Contact, d.contact_id)
    if contact is None or contact.opted_out:
        return False
    contact.opted_out = True
    contact.opted_out_at = now or db_now(session)
    return True
