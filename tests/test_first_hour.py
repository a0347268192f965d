"""The first hour of a newcomer: the simulator prints every setting a second shell needs,
`aln serve` calls itself back where it listens, the demo's dashboard has a login."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

from channels.simulator.serving import free_port
from dispatcher.cli.run_cmd import public_url_for
from dispatcher.cli.simulator_cmd import simulator_env
from dispatcher.demo import demo_login
from dispatcher.settings import Settings
from dispatcher.web.auth import check_password, get_officer
from tests.conftest import rt_with_roster
from tests.helpers import wait_until
from tests.reliability.test_kill_fanout import ALN


def test_the_simulator_prints_every_setting_and_writes_an_env_file(tmp_path: Path) -> None:
    port = free_port()
    env_file = tmp_path / "sim.env"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    sim = subprocess.Popen([ALN, "simulator", "--port", str(port), "--env-file", str(env_file)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(env_file.exists, timeout=30, what="the env file")
    finally:
        sim.send_signal(signal.SIGINT)
        out, _ = sim.communicate(timeout=20)
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER",
                 "SENDGRID_API_KEY", "ALN_EMAIL_FROM", "ALN_PUBLIC_URL", "ALN_TWILIO_API_URL",
                 "ALN_SENDGRID_API_URL", "ALN_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        assert written.get(name), name
        assert f"{name}={written[name]}" in out.splitlines()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # What it printed configures both channels.
    settings = Settings(_env_file=str(env_file))  # type: ignore[call-arg]
    assert settings.configured_channels == ["sms", "whatsapp", "email", "voice"]


def test_simulator_settings_name_the_public_url_given() -> None:
    env = simulator_env("http://127.0.0.1:9000", "http://127.0.0.1:8123", "AC1", "t", "k")
    assert env["ALN_PUBLIC_URL"] == "http://127.0.0.1:8123"


def test_aln_serve_calls_itself_back_where_it_listens() -> None:
    assert public_url_for("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert public_url_for("0.0.0.0", 80).startswith("http://") and "0.0.0.0" not in \
        public_url_for("0.0.0.0", 80)


def test_the_demo_dashboard_login_is_a_one_time_password(sqlite_url: str) -> None:
    rt = rt_with_roster(sqlite_url)
    try:
        name, first = demo_login(rt)
        _, second = demo_login(rt)
        assert first != second and len(first) >= 12
        with rt.db.session() as session:
            officer = get_officer(session, name)
            assert officer.password_hash
            assert check_password(second, officer.password_hash)
            assert not check_password(first, officer.password_hash)
    finally:
        rt.close()
