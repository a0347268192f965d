"""`aln retention apply`: personal data kept no longer than `ALN_RETENTION_DAYS`.

Two things age out: a volunteer whose every term ended more than N days ago (by the
post's calendar, from the database clock) is erased as `aln roster erase` would; and
the text of every inbound message received more than N days ago (the stored request
and the reply's text and sender mask) is removed. What the reports count stays: reply
kinds, headcounts, times, delivery outcomes.

The worker runs it once a day. When it last ran is read from the audit log (the
database is the source of truth), so a worker restarted every hour still runs it daily
and several workers run it about once between them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from dispatcher import audit
from dispatcher.db import db_now, db_today
from dispatcher.models import AuditEvent, InboundMessage, Membership, Post, Response, Volunteer
from dispatcher.privacy.erasure import ERASED_REQUEST, compact_database, erase_volunteer
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: The audit action that records a run (and tells the worker when the last one was).
ACTION = "retention.applied"
#: How often the worker runs it.
PERIOD = timedelta(days=1)


@dataclass
class RetentionResult:
    days: int
    volunteers: list[str] = field(default_factory=list)  # pseudonyms
    inbound: int = 0
    responses: int = 0
    audit_rows_quoting: int = 0
    unsearchable: list[str] = field(default_factory=list)
    compacted: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_retention(rt: Runtime, days: int, *, actor: str = "cli") -> RetentionResult:
    """Erase what is older than `days`; audited (one event per volunteer, one per run)."""
    result = RetentionResult(days)
    expired: list[tuple[int, str]] = []
    with rt.db.session() as session:
        now = db_now(session)
        for post in session.scalars(select(Post)):
            cutoff = db_today(session, post.timezone) - timedelta(days=days)
            last_term = (select(Membership.volunteer_id,
                                func.max(Membership.term_end).label("last"))
                         .group_by(Membership.volunteer_id).subquery())
            ended: list[Any] = list(session.execute(
                select(Volunteer.id, last_term.c.last)
                .join(last_term, last_term.c.volunteer_id == Volunteer.id)
                .where(Volunteer.post_id == post.id, Volunteer.kind == "clv",
                       last_term.c.last < cutoff)))
            expired += [(vid, f"retention: every term ended by {last}") for vid, last in ended]
    for vid, reason in expired:
        erased = erase_volunteer(rt, vid, actor=actor, reason=reason, compact=False)
        result.volunteers.append(erased.pseudonym)
        result.audit_rows_quoting += erased.audit_rows_quoting
        result.unsearchable += erased.unsearchable
    with rt.db.session() as session:
        before = now - timedelta(days=days)
        result.inbound = session.execute(
            update(InboundMessage)
            .where(InboundMessage.received_at < before, InboundMessage.raw_enc != ERASED_REQUEST)
            .values(raw_enc=ERASED_REQUEST, sender_hash=None)).rowcount or 0  # type: ignore[attr-defined]
        result.responses = session.execute(
            update(Response).where(Response.created_at < before,
                                   (Response.text != "") | Response.sender_masked.is_not(None))
            .values(text="", sender_masked=None)).rowcount or 0  # type: ignore[attr-defined]
        audit.record(session, actor, ACTION, days=days, volunteers=len(result.volunteers),
                     inbound=result.inbound, responses=result.responses)
    if result.volunteers or result.inbound or result.responses:
        result.compacted = compact_database(rt.db.engine)
    log.info("retention (%d days): %d volunteers erased, %d inbound texts removed", days,
             len(result.volunteers), result.inbound)
    return result


def run_if_due(rt: Runtime) -> RetentionResult | None:
    """What the worker calls periodically: apply retention if `ALN_RETENTION_DAYS` is set
    and the last run (by the audit log) is a day old or more."""
    days = rt.settings.retention_days
    if not days:
        return None
    with rt.db.session() as session:
        last = session.scalar(select(func.max(AuditEvent.at)).where(AuditEvent.action == ACTION))
        if last is not None and db_now(session) - last < PERIOD:
            return None
    return apply_retention(rt, days, actor="system")
