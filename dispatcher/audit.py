"""The append-only audit trail: every officer action and alert state change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from dispatcher.models import AuditEvent, table

#: Written on the caller's connection, without the ORM's unit of work: audit rows are
#: never read back in the transaction that writes them.
_APPEND = insert(table(AuditEvent))
_BUFFER = "aln.audit_buffer"
#: The actor of an event nobody authenticated for (a failed login): what the caller
#: claimed goes into the details, clipped, never into the actor column.
ANONYMOUS = "anonymous"
#: Most characters of caller-supplied text kept in an event's details.
MAX_CLAIMED_CHARS = 64


def clipped(text: str) -> str:
    """Caller-supplied text as an event detail: at most MAX_CLAIMED_CHARS, marked if cut."""
    return text if len(text) <= MAX_CLAIMED_CHARS else text[:MAX_CLAIMED_CHARS] + "…"


def record(
    session: Session, actor: str, action: str, *, alert_id: int | None = None, **details: Any
) -> None:
    """Append one event in the caller's transaction (so it commits with the change it records)."""
    row = {"actor": actor, "action": action, "alert_id": alert_id, "details": details}
    buffer: list[dict[str, Any]] | None = session.info.get(_BUFFER)
    if buffer is not None:
        buffer.append(row)
    else:
        session.connection().execute(_APPEND, row)


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Events recorded inside the block are written together, in order, at its end
    (one statement for a batch of replies instead of one per reply)."""
    buffer: list[dict[str, Any]] = []
    session.info[_BUFFER] = buffer
    try:
        yield
    finally:
        del session.info[_BUFFER]
    if buffer:
        session.connection().execute(_APPEND, buffer)
