"""An alert's status is read beside the writers, not behind them: an officer watching a
large alert (`aln alert status`, `--watch` every second; the API's alert reads the same
way) never holds up the replies' intake, which on SQLite waits for the one writer."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import text

from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.helpers import write_held_open

ALN = [sys.executable, "-m", "dispatcher.cli.main"]


def an_alert(rt: Runtime) -> int:
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        sent = send_alert(s, rt.settings, post, AlertRequest(
            zones=["Chiapas"], body="Status beside writers", ack_window_seconds=600))
    assert sent.alert_id is not None
    return sent.alert_id


def test_aln_alert_status_answers_while_a_write_is_open(
        app_rt: Any, cli_env: dict[str, str]) -> None:
    rt, _, _ = app_rt
    alert_id = an_alert(rt)
    for args in (["--json"], []):
        with write_held_open(rt.db, text("UPDATE alerts SET title = title")):
            # Queued behind the writer, it would wait SQLite's busy timeout (30 s).
            done = subprocess.run([*ALN, "alert", "status", str(alert_id), *args],
                                  env={**os.environ, **cli_env}, capture_output=True,
                                  text=True, timeout=15)
        assert done.returncode == 0, done.stderr
        assert "Chiapas" in done.stdout
