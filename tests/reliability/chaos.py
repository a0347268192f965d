"""The chaos harness: fan-outs with replies and status callbacks arriving while
`aln serve` or `aln worker` is SIGKILLed at random moments and restarted within a second.

Used by the short run in `make test` (tests/reliability/test_chaos.py) and the soak
(`make soak`, tests/soak/). Everything runs on loopback: the provider simulator in
this process (it sends status callbacks and SendGrid events, retrying a few times like
a provider), `aln alert send` and `aln serve|worker` as real processes on one SQLite
file (or PostgreSQL), and a reply sender that texts "YES <code>" back for half of the
volunteers, each reply with its own MessageSid and retried until the engine answers
(so a reply answered and then lost would show, and so would one stored twice).

At the end it checks what the issue promises: every reply stored exactly once, every
recipient reached (every extra copy at the provider flagged "possibly duplicated"),
every due deadline fired exactly once, no process refused to start.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from sqlalchemy import func, select

from channels.simulator.serving import free_port
from channels.simulator.testing import SimulatorHandle, run_simulator
from channels.webhooks import twilio_sign
from dispatcher.db import db_now
from dispatcher.models import (
    Alert,
    AuditEvent,
    Contact,
    Deadline,
    Delivery,
    InboundMessage,
    Recipient,
)
from dispatcher.roster.importer import import_roster
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import CONFIG_DIR, make_settings
from tests.engine import FROM_NUMBER, cli_env
from tests.helpers import wait_until
from tests.reliability.processes import ALN, start_until_running

SECRET = "chaos-secret"
#: Zones with alternates, so silence escalates through tiers to the duty officer.
ZONES = ["Chiapas", "Mexico City", "Puebla", "Oaxaca", "Guanajuato", "Veracruz"]
#: Acknowledgement window: short, so deadlines come due during the kills.
WINDOW = "2s"
#: A kill comes this long (uniform, seconds) after the process is up.
KILL_AFTER = (0.2, 2.5)
#: The supervisor restarts within this pause (uniform, seconds).
RESTART_PAUSE = (0.0, 1.0)
#: Share of restarts that start `aln worker` instead of `aln serve`.
WORKER_SHARE = 0.3
#: The code at the end of an SMS (the simulator's own pattern).
CODE = re.compile(r"(\d{4,6})\D*$")


@dataclass
class Report:
    cycles: int = 0
    kills: dict[str, int] = field(default_factory=lambda: {"serve": 0, "worker": 0})
    refused: list[str] = field(default_factory=list)
    alerts: int = 0
    messages_at_provider: int = 0
    extra_copies: int = 0
    flagged: int = 0
    replies_sent: int = 0
    reply_attempts: int = 0
    replies_stored: int = 0
    deadlines_fired: int = 0
    escalations: int = 0
    unreached: int = 0
    callbacks_lost: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return json.dumps({"chaos": self.__dict__}, default=str)


class Replier:
    """Texts "YES <code>" back for chosen volunteers, signed like Twilio, each reply with
    its own MessageSid, retried until the engine answers 2xx (or gives up at the end)."""

    def __init__(self, sim: SimulatorHandle, url: str, rng: random.Random) -> None:
        self.sim = sim
        self.url = url
        self.rng = rng
        self.answered: set[str] = set()
        self.attempts = 0
        self._seen = 0
        self._count = 0
        self._due: list[tuple[float, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-replies", daemon=True)
        self.responsive: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def idle(self) -> bool:
        with self._lock:
            return not self._due

    def poll_provider(self) -> None:
        """Schedule replies to the SMS the provider got since the last look."""
        sent = [r for r in self.sim.requests()
                if r["path"].endswith("/Messages.json") and r["method"] == "POST"]
        for req in sent[self._seen:]:
            form = req.get("form") or {}
            to, body = form.get("To", ""), form.get("Body", "")
            match = CODE.search(body)
            if to in self.responsive and match and "Reply" in body:
                self._count += 1
                sid = f"SMchaos{self._count:08d}"
                params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.sim.account_sid,
                          "From": to, "To": FROM_NUMBER, "Body": f"YES {match.group(1)}",
                          "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}
                with self._lock:
                    self._due.append((time.monotonic() + self.rng.uniform(0, 1.5), sid, params))
        self._seen = len(sent)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                self.poll_provider()
                now = time.monotonic()
                with self._lock:
                    ready = [d for d in self._due if d[0] <= now]
                for item in ready:
                    if self._post(client, item[2]):
                        with self._lock:
                            self._due.remove(item)
                        self.answered.add(item[1])
                self._stop.wait(0.05)

    def _post(self, client: httpx.Client, params: dict[str, str]) -> bool:
        self.attempts += 1
        url = self.url + "/webhooks/twilio/sms"
        try:
            resp = client.post(url, data=params,
                               headers={"X-Twilio-Signature": twilio_sign(
                                   self.sim.auth_token, url, params)})
        except httpx.HTTPError:
            return False  # the engine is down: try again, as a patient provider would
        return resp.is_success


class Service:
    """The supervised long-running process: `aln serve` or `aln worker`, one at a time."""

    def __init__(self, env: dict[str, str], port: int, database_url: str,
                 report: Report, rng: random.Random) -> None:
        self.env = env
        self.port = port
        self.database_url = database_url
        self.report = report
        self.rng = rng
        self.proc: subprocess.Popen[str] | None = None
        self.kind = "serve"

    def start(self, kind: str) -> None:
        """Start `aln <kind>` and wait until it runs; a refusal is recorded, then fails."""
        self.kind = kind
        try:
            self.proc = start_until_running(kind, self.env, self.database_url, self.port)
        except AssertionError as exc:
            self.report.refused.append(str(exc))
            raise

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.report.refused.append(f"aln {self.kind} died on its own ({self.proc.returncode})")
            raise AssertionError(self.report.refused[-1])
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.report.kills[self.kind] += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def run_chaos(database_url: str, cycles: int, seed: int | None = None) -> Report:
    """Run `cycles` kill-and-restart cycles under traffic, check the outcome, report."""
    seed = seed if seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rt = Runtime.open(make_settings(database_url, secret_key=SECRET))
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        import_roster(session, rt.vault, post, CONFIG_DIR / "rosters" / "mexico-city.csv")
    rt.close()
    with run_simulator(public_url=url) as sim:
        env = cli_env(database_url, sim, SECRET, ALN_PUBLIC_URL=url,
                      SENDGRID_API_KEY="SG.chaos", ALN_EMAIL_FROM="aln@example.org",
                      ALN_SENDGRID_API_URL=sim.sendgrid_api_url,
                      ALN_SENDGRID_WEBHOOK_PUBLIC_KEY=sim.sendgrid_public_key,
                      ALN_SWEEP_SECONDS="0.25", ALN_LEASE_SECONDS="10",
                      ALN_RETRY_MAX_SECONDS="5", ALN_LOG_FORMAT="text")
        service = Service(env, port, database_url, report, rng)
        replier = Replier(sim, url, rng)
        replier.start()
        try:
            service.start("serve")
            for cycle in range(cycles):
                replier.responsive = set(rng.sample(sorted(all_phones(database_url)),
                                                    k=len(all_phones(database_url)) // 2))
                zones = rng.sample(ZONES, k=rng.randint(2, 4))
                args = [ALN, "alert", "send", "--body", f"Chaos cycle {cycle}", "--exercise",
                        "--ack-window", WINDOW, "--json"]
                for zone in zones:
                    args += ["--zone", zone]
                fan_out = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
                # The kill lands anywhere: during the fan-out, the replies, the deadlines.
                time.sleep(rng.uniform(*KILL_AFTER))  # the stimulus, not a wait
                service.kill()
                time.sleep(rng.uniform(*RESTART_PAUSE))  # the supervisor's pause
                service.start("worker" if rng.random() < WORKER_SHARE else "serve")
                out, err = fan_out.communicate(timeout=120)
                assert fan_out.returncode == 0, err
                json.loads(out)
                report.alerts += 1
                report.cycles += 1
            if service.kind != "serve":  # replies need the webhooks to finish
                service.kill()
                service.start("serve")
            settle(database_url, replier)
        finally:
            replier.stop()
            service.stop()
        report.callbacks_lost = len(sim.failures())
        check(database_url, sim, replier, report)
    report.seconds = round(time.monotonic() - started, 1)
    print(f"chaos seed {seed}: {report.line()}")
    return report


def all_phones(database_url: str) -> set[str]:
    rt = Runtime.open(make_settings(database_url, secret_key=SECRET))
    try:
        with rt.db.session() as session:
            return {rt.vault.decrypt(enc) for enc in session.scalars(
                select(Contact.value_enc).where(Contact.channel == "sms"))}
    finally:
        rt.close()


def settle(database_url: str, replier: Replier, timeout: float = 90) -> None:
    """Wait until every reply is answered and nothing is in flight or due."""
    def quiet() -> bool:
        if not replier.idle():
            return False
        rt = Runtime.open(make_settings(database_url, secret_key=SECRET))
        try:
            with rt.db.session() as session:
                busy = session.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.state.in_(["pending", "sending"])))
                waiting = session.scalar(select(func.count()).select_from(Deadline).where(
                    Deadline.state.in_(["pending", "claimed"])))
        finally:
            rt.close()
        return busy == 0 and waiting == 0

    wait_until(quiet, timeout=timeout, interval=0.25, what="every alert to settle")


def check(database_url: str, sim: SimulatorHandle, replier: Replier, report: Report) -> None:
    rt = Runtime.open(make_settings(database_url, secret_key=SECRET))
    try:
        with rt.db.session() as session:
            now = db_now(session)
            stored = Counter(session.scalars(select(InboundMessage.dedupe_key).where(
                InboundMessage.source == "twilio_sms")))
            deliveries = session.execute(
                select(Delivery.id, Delivery.recipient_id, Delivery.channel, Delivery.body,
                       Delivery.state, Delivery.possibly_duplicate, Contact.value_enc)
                .join(Contact, Contact.id == Delivery.contact_id)).all()
            recipients = list(session.scalars(select(Recipient.id)))
            deadlines = session.execute(select(Deadline.state, Deadline.due_at,
                                               Deadline.fired_at)).all()
            escalated = [(e.alert_id, e.details.get("zone"), e.details.get("to_tier"))
                         for e in session.scalars(select(AuditEvent).where(
                             AuditEvent.action == "zone.escalated"))]
            unreached = [(e.alert_id, e.details.get("zone")) for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == "zone.unreached"))]
            alerts = session.scalar(select(func.count()).select_from(Alert))
            phones = {d.id: rt.vault.decrypt(d.value_enc) for d in deliveries}
    finally:
        rt.close()
    # Every reply the engine answered is stored, once (the unique key makes "once").
    report.replies_sent = len(replier.answered)
    report.reply_attempts = replier.attempts
    report.replies_stored = sum(1 for sid in replier.answered if stored[sid] == 1)
    assert report.replies_stored == report.replies_sent, "a reply answered 2xx was lost"
    assert all(n == 1 for n in stored.values())
    # Every recipient reached: each has a delivery the provider took; none left behind.
    assert alerts == report.alerts
    assert {d.state for d in deliveries} <= {"accepted", "sent", "delivered", "cancelled"}, \
        Counter(d.state for d in deliveries)
    reached = {d.recipient_id for d in deliveries if d.state != "cancelled"}
    assert set(recipients) <= reached, "a recipient was never reached"
    # Extra copies at the provider are flagged: per (to, body), the provider saw no more
    # messages than there are rows, unless one of those rows is flagged.
    at_provider: Counter[tuple[str, str]] = Counter()
    for r in sim.requests():
        if r["path"].endswith("/Messages.json") and r["method"] == "POST":
            form = r.get("form") or {}
            at_provider[(form.get("To", ""), form.get("Body", ""))] += 1
    report.messages_at_provider = sum(at_provider.values())
    rows: Counter[tuple[str, str]] = Counter()
    flagged: set[tuple[str, str]] = set()
    for d in deliveries:
        if d.channel == "sms" and d.state != "cancelled":
            key = (phones[d.id], d.body)
            rows[key] += 1
            if d.possibly_duplicate:
                flagged.add(key)
    report.flagged = sum(1 for d in deliveries if d.possibly_duplicate)
    for key, n in at_provider.items():
        if n > rows[key]:
            report.extra_copies += n - rows[key]
            assert key in flagged, "a message went out twice without being flagged"
    # Every due deadline fired, and exactly once: none left due, and no escalation or
    # "unreached" happened twice for the same zone and tier.
    assert all(state in ("done", "cancelled") for state, due, _ in deadlines if due <= now)
    report.deadlines_fired = sum(1 for state, _, fired in deadlines if fired is not None)
    report.escalations = len(escalated)
    report.unreached = len(unreached)
    assert len(set(escalated)) == len(escalated), Counter(escalated).most_common(3)
    assert len(set(unreached)) == len(unreached), Counter(unreached).most_common(3)
    assert not report.refused
