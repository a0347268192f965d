"""Shared by the reliability tests: starting `aln serve|worker` as a supervisor would,
and reading what the outbox says after a crash."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.exc import DBAPIError

from dispatcher.models import Contact, Delivery, WorkerLease
from dispatcher.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import wait_until

ALN = str(Path(sys.executable).parent / "aln")
#: How long a process may take to come up before it counts as refused.
START_TIMEOUT = 60.0


def start_until_running(kind: str, env: dict[str, str], database_url: str,
                        port: int) -> subprocess.Popen[str]:
    """Start `aln serve` (on `port`) or `aln worker`; return once it runs (healthz
    answers, or its lease row is written); AssertionError with its stderr if it exits."""
    args = [ALN, kind] + (["--port", str(port)] if kind == "serve" else [])
    # stderr to a file: a pipe nobody reads would fill up and stop the process.
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)

    def running() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"aln {kind} exited with {proc.returncode}: "
                                 f"{log.read()[-1500:]}")
        if kind == "serve":
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False
        return proc.pid in lease_pids(database_url)

    wait_until(running, timeout=START_TIMEOUT, interval=0.05, what=f"aln {kind} to run")
    return proc


def lease_pids(database_url: str) -> list[int]:
    """The pids in the worker leases (read without migrating: `aln` may be doing that)."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(WorkerLease.pid)))
    except DBAPIError:  # not migrated yet
        return []
    finally:
        engine.dispose()


def outbox_outcome(database_url: str, secret: str) -> tuple[Counter[str], set[str]]:
    """The deliveries' states, and the contacts of those flagged possibly duplicated."""
    rt = Runtime.open(make_settings(database_url, secret_key=secret))
    try:
        with rt.db.session() as session:
            states = Counter(str(s) for s in session.scalars(select(Delivery.state)))
            flagged = {rt.vault.decrypt(enc) for enc in session.scalars(
                select(Contact.value_enc).join(Delivery, Delivery.contact_id == Contact.id)
                .where(Delivery.possibly_duplicate.is_(True)))}
    finally:
        rt.close()
    return states, flagged
