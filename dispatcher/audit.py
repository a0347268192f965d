"""The append-only audit trail: every officer action and alert state change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dispatcher.models import AuditEvent


def record(
    session: Session, actor: str, action: str, *, alert_id: int | None = None, **details: Any
) -> AuditEvent:
    """Append one event in the caller's transaction (so it commits with the change it records)."""
    event = AuditEvent(actor=actor, action=action, alert_id=alert_id, details=details)
    session.add(event)
    return event
