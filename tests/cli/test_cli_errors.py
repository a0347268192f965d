"""Errors a user can meet at the command line: one clear line and an exit code, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, inspect

from channels.simulator.serving import free_port
from tests.conftest import CONFIG_DIR, _psycopg
from tests.helpers import wait_until

ALN = [sys.executable, "-m", "dispatcher.cli.main"]


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALN_", "TWILIO_", "SENDGRID_"))}
    env.update({"ALN_DATABASE_URL": database_url, "ALN_CONFIG_DIR": str(CONFIG_DIR),
                "ALN_POST": "mexico-city", "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"})
    env.update(extra)
    return env


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    # Log records (a migration's INFO lines) may precede it; the error is one line.
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert not any(line.startswith((" ", "\t")) for line in result.stderr.splitlines())
    for needle in needles:
        assert needle in lines[0], lines[0]


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALN, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def test_serve_beside_a_live_one_is_refused_in_one_line(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path / 'aln.db'}")
    port = free_port()
    live = subprocess.Popen([*ALN, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _healthy(port), 30, what="the first aln serve")
        _one_line_error(_run(tmp_path, env, "serve", "--port", str(port)),
                        f"127.0.0.1:{port}", "in use")
        _one_line_error(_run(tmp_path, env, "serve", "--port", str(free_port())),
                        "another worker", "SQLite allows one worker per file")
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(timeout=30)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_worker_interrupted_with_ctrl_c_stops_in_one_line(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path / 'aln.db'}")
    worker = subprocess.Popen([*ALN, "worker"], env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _registered(tmp_path / "aln.db"), 30, what="the worker to start")
        time.sleep(1.5)  # the stimulus, not a wait: Ctrl-C after a few sweeps, while the
        # scheduler's thread is waking the loop
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 130, err
    assert "Traceback" not in err and "Event loop is closed" not in err, err
    assert "aln worker: interrupted" in err


def _registered(db: Path) -> bool:
    import sqlite3

    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as conn:
            return bool(conn.execute("SELECT count(*) FROM worker_leases").fetchone()[0])
    except sqlite3.Error:
        return False


def test_a_postgresql_url_without_a_secret_key_is_refused_before_touching_it(
        tmp_path: Path, postgres_url: str) -> None:
    result = _run(tmp_path, _env(postgres_url), "zones", "list")
    _one_line_error(result, "ALN_SECRET_KEY is not set")
    engine = create_engine(_psycopg(postgres_url))
    try:
        assert inspect(engine).get_table_names() == []  # no schema was created
    finally:
        engine.dispose()
