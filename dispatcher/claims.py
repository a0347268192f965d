"""Claiming due rows with a lease: how several workers share work without doubling it.

On PostgreSQL the candidates are selected `FOR UPDATE SKIP LOCKED`, so two workers
never claim the same row; the lease lets another worker take over rows whose
claimer died. SQLite serialises writers (BEGIN IMMEDIATE), and one worker per
database file is enforced by `dispatcher.worker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session


def claim(session: Session, model: Any, due: ColumnElement[bool], *, worker: str,
          now: datetime, lease_seconds: float, limit: int,
          claimed_state: str, order_by: Sequence[Any] = ()) -> list[int]:
    """Mark up to `limit` rows matching `due` as claimed by `worker`; return their ids.

    The caller commits; until then PostgreSQL keeps the rows locked.
    """
    query = select(model.id).where(due).order_by(*(order_by or (model.id,))).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if not ids:
        return []
    session.execute(
        update(model).where(model.id.in_(ids)).values(
            state=claimed_state, claimed_by=worker,
            lease_until=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return ids
