"""The dashboard's alert list: for each alert, what happened in a few words."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.domain import AlertState, ZoneState
from dispatcher.models import Alert, AlertVersion, AlertZone
from dispatcher.web.localtime import local_time

#: How many alerts the list shows (newest first).
LIST_LENGTH = 50


def alert_list(session: Session, timezone: str) -> list[dict[str, Any]]:
    """The newest alerts with their zone counts, first line of text and a state in words."""
    alerts = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(LIST_LENGTH)).all()
    ids = [a.id for a in alerts]
    counts: dict[int, dict[str, int]] = {}
    for alert_id, state, n in session.execute(
            select(AlertZone.alert_id, AlertZone.state, func.count())
            .where(AlertZone.alert_id.in_(ids)).group_by(AlertZone.alert_id, AlertZone.state)):
        counts.setdefault(alert_id, {})[str(state)] = n
    first_text = {alert_id: body for alert_id, body in session.execute(
        select(AlertVersion.alert_id, AlertVersion.body)
        .where(AlertVersion.alert_id.in_(ids), AlertVersion.number == 1))}
    rows = []
    for a in alerts:
        c = counts.get(a.id, {})
        total = sum(c.values())
        covered = c.get(ZoneState.ACKNOWLEDGED, 0)
        unreached = c.get(ZoneState.UNREACHED, 0)
        waiting = c.get(ZoneState.WAITING, 0)
        body = first_text.get(a.id) or _body_of(a)
        rows.append({
            "id": a.id, "title": a.title, "exercise": a.exercise, "reply_code": a.reply_code,
            "sent_at": local_time(a.sent_at.isoformat(), timezone, "%Y-%m-%d %H:%M")
            if a.sent_at else "",
            "first_line": body.strip().splitlines()[0] if body.strip() else "",
            "what": _what(total, covered, unreached, waiting,
                          cancelled=a.state == AlertState.CANCELLED),
            "state": _state(a.state, total, covered, unreached),
            "ended_badly": a.state == AlertState.COMPLETED and total > 0 and covered == 0,
        })
    return rows


def _body_of(alert: Alert) -> str:
    """A draft has no version yet: the text it was composed with."""
    for texts in (alert.bodies or {}).values():
        return str(texts.get("sms", ""))
    return ""


def _what(total: int, covered: int, unreached: int, waiting: int, *,
          cancelled: bool = False) -> str:
    if not total:
        return "no zones"
    parts = [f"{covered} of {total} zone{'s' if total != 1 else ''} covered"]
    if unreached:
        parts.append(f"{unreached} of {total} zone{'s' if total != 1 else ''} unreached")
    if waiting:
        parts.append(f"{waiting} not covered when cancelled" if cancelled
                     else f"{waiting} waiting")
    return ", ".join(parts)


def _state(state: str, total: int, covered: int, unreached: int) -> str:
    """The state in words: "completed" only when it went well."""
    if state == AlertState.COMPLETED:
        if total and not covered:
            return f"ended: {unreached} zone{'s' if unreached != 1 else ''} unreached"
        if unreached:
            return f"ended: {unreached} zone{'s' if unreached != 1 else ''} unreached, " \
                   f"{covered} covered"
        return "ended: every zone covered"
    return {"sending": "sending", "active": "active", "draft": "draft",
            "cancelled": "cancelled"}.get(str(state), str(state))
