"""`aln demo`: a whole exercise, end to end, on the embedded defaults and the simulator.

It starts the provider simulator and `aln serve` on free loopback ports, loads the
sample post and roster into a fresh SQLite database, sends an EXERCISE alert to
several zones with a short window, and lets simulated volunteers answer the way
real ones do: at once, late, in Spanish on WhatsApp, never, asleep until a phone call
wakes them (press 1), from a dead number, with STOP, with HELP, and a stranger's field
report. Escalation happens live on screen.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.simulator.serving import ServerThread, bound_socket
from channels.simulator.testing import SimulatorHandle, run_simulator
from dispatcher import aio
from dispatcher.cli.common import styled
from dispatcher.cli.simulator_cmd import SIMULATED_WHATSAPP_FROM
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.sender import Sender
from dispatcher.domain import FINISHED_ALERT_STATES, Role
from dispatcher.errors import NotFound
from dispatcher.models import Volunteer
from dispatcher.roster.contacts import set_contact
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings
from dispatcher.status import alert_status
from dispatcher.web.app import create_app
from dispatcher.web.auth import add_officer, get_officer, hash_password
from dispatcher.worker import make_channels

#: The exercise's acknowledgement window: short, so the whole run stays under two minutes.
DEMO_WINDOW_SECONDS = 20
#: The demo gives up waiting after this long (it normally ends in about 45 s).
DEMO_TIMEOUT_SECONDS = 100
DEMO_ZONES = ["Chiapas", "Oaxaca", "Mexico City", "Puebla", "Guerrero", "Querétaro", "Veracruz"]
#: A number the simulator refuses as invalid (Twilio 21211): a dead path.
DEAD_NUMBER = "+522222300801"  # Quinn Harper, Puebla primary


@dataclass(frozen=True)
class Behaviour:
    """How one simulated volunteer answers: `reply` after `delay` seconds, or never, to a
    text at `number` (`whatsapp:+...` for WhatsApp); `call`: how they take a phone call
    (the simulator's call behaviours), none given: they are never called."""

    number: str
    who: str
    reply: str | None
    delay: float = 0.0
    call: str | None = None


VICTOR = "+529515101001"
YOLANDA = "+522299301201"
#: Paths the demo adds to the sample roster: Victor reads WhatsApp rather than SMS, and
#: Yolanda's phone rings (the sample roster keeps them on SMS for the tests).
DEMO_PATHS = [("Victor Castillo", "whatsapp", VICTOR), ("Victor Castillo", "sms", None),
              ("Yolanda Pérez", "voice", YOLANDA)]


#: The cast, by phone number of the sample roster (config/rosters/mexico-city.csv).
CAST = [
    Behaviour("+529611230101", "Ana Morales, Chiapas primary: never answers", None),
    Behaviour("+529611230102", "Brian Keller, Chiapas alternate1: answers the escalation",
              "YES {code}", 2.0),
    Behaviour("whatsapp:" + VICTOR, "Victor Castillo, Oaxaca: answers on WhatsApp in Spanish",
              "Sí {code}", 1.0),
    Behaviour("+525551000201", "Daniel Ortega, Mexico City: answers late", "ok {code}", 12.0),
    Behaviour("+525551000202", "Emily Carter, Mexico City: answers at once", "YES", 3.0),
    Behaviour("+522222300802", "Rosa Jiménez, Puebla alternate1: headcount",
              "DONE {code} 12 3", 2.0),
    Behaviour("+527444810401", "Karla Mendoza, Guerrero: needs help", "HELP", 4.0),
    Behaviour("+524422100901", "Teresa Vargas, Querétaro: opts out", "STOP", 2.0),
    Behaviour(YOLANDA, "Yolanda Pérez, Veracruz: sleeps through the text, presses 1 when "
              "the call after 8 s wakes her", None, call="press1"),
]
FIELD_REPORT = ("+525599990000", "Road to the airport blocked at km 12, police on site")


def demo_settings(workdir: Path, sim: SimulatorHandle, port: int) -> Settings:
    return Settings(
        # No ALN_SECRET_KEY: the embedded default keeps one beside the database, so the
        # CLI run later in the demo directory reads the same contacts.
        database_url=f"sqlite:///{workdir / 'aln.db'}", secret_key=None,
        public_url=f"http://127.0.0.1:{port}", post="mexico-city",
        twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
        twilio_from_number="+15005550006", twilio_api_url=sim.twilio_api_url,
        sendgrid_api_key="SG.demo", email_from="aln-demo@example.org",
        sendgrid_api_url=sim.sendgrid_api_url, twilio_whatsapp_from=SIMULATED_WHATSAPP_FROM,
        sendgrid_webhook_public_key=sim.sendgrid_public_key,
        sms_rate_per_second=50, retry_max_seconds=10, sweep_seconds=0.5,
    )  # type: ignore[call-arg]


def run_demo(workdir: Path, console: Console, *, keep_serving: float = 0.0) -> dict[str, Any]:
    """Run the exercise; returns the final status and the report path."""
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    # The engine's port is held from here, so nothing takes it before the server starts.
    with bound_socket() as sock:
        port = int(sock.getsockname()[1])
        with run_simulator(public_url=f"http://127.0.0.1:{port}") as sim:
            sim.set_faults(invalid_numbers=[DEAD_NUMBER])
            rt = Runtime.open(demo_settings(workdir, sim, port))
            try:
                return _exercise(rt, sim, sock, workdir, console, keep_serving)
            finally:
                rt.close()


#: The officer `aln demo --keep-serving` creates for its dashboard.
DEMO_OFFICER = "demo-officer"


def demo_login(rt: Runtime) -> tuple[str, str]:
    """An officer with a fresh random password, for this demo's dashboard only."""
    password = secrets.token_urlsafe(12)
    with rt.db.session() as session:
        try:
            officer = get_officer(session, DEMO_OFFICER)
        except NotFound:
            add_officer(session, DEMO_OFFICER, Role.OFFICER.value, actor="demo")
            officer = get_officer(session, DEMO_OFFICER)
        officer.password_hash = hash_password(password)
    return DEMO_OFFICER, password


def _exercise(rt: Runtime, sim: SimulatorHandle, sock: socket.socket, workdir: Path,
              console: Console, keep_serving: float) -> dict[str, Any]:
    config = rt.settings.config_dir
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        # Terms moved to today: the demo's volunteers must still serve next year.
        result = import_sample_roster(session, rt.vault, post,
                                      config / "rosters" / "mexico-city.csv", actor="demo")
        _demo_paths(session, rt)
    console.print(styled(("1.", "bold"), f" Loaded {post.name}: {result.rows} roster rows, "
                         f"{result.volunteers_created} volunteers."))
    with ServerThread(create_app(rt), sock=sock) as server:
        console.print(styled(("2.", "bold"), f" Provider simulator at {sim.url}; aln serve at "
                             f"{server.url} (dashboard {server.url}/)."))
        req = AlertRequest(zones=DEMO_ZONES, template="demonstration", exercise=True,
                           body="A large demonstration is expected near the city centre "
                                "this afternoon.",
                           ack_window_seconds=DEMO_WINDOW_SECONDS, policy="demo",
                           actor="demo")
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            sent = send_alert(session, rt.settings, post, req)
            assert sent.alert_id is not None and sent.reply_code is not None
            alert_id, code = sent.alert_id, sent.reply_code
        for b in CAST:
            if b.reply is not None:
                sim.script(b.number, reply=b.reply.replace("{code}", code), delay=b.delay)
            if b.call is not None:
                sim.call_behaviour(b.number, b.call)
        console.print(styled(("3.", "bold"), f" EXERCISE alert {alert_id} (reply code {code}) "
                             f"to {', '.join(DEMO_ZONES)}; window {DEMO_WINDOW_SECONDS} s."))
        for b in CAST:
            console.print(styled(f"    simulated: {b.who}"))
        aio.run(_fan_out(rt, alert_id))
        sim.inbound(FIELD_REPORT[0], FIELD_REPORT[1])
        status = _watch(rt, alert_id, console, lambda s: s["state"] in FINISHED_ALERT_STATES)
        if keep_serving:
            name, password = demo_login(rt)
            console.print(styled(f"Dashboard open for {keep_serving:.0f} s at {server.url}/ : "
                                 f"log in as {name} with the one-time password {password}"))
            time.sleep(keep_serving)
    report = _write_report(rt, alert_id, workdir)
    console.print()
    _summary(status, console)
    console.print(styled(("HTML report:", "bold"), f" {report}"))
    console.print(
        "To run the same exercise against real providers, set TWILIO_ACCOUNT_SID, "
        "TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER, SENDGRID_API_KEY, ALN_EMAIL_FROM, "
        "ALN_SENDGRID_WEBHOOK_PUBLIC_KEY and ALN_PUBLIC_URL (see README), then use "
        "`aln serve` and `aln alert send --exercise ...`.")
    return {"status": status, "report": str(report)}


def _demo_paths(session: Session, rt: Runtime) -> None:
    for name, channel, number in DEMO_PATHS:
        volunteer = session.scalars(select(Volunteer).where(Volunteer.name == name)).one()
        if number is None:
            for contact in [c for c in volunteer.contacts if c.channel == channel]:
                volunteer.contacts.remove(contact)
        else:
            set_contact(session, rt.vault, volunteer, channel, number)


async def _fan_out(rt: Runtime, alert_id: int) -> None:
    channels = make_channels(rt)
    try:
        await Sender(rt.db, rt.settings, rt.vault, channels, "demo").send_due(alert_id=alert_id)
    finally:
        for ch in channels.values():
            await ch.aclose()


def _watch(rt: Runtime, alert_id: int, console: Console,
           done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    from dispatcher.cli.alert_cmd import status_table

    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            with rt.db.session() as session:
                status = alert_status(session, alert_id)
            live.update(status_table(status))
            if done(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.5)


def _write_report(rt: Runtime, alert_id: int, workdir: Path) -> Path:
    from dispatcher.reports.html import render_html

    path = workdir / f"report-{alert_id}.html"
    with rt.db.session() as session:
        path.write_text(render_html(session, alert_id), encoding="utf-8")
    return path.resolve()


def _summary(status: dict[str, Any], console: Console) -> None:
    table = Table("Zone", "State", "Deepest tier", "Acknowledged", title="Exercise summary")
    for z in status["zones"]:
        table.add_row(styled(z["zone"]), z["state"], z["tier"] or "-",
                      f"{z['acknowledged']}/{z['recipients']}")
    console.print(table)
