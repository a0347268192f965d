"""A crashed worker's lease: a restart on the same host takes it over at once.

The single-worker guard (SQLite) asks whether the lease's process still exists on this
host (`dispatcher.claims.process_is_gone`), so a supervisor restarting a killed
`aln serve` is not refused for the 15 s the dead heartbeat still looks fresh; a live
second process, or a lease from another host, is still refused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from channels.simulator.serving import free_port
from channels.simulator.testing import run_simulator
from dispatcher.db import db_now
from dispatcher.errors import Refused
from dispatcher.models import WorkerLease
from dispatcher.runtime import Runtime
from dispatcher.worker import Worker
from tests.conftest import clock_shift_days
from tests.engine import cli_env
from tests.reliability.processes import start_until_running


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host that is not a worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def add_lease(rt: Runtime, pid: int, host: str | None = None,
              heartbeat_age: float = 0.0) -> None:
    with rt.db.session() as session:
        now = db_now(session) - timedelta(seconds=heartbeat_age)
        session.add(WorkerLease(name=f"{host or socket.gethostname()}:{pid}:dead",
                                host=host or socket.gethostname(), pid=pid,
                                started_at=now, heartbeat_at=now))


def leases(rt: Runtime) -> list[int]:
    with rt.db.session() as session:
        return list(session.scalars(select(WorkerLease.pid)))


def test_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(rt: Runtime) -> None:
    add_lease(rt, dead_pid())
    worker = Worker(rt)
    worker.register()  # the dead lease's heartbeat is fresh: before, this was refused
    assert leases(rt) == [os.getpid()]
    worker.unregister()


def test_a_live_second_process_is_still_refused(
        rt: Runtime, sleeper: subprocess.Popen[bytes]) -> None:
    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL takes several workers")
    add_lease(rt, sleeper.pid)
    with pytest.raises(Refused, match=f"pid {sleeper.pid}"):
        Worker(rt).register()


def test_a_lease_from_another_host_waits_for_its_heartbeat(rt: Runtime) -> None:
    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL takes several workers")
    add_lease(rt, dead_pid(), host="another-host.example")
    with pytest.raises(Refused, match="another-host.example"):
        Worker(rt).register()


def test_a_reused_pid_does_not_keep_a_dead_lease_alive(rt: Runtime) -> None:
    if clock_shift_days():
        pytest.skip("compares a lease with the kernel's process start time, which a moved "
                    "Python clock cannot move")
    """The pid now belongs to a process that started after the lease's last heartbeat
    (a container restarted by its supervisor gets the same pids again)."""
    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL takes several workers")
    add_lease(rt, 0, heartbeat_age=5.0)  # written before the newcomer below started
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with rt.db.session() as session:
            lease = session.scalars(select(WorkerLease)).one()
            lease.pid = newcomer.pid
        worker = Worker(rt)
        worker.register()
        assert leases(rt) == [os.getpid()]
        worker.unregister()
    finally:
        newcomer.kill()
        newcomer.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_killed_process_restarts_at_once(database_url: str, command: str) -> None:
    """SIGKILL `aln serve` (or `aln worker`), start it again straight away: it runs."""
    port = free_port()
    with run_simulator(callbacks=False) as sim:
        env = cli_env(database_url, sim, "restart-secret",
                      ALN_PUBLIC_URL=f"http://127.0.0.1:{port}")
        first = start_until_running(command, env, database_url, port)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_until_running(command, env, database_url, port)
        second.terminate()
        second.wait(timeout=30)
