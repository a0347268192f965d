"""Claiming due rows with a lease: how several workers share work without doubling it.

On PostgreSQL the candidates are selected `FOR UPDATE SKIP LOCKED`, so two workers
never claim the same row; the lease lets another worker take over rows whose
claimer died. SQLite serialises writers (BEGIN IMMEDIATE), and one worker per
database file is enforced by `dispatcher.worker`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from dispatcher import lifecycle

#: Seconds of disagreement tolerated between the database clock and a process's start
#: time (Linux gives the boot time in whole seconds).
PID_CLOCK_SLACK = 1.0


def claim(session: Session, model: Any, due: ColumnElement[bool], *, worker: str,
          now: datetime, lease_seconds: float, limit: int,
          claimed_state: str, order_by: Sequence[Any] = (),
          **values: Any) -> list[int]:
    """Mark up to `limit` rows matching `due` as claimed by `worker`, other columns set
    from `values` in the same statement; return their ids.

    The caller commits; until then PostgreSQL keeps the rows locked.
    """
    query = select(model.id).where(due).order_by(*(order_by or (model.id,))).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids: list[int] = list(session.scalars(query))
    if not ids:
        return []
    lifecycle.move_rows(session, model, claimed_state, model.id.in_(ids), claimed_by=worker,
                        lease_until=now + timedelta(seconds=lease_seconds), **values)
    return ids


def worker_id() -> str:
    """`host:pid:random`, so a worker on the same host can tell a dead claimer."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def claimer_is_dead(claimed_by: str | None) -> bool:
    """True when the claimer (a `worker_id()`) ran on this host and its process is gone."""
    if not claimed_by:
        return False
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    return pid_text.isdigit() and process_is_gone(host, int(pid_text))


#: A worker whose heartbeat is older than this is presumed dead (the worker guard's rule,
#: and `aln db restore`'s).
HEARTBEAT_STALE_SECONDS = 15.0


def process_is_gone(host: str, pid: int, alive_at: datetime | None = None) -> bool:
    """True when `pid` ran on this host and no longer exists (killed, crashed).

    With `alive_at` (when the process was last known alive), a process now holding that
    pid that started later is another one: pids are reused, and a container restarted
    by its supervisor gets the same low pids again. A process on another host, or one
    we may not signal, counts as alive: only time (a lease, a heartbeat) can tell.
    """
    if host != socket.gethostname() or pid <= 0:
        return False
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    if alive_at is None:
        return False
    started = _process_started_at(pid)
    return started is not None and started > alive_at + timedelta(seconds=PID_CLOCK_SLACK)


def _process_started_at(pid: int) -> datetime | None:
    """When `pid` started, from Linux's /proc; None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text()
                     .splitlines() if line.startswith("btime "))
        ticks = int(stat.rpartition(")")[2].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(btime + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def release_dead_claims(session: Session, model: Any, in_flight_state: str,
                        now: datetime) -> int:
    """End the leases of rows claimed by processes that died on this host (SIGKILL),
    so their work is taken over now rather than when the lease runs out."""
    claimers: Sequence[str | None] = session.scalars(select(model.claimed_by).where(
        model.state == in_flight_state, model.lease_until > now).distinct()).all()
    dead = [c for c in claimers if claimer_is_dead(c)]
    if not dead:
        return 0
    result = session.execute(
        update(model).where(model.state == in_flight_state, model.claimed_by.in_(dead))
        .values(lease_until=now - timedelta(microseconds=1))
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
