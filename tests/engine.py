"""Fixtures for the whole engine on loopback: the provider simulator, `aln serve` (app and
worker) and a database. Registered for every test by tests/conftest.py."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from channels.simulator.serving import ServerThread, bound_socket
from channels.simulator.testing import SimulatorHandle, run_simulator
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.sender import Sender
from dispatcher.domain import DeliveryState
from dispatcher.models import Delivery
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings
from dispatcher.status import alert_status
from dispatcher.web.app import create_app
from dispatcher.worker import make_channels
from tests.conftest import CONFIG_DIR, SAMPLE_ROSTER
from tests.helpers import wait_until

SAMPLE = SAMPLE_ROSTER
FROM_NUMBER = "+15005550006"


def engine_settings(database_url: str, sim: SimulatorHandle, port: int,
                    **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=database_url, secret_key="integration-" + secrets.token_hex(8),
        public_url=f"http://127.0.0.1:{port}", config_dir=CONFIG_DIR, post="mexico-city",
        twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
        twilio_from_number=FROM_NUMBER, twilio_api_url=sim.twilio_api_url,
        sendgrid_api_key="SG.test", email_from="aln@example.org",
        sendgrid_api_url=sim.sendgrid_api_url,
        sendgrid_webhook_public_key=sim.sendgrid_public_key,
        sms_rate_per_second=0, retry_max_seconds=5, retry_min_wait=0.05, retry_max_wait=0.2,
        sweep_seconds=0.25,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Engine:
    rt: Runtime
    sim: SimulatorHandle
    port: int
    server: ServerThread | None = None
    #: The port's socket, bound when the engine was made and served on by the first
    #: start (a restart binds the port again).
    reserved: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock, self.reserved = self.reserved, None
        self.server = ServerThread(create_app(self.rt), port=self.port, sock=sock).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def send(self, zones: list[str], *, body: str = "Test alert", fan_out: bool = True,
             **kwargs: Any) -> int:
        req = AlertRequest(zones=zones, body=body, **kwargs)
        with self.rt.db.session() as session:
            post = ensure_post(session, self.rt.settings, self.rt.vault)
            alert_id = send_alert(session, self.rt.settings, post, req).alert_id
        assert alert_id is not None
        if fan_out:
            asyncio.run(self.fan_out(alert_id))
            if self.server is not None:
                # The server's own worker may have claimed some of the rows meanwhile:
                # the fan-out is over when none of the alert's messages is in its hands.
                wait_until(lambda: self._sending(alert_id) == 0,
                           what="the server's worker to finish its part of the fan-out")
        return alert_id

    def _sending(self, alert_id: int) -> int:
        with self.rt.db.session() as session:
            return session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.alert_id == alert_id, Delivery.state == DeliveryState.SENDING)) or 0

    async def fan_out(self, alert_id: int | None = None) -> int:
        channels = make_channels(self.rt)
        try:
            sender = Sender(self.rt.db, self.rt.settings, self.rt.vault, channels, "test")
            return await sender.send_due(alert_id=alert_id)
        finally:
            for ch in channels.values():
                await ch.aclose()

    def status(self, alert_id: int) -> dict[str, Any]:
        with self.rt.db.session() as session:
            return alert_status(session, alert_id)

    def code(self, alert_id: int) -> str:
        return str(self.status(alert_id)["reply_code"])

    def recipient(self, alert_id: int, name: str) -> dict[str, Any]:
        rows = [r for r in self.status(alert_id)["recipients"] if r["name"] == name]
        assert rows, f"{name} is not a recipient of alert {alert_id}"
        return rows[0]

    def zone(self, alert_id: int, zone: str) -> dict[str, Any]:
        return next(z for z in self.status(alert_id)["zones"] if z["zone"] == zone)

    def wait_zone(self, alert_id: int, zone: str, state: str, timeout: float = 15) -> None:
        wait_until(lambda: self.zone(alert_id, zone)["state"] == state, timeout,
                   what=f"{zone} to become {state}")

    def sms_to(self, number: str) -> list[str]:
        return [r["body"] for r in sms_requests(self.sim) if r["to"] == number]


def sms_requests(sim: SimulatorHandle) -> list[dict[str, str]]:
    """Every SMS the engine handed to the simulated Twilio: to, body."""
    out = []
    for req in sim.requests():
        if req["path"].endswith("/Messages.json") and req["method"] == "POST":
            form = req.get("form") or {}
            out.append({"to": form.get("To", ""), "body": form.get("Body", ""),
                        "status_callback": form.get("StatusCallback", "")})
    return out


def email_requests(sim: SimulatorHandle) -> list[dict[str, Any]]:
    """Every email recipient of every SendGrid request: to, subject, custom_args."""
    out = []
    for req in sim.requests():
        if req["path"] == "/v3/mail/send":
            body = req.get("json") or {}
            for p in body.get("personalizations", []):
                for to in p.get("to", []):
                    out.append({"to": to["email"], "subject": body.get("subject"),
                                "custom_args": p.get("custom_args", {}),
                                "substitutions": p.get("substitutions", {}),
                                "content": body.get("content", [])})
    return out


@contextmanager
def engines_in(directory: Path) -> Iterator[Any]:
    """Builds engines (one simulator each) on SQLite files in `directory` or a given
    database URL; stops them all at the end of the block (a test's or a module's)."""
    made: list[tuple[Engine, Any]] = []

    def make(database_url: str | None = None, start: bool = True, **overrides: Any) -> Engine:
        sock = bound_socket()
        port = int(sock.getsockname()[1])
        ctx = run_simulator(public_url=f"http://127.0.0.1:{port}")
        sim = ctx.__enter__()
        url = database_url or f"sqlite:///{directory / f'aln-{len(made)}.db'}"
        rt = Runtime.open(engine_settings(url, sim, port, **overrides))
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            import_sample_roster(session, rt.vault, post, SAMPLE)
        engine = Engine(rt, sim, port, reserved=sock)
        made.append((engine, ctx))
        if start:
            engine.start()
        return engine

    try:
        yield make
    finally:
        for engine, ctx in made:
            engine.stop()
            if engine.reserved is not None:
                engine.reserved.close()
            engine.rt.close()
            ctx.__exit__(None, None, None)


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Any]:
    """Builds engines (one simulator each) on SQLite or a given database URL. A test on
    a database fixture names that fixture before this one: fixtures are torn down in the
    reverse order, and the engines must stop before their database is dropped."""
    with engines_in(tmp_path) as make:
        yield make


@pytest.fixture
def engine(engine_factory: Any) -> Engine:
    return engine_factory()  # type: ignore[no-any-return]


def cli_env(db_url: str, sim: SimulatorHandle, secret: str, **extra: str) -> dict[str, str]:
    """Environment for an `aln` subprocess on `db_url`, talking to `sim`."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALN_", "TWILIO_",
                                                                        "SENDGRID_"))}
    env.update({
        "ALN_DATABASE_URL": db_url, "ALN_SECRET_KEY": secret, "ALN_CONFIG_DIR": str(CONFIG_DIR),
        "ALN_POST": "mexico-city", "ALN_PUBLIC_URL": "http://127.0.0.1:9",
        "TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER, "ALN_TWILIO_API_URL": sim.twilio_api_url,
        "ALN_SMS_RATE_PER_SECOND": "0", "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    env.update(extra)
    return env
