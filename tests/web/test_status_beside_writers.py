"""An alert's status is read beside the writers, not behind them: an officer watching a
large alert (`aln alert status`, `--watch` every second; the API's alert reads the same
way) never holds up the replies' intake, which on SQLite waits for the one writer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text

from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime

ALN = [sys.executable, "-m", "dispatcher.cli.main"]


def an_alert(rt: Runtime) -> int:
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        sent = send_alert(s, rt.settings, post, AlertRequest(
            zones=["Chiapas"], body="Status beside writers", ack_window_seconds=600))
    assert sent.alert_id is not None
    return sent.alert_id


@contextmanager
def a_writer_mid_transaction(rt: Runtime) -> Iterator[None]:
    """Another thread of this process holds a write transaction open (the intake
    committing a batch), with a change not yet committed."""
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:
        with rt.db.session() as s:
            s.execute(text("UPDATE alerts SET title = title"))
            writing.set()
            done.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        yield
    finally:
        done.set()
        thread.join(30)


def test_aln_alert_status_answers_while_a_write_is_open(
        app_rt: Any, cli_env: dict[str, str]) -> None:
    rt, _, _ = app_rt
    alert_id = an_alert(rt)
    for args in (["--json"], []):
        with a_writer_mid_transaction(rt):
            # Queued behind the writer, it would wait SQLite's busy timeout (30 s).
            done = subprocess.run([*ALN, "alert", "status", str(alert_id), *args],
                                  env={**os.environ, **cli_env}, capture_output=True,
                                  text=True, timeout=15)
        assert done.returncode == 0, done.stderr
        assert "Chiapas" in done.stdout
