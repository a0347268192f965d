"""The real engine on a real database, driven in-process for the model test.

One template database (schema, sample post and roster, and the state-move log
below) is built once per test session; each hypothesis example gets a copy of it
(SQLite) or the template's rows back (PostgreSQL). One provider simulator serves
the whole test; it is reset per example.

Two boundaries belong to this test, not to the engine, and are marked where used:
- `model_moves`, a table filled by database triggers with every state a stateful row
  is created in and every move it makes, so each move is checked against
  `dispatcher.lifecycle.allowed`, even several moves made inside one step;
- moving time: deadlines and leases are moved back in the database, whose clock
  decides what is due (`dispatcher.db.db_now`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from channels.base import ChannelKind
from channels.simulator.testing import SimulatorHandle
from dispatcher import lifecycle
from dispatcher.crypto import Vault
from dispatcher.db import Database, db_now
from dispatcher.dispatch.outbox import create_alert
from dispatcher.dispatch.plan import AlertRequest, plan_alert
from dispatcher.dispatch.sender import Sender
from dispatcher.dispatch.versions import cancel_alert, update_alert
from dispatcher.domain import DeliveryState, VolunteerKind
from dispatcher.escalation.engine import fire_due
from dispatcher.models import Alert, Base, Contact, Membership, Post, Volunteer, Zone
from dispatcher.receipts import status_batch
from dispatcher.replies.inbound import InboundResult, receive_sms
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings
from dispatcher.worker import make_channels
from tests.conftest import CONFIG_DIR, make_settings

SAMPLE = CONFIG_DIR / "rosters" / "mexico-city.csv"
FROM_NUMBER = "+15005550006"
SECRET = "model-test-secret-key"
#: Tables whose rows have a state, by table name, with their model class.
STATEFUL = {lifecycle.table(m).name: m for m in lifecycle.STATES}
#: Tables that hold the roster and post: kept between examples, everything else emptied.
ROSTER_TABLES = {"posts", "zones", "volunteers", "contacts", "memberships", "alembic_version",
                 "model_moves"}
_REF = re.compile(r"[?&]ref=(\d+)")

SQLITE_MOVES = """CREATE TABLE model_moves (id INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL, row_id INTEGER NOT NULL, old TEXT, new TEXT NOT NULL)"""
PG_MOVES = """CREATE TABLE model_moves (id SERIAL PRIMARY KEY,
    tbl TEXT NOT NULL, row_id INTEGER NOT NULL, old TEXT, new TEXT NOT NULL)"""
PG_FUNCTION = """CREATE FUNCTION model_log_move() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO model_moves (tbl, row_id, old, new)
      VALUES (TG_TABLE_NAME, NEW.id, NULL, NEW.state);
  ELSE
    INSERT INTO model_moves (tbl, row_id, old, new)
      VALUES (TG_TABLE_NAME, NEW.id, OLD.state, NEW.state);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql"""


def install_move_log(engine: Engine) -> None:
    """Triggers that log every stateful row's first state and each of its moves (a test
    boundary: the engine neither knows nor needs this table)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(SQLITE_MOVES))
            for name in STATEFUL:
                conn.execute(text(
                    f"CREATE TRIGGER model_{name}_ins AFTER INSERT ON {name} BEGIN "
                    f"INSERT INTO model_moves (tbl, row_id, old, new) "
                    f"VALUES ('{name}', NEW.id, NULL, NEW.state); END"))
                conn.execute(text(
                    f"CREATE TRIGGER model_{name}_upd AFTER UPDATE OF state ON {name} BEGIN "
                    f"INSERT INTO model_moves (tbl, row_id, old, new) "
                    f"VALUES ('{name}', NEW.id, OLD.state, NEW.state); END"))
        else:
            conn.execute(text(PG_MOVES))
            conn.execute(text(PG_FUNCTION))
            for name in STATEFUL:
                conn.execute(text(
                    f"CREATE TRIGGER model_{name}_move AFTER INSERT OR UPDATE OF state ON "
                    f"{name} FOR EACH ROW EXECUTE FUNCTION model_log_move()"))


def model_settings(database_url: str, sim: SimulatorHandle) -> Settings:
    return make_settings(
        database_url, secret_key=SECRET, public_url="http://127.0.0.1:9",
        twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
        twilio_from_number=FROM_NUMBER, twilio_api_url=sim.twilio_api_url,
        sendgrid_api_key="SG.test", email_from="aln@example.org",
        sendgrid_api_url=sim.sendgrid_api_url,
        sendgrid_webhook_public_key=sim.sendgrid_public_key,
        sms_rate_per_second=0, retry_max_seconds=1, retry_min_wait=0.01, retry_max_wait=0.05)


def build_template(database_url: str, sim: SimulatorHandle) -> None:
    """Migrate, load the sample post and roster, install the move log."""
    rt = Runtime.open(model_settings(database_url, sim))
    try:
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            # Terms moved to the clock's today, as the demo does: the suite runs a year ahead.
            import_sample_roster(session, rt.vault, post, SAMPLE)
        install_move_log(rt.db.engine)
    finally:
        rt.close()


@dataclass(frozen=True)
class Person:
    """A roster entry as the model knows it: who, which zones at which tier, which phone."""

    name: str
    phone: str
    zones: dict[str, int]  # zone name -> tier, for active terms only
    duty_officer: bool = False


def read_roster(rt: Runtime, today: date) -> dict[str, Person]:
    """Facts of the sample roster (read back once from the template, not engine logic)."""
    people: dict[str, Person] = {}
    with rt.db.session() as session:
        for vol in session.scalars(select(Volunteer)):
            phone = next((rt.vault.decrypt(c.value_enc) for c in session.scalars(
                select(Contact).where(Contact.volunteer_id == vol.id,
                                      Contact.channel == "sms"))), "")
            zones = {}
            for m, zone in session.execute(select(Membership, Zone).join(
                    Zone, Zone.id == Membership.zone_id).where(Membership.volunteer_id == vol.id)):
                if m.term_start <= today <= m.term_end:
                    zones[zone.name] = m.tier
            people[vol.name] = Person(vol.name, phone, zones,
                                      vol.kind == VolunteerKind.DUTY_OFFICER)
    return people


class World:
    """One example's engine: its database, the shared simulator, and what it observed."""

    def __init__(self, database_url: str, sim: SimulatorHandle,
                 rt: Runtime | None = None) -> None:
        """On `database_url`, or on a runtime shared by several examples (`rt`)."""
        self.sim = sim
        self.owned = rt is None
        if rt is None:
            settings = model_settings(database_url, sim)
            rt = Runtime(settings=settings, db=Database(settings, migrate_now=False),
                         vault=Vault.from_secret(settings.secret))
        self.rt = rt
        self.seen_requests = 0
        self.moves_seen = 0
        self.workers = 0

    def close(self) -> None:
        if self.owned:
            self.rt.close()

    # --- entry points ---------------------------------------------------------------------

    def send(self, zones: list[str], policy: str, body: str) -> int:
        req = AlertRequest(zones=zones, body=body, policy=policy, actor="model")
        with self.rt.db.session() as session:
            post = session.scalars(select(Post)).one()
            plan = plan_alert(session, self.rt.settings, post, req)
            return create_alert(session, self.rt.settings, plan, req).id

    def fan_out(self) -> int:
        self.workers += 1
        return asyncio.run(self._fan_out(f"model-worker-{self.workers}"))

    async def _fan_out(self, name: str) -> int:
        channels = make_channels(self.rt)
        try:
            return await Sender(self.rt.db, self.rt.settings, self.rt.vault, channels,
                                name).send_due()
        finally:
            for ch in channels.values():
                await ch.aclose()

    def crash(self, hand_off: Iterable[bool]) -> list[int]:
        """A worker claims due deliveries, hands some to the provider and dies before it
        records anything; its lease is then made to run out (moving time, in the test).
        Returns the ids it claimed."""
        self.workers += 1
        name = f"doomed-{self.workers}"
        return asyncio.run(self._crash(name, list(hand_off)))

    async def _crash(self, name: str, hand_off: list[bool]) -> list[int]:
        channels = make_channels(self.rt)
        try:
            sender = Sender(self.rt.db, self.rt.settings, self.rt.vault, channels, name)
            batch = await asyncio.to_thread(sender._claim, None)
            for i, (delivery, to) in enumerate(batch):
                if i < len(hand_off) and hand_off[i]:
                    channel = channels[ChannelKind(delivery.channel)]
                    try:
                        await channel.send(sender._message(delivery, to))
                    except Exception:  # noqa: BLE001 - the dying worker never records it
                        pass
        finally:
            for ch in channels.values():
                await ch.aclose()
        with self.rt.db.session() as session:
            # Moving time (test boundary): the dead worker's lease runs out now.
            session.execute(text(
                "UPDATE deliveries SET lease_until = :past WHERE claimed_by = :w "
                "AND state = :s"), {"past": _past(db_now(session)), "w": name,
                                    "s": DeliveryState.SENDING.value})
        return [d.id for d, _ in batch]

    def reply(self, phone: str, body: str, sid: str) -> InboundResult:
        return receive_sms(self.rt.db, self.rt.settings, self.rt.vault,
                           {"MessageSid": sid, "From": phone, "To": FROM_NUMBER, "Body": body,
                            "AccountSid": self.sim.account_sid})

    def status(self, provider_id: str, delivery_id: int, status: str,
               error_code: str | None) -> list[bool]:
        params = {"MessageSid": provider_id, "MessageStatus": status,
                  "AccountSid": self.sim.account_sid}
        if error_code:
            params["ErrorCode"] = error_code
        return status_batch(self.rt, [(params, str(delivery_id))])

    def update(self, alert_id: int, body: str) -> int:
        with self.rt.db.session() as session:
            return update_alert(session, self.rt.settings, alert_id, body, "model").id

    def cancel(self, alert_id: int) -> int:
        with self.rt.db.session() as session:
            return cancel_alert(session, self.rt.settings, alert_id, "model")

    def deadlines_due(self, alert_id: int | None) -> int:
        """Make the pending deadlines (of one alert, or all) due now, then fire them."""
        with self.rt.db.session() as session:
            # Moving time (test boundary): the database clock decides what is due, so the
            # deadlines that exist now are moved to just before it; the ones firing creates
            # fall due a whole window later.
            where = "state = 'pending'" + (" AND alert_id = :a" if alert_id else "")
            session.execute(text(f"UPDATE deadlines SET due_at = :past WHERE {where}"),
                            {"past": _past(db_now(session)), "a": alert_id})
        self.workers += 1
        return fire_due(self.rt.db, self.rt.settings, f"model-escalator-{self.workers}")

    # --- observation ----------------------------------------------------------------------

    def new_requests(self) -> list[dict[str, Any]]:
        """What the provider was handed since the last call: kind, to, delivery id."""
        reqs = self.sim.requests()
        fresh, self.seen_requests = reqs[self.seen_requests:], len(reqs)
        out = []
        for req in fresh:
            if req["path"].endswith("/Messages.json"):
                form = req.get("form") or {}
                m = _REF.search(form.get("StatusCallback", ""))
                out.append({"kind": "sms", "to": form.get("To", ""),
                            "delivery": int(m.group(1)) if m else None})
            elif req["path"] == "/v3/mail/send":
                for p in (req.get("json") or {}).get("personalizations", []):
                    ref = (p.get("custom_args") or {}).get("aln_delivery")
                    out.append({"kind": "email", "to": p["to"][0]["email"],
                                "delivery": int(ref) if ref else None})
        return out

    def new_moves(self) -> list[tuple[str, int, str | None, str]]:
        with self.rt.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, tbl, row_id, old, new FROM model_moves "
                                     "WHERE id > :n ORDER BY id"), {"n": self.moves_seen}).all()
        if rows:
            self.moves_seen = rows[-1][0]
        return [(r[1], r[2], r[3], r[4]) for r in rows]

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.rt.db.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def alert_row(self, alert_id: int) -> Alert | None:
        with self.rt.db.session() as session:
            return session.get(Alert, alert_id)


def _past(now: datetime) -> datetime:
    return now - timedelta(seconds=1)


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def reset_postgres(engine: Engine) -> None:
    """Empty every table but the roster's (the template's rows stay), and the move log."""
    names = [t.name for t in reversed(Base.metadata.sorted_tables)
             if t.name not in ROSTER_TABLES]
    with engine.begin() as conn:
        # The audit log refuses TRUNCATE (migration 0003): the test, which owns this
        # throw-away schema, lifts that for its own reset only.
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text(f"TRUNCATE {', '.join(names)}, model_moves RESTART IDENTITY"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        conn.execute(text("UPDATE contacts SET opted_out = false, opted_out_at = NULL, "
                          "dead_reason = NULL, dead_at = NULL"))


def message_sid() -> str:
    return "SM" + secrets.token_hex(16)
