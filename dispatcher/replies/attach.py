"""An officer attaches an ambiguous acknowledgement to the alert it was meant for.

A bare "YES" that several alerts were waiting for acknowledges none of them
(`replies.inbound.choose`); it is shown on each candidate alert instead. Attaching it
acknowledges the volunteer on that alert, as if they had replied with its code, and
clears it from the other candidates. Audited, like every officer action.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.acks import AckOutcome, acknowledge
from dispatcher.db import db_now
from dispatcher.domain import ResponseKind
from dispatcher.errors import NotFound, Refused
from dispatcher.models import Recipient, Response
from dispatcher.settings import Settings


def unattached(session: Session, alert_id: int) -> list[Response]:
    """The ambiguous replies still shown on an alert."""
    return list(session.scalars(select(Response).where(
        Response.alert_id == alert_id, Response.kind == ResponseKind.AMBIGUOUS.value,
        Response.handled_at.is_(None)).order_by(Response.id)))


def attach_reply(session: Session, settings: Settings, response_id: int,
                 actor: str) -> AckOutcome:
    """Acknowledge the reply's volunteer on the reply's alert; the other candidates drop it."""
    resp = session.get(Response, response_id)
    if resp is None or resp.kind != ResponseKind.AMBIGUOUS.value:
        raise NotFound(f"reply {response_id} is not an ambiguous reply")
    if resp.handled_at is not None:
        raise Refused(f"reply {response_id} was already attached or set aside by "
                      f"{resp.handled_by or 'an officer'}")
    rec = session.get(Recipient, resp.recipient_id) if resp.recipient_id else None
    if rec is None:
        raise NotFound(f"reply {response_id} names no recipient")
    now = db_now(session)
    outcome = acknowledge(session, settings, rec, at=resp.created_at, via="sms",
                          actor=actor)
    for sibling in session.scalars(select(Response).where(
            Response.inbound_id == resp.inbound_id,
            Response.kind == ResponseKind.AMBIGUOUS.value, Response.handled_at.is_(None))):
        sibling.handled_at, sibling.handled_by = now, actor
    audit.record(session, actor, "reply.attached", alert_id=resp.alert_id,
                 response_id=resp.id, recipient_id=rec.id, zone=outcome.zone)
    return outcome
