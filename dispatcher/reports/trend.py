"""The trend across exercises: is the network getting better drill after drill?"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.models import Alert
from dispatcher.reports.figures import build_report


def exercise_trend(session: Session, since: date | None = None) -> list[dict[str, Any]]:
    query = select(Alert.id).where(Alert.exercise.is_(True), Alert.msg_type == "alert",
                                   Alert.sent_at.is_not(None)).order_by(Alert.sent_at)
    if since is not None:
        query = query.where(Alert.sent_at >= datetime(since.year, since.month, since.day,
                                                      tzinfo=UTC))
    rows = []
    for alert_id in session.scalars(query):
        report = build_report(session, alert_id)
        s = report["summary"]
        rows.append({"id": alert_id, "title": report["alert"]["title"],
                     "sent_at": report["alert"]["sent_at"], "recipients": s["recipients"],
                     "acknowledgement_rate": s["acknowledgement_rate"],
                     "median_time_to_ack_seconds": s["median_time_to_ack_seconds"],
                     "zones_unreached": s["zones_unreached"], "escalations": s["escalations"]})
    return rows
