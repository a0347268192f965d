"""Report figures for a scenario with known times: every number checked exactly."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from dispatcher.cli.main import app
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Response,
    Volunteer,
    Zone,
)
from dispatcher.models import Recipient as Rec
from dispatcher.reports.csv_export import render_csv
from dispatcher.reports.figures import build_report, percentile
from dispatcher.reports.trend import exercise_trend
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from tests.conftest import SAMPLE_ROSTER

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
TODAY = date(2026, 11, 24)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def scenario(rt: Runtime, *, exercise: bool = True, shift: float = 0.0) -> int:
    """Chiapas escalated to Brian (acks at 130 s), Oaxaca acked by Victor at 20 s, Puebla's
    Quinn on a dead number then Rosa's headcount at 70 s, Guerrero unreached."""
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        if s.scalar(select(Volunteer).where(Volunteer.name == "Ana Morales")) is None:
            import_sample_roster(s, rt.vault, post, SAMPLE_ROSTER, today=TODAY)
        vol = {v.name: v for v in s.scalars(select(Volunteer))}
        zone = {z.name: z for z in s.scalars(select(Zone))}
        alert = Alert(post_id=post.id, kind="security", exercise=exercise, title="Drill",
                      bodies={"en": {"sms": "x"}}, reply_code="4821", ack_window_seconds=60,
                      policy={"quorum": 1}, state="completed", sent_at=at(shift))
        s.add(alert)
        s.flush()
        zones = {"Chiapas": ("acknowledged", 1, at(shift + 130)),
                 "Oaxaca": ("acknowledged", 0, at(shift + 20)),
                 "Puebla": ("acknowledged", 1, at(shift + 70)),
                 "Guerrero": ("unreached", 999, None)}
        for name, (state, tier, acked) in zones.items():
            s.add(AlertZone(alert_id=alert.id, zone_id=zone[name].id, state=state,
                            current_tier=tier, acknowledged_at=acked,
                            unreached_at=at(shift + 60) if state == "unreached" else None))

        def rec(name: str, zname: str, tier: int, state: str, notified: float | None,
                acked: float | None) -> Rec:
            r = Rec(alert_id=alert.id, volunteer_id=vol[name].id, zone_id=zone[zname].id,
                    tier=tier, state=state,
                    notified_at=at(shift + notified) if notified is not None else None,
                    acknowledged_at=at(shift + acked) if acked is not None else None,
                    acknowledged_via="sms" if acked is not None else None)
            s.add(r)
            s.flush()
            return r

        people = {
            "Ana": rec("Ana Morales", "Chiapas", 0, "escalated", 1, None),
            "Brian": rec("Brian Keller", "Chiapas", 1, "acknowledged", 62, 130),
            "Victor": rec("Victor Castillo", "Oaxaca", 0, "acknowledged", 2, 20),
            "Quinn": rec("Quinn Harper", "Puebla", 0, "failed", None, None),
            "Rosa": rec("Rosa Jiménez", "Puebla", 1, "acknowledged", 3, 70),
            "Karla": rec("Karla Mendoza", "Guerrero", 0, "escalated", 1, None),
            "Duty": rec("ACS Duty Officer", "Guerrero", 999, "notified", 61, None),
        }

        def deliver(who: str, channel: str, state: str, purpose: str = "alert",
                    code: str | None = None) -> None:
            contact = next(c for c in vol[_full(who)].contacts if c.channel == channel)
            s.add(Delivery(alert_id=alert.id, recipient_id=people[who].id,
                           contact_id=contact.id, channel=channel, purpose=purpose,
                           body="x", state=state, error_code=code))

        deliver("Ana", "sms", "delivered")
        deliver("Brian", "sms", "delivered")
        deliver("Victor", "sms", "delivered")
        deliver("Victor", "email", "delivered")
        deliver("Quinn", "sms", "failed", code="21211")
        deliver("Quinn", "email", "bounced", purpose="failover", code="5.1.1")
        deliver("Rosa", "sms", "sent")
        deliver("Karla", "sms", "delivered")
        deliver("Duty", "sms", "delivered", purpose="unreached")
        for zname in ("Chiapas", "Guerrero"):
            s.add(Deadline(alert_id=alert.id, zone_id=zone[zname].id, tier=0,
                           kind="escalate", due_at=at(shift + 60), state="done"))
        s.add(Response(alert_id=alert.id, recipient_id=people["Rosa"].id,
                       zone_id=zone["Puebla"].id, kind="headcount", text="DONE 12 3",
                       headcount_reached=12, headcount_need_help=3))
        s.add(Response(alert_id=alert.id, recipient_id=people["Karla"].id,
                       zone_id=zone["Guerrero"].id, kind="help", text="HELP", urgent=True))
        s.add(Response(alert_id=alert.id, recipient_id=people["Victor"].id,
                       zone_id=zone["Oaxaca"].id, kind="ack", text="Sí"))
        teresa = s.scalars(select(Contact).join(Volunteer).where(
            Volunteer.name == "Karla Mendoza", Contact.channel == "sms")).one()
        teresa.opted_out = True
        return alert.id


def _full(short: str) -> str:
    return {"Ana": "Ana Morales", "Brian": "Brian Keller", "Victor": "Victor Castillo",
            "Quinn": "Quinn Harper", "Rosa": "Rosa Jiménez", "Karla": "Karla Mendoza",
            "Duty": "ACS Duty Officer"}[short]


def test_every_figure_of_a_known_scenario(rt: Runtime) -> None:
    alert_id = scenario(rt)
    with rt.db.session() as s:
        r = build_report(s, alert_id, today=TODAY)
    summary = r["summary"]
    # Volunteer ack times: Brian 130-62=68, Victor 20-2=18, Rosa 70-3=67.
    assert summary["recipients"] == 6
    assert summary["acknowledged"] == 3
    assert summary["acknowledgement_rate"] == 0.5
    assert summary["median_time_to_ack_seconds"] == 67
    assert summary["p90_time_to_ack_seconds"] == 68
    assert summary["reached"] == 4  # Ana, Brian, Victor, Karla: delivered receipts
    assert summary["handed_off"] == 5  # + Rosa (sent, no delivery receipt yet)
    assert summary["failovers"] == 1
    assert summary["escalations"] == 2
    assert summary["zones_unreached"] == 1
    assert summary["help_requests"] == 1
    assert (summary["headcount_reached"], summary["headcount_need_help"]) == (12, 3)
    assert summary["opt_outs"] == 1
    assert summary["deliveries_by_status"] == {"delivered": 6, "failed": 1, "bounced": 1,
                                               "sent": 1}
    assert summary["deliveries_by_error_code"] == {"21211": 1, "5.1.1": 1}
    assert summary["duty_officer_notified"] is True
    zones = {z["zone"]: z for z in r["zones"]}
    assert zones["Oaxaca"]["time_to_ack_seconds"] == 20
    assert zones["Chiapas"]["time_to_ack_seconds"] == 130
    assert zones["Chiapas"]["deepest_tier"] == "alternate1"
    assert zones["Chiapas"]["escalations"] == 1
    assert zones["Guerrero"]["acknowledged"] is False
    assert zones["Guerrero"]["deepest_tier"] == "duty officer"
    assert zones["Puebla"]["headcount_reached"] == 12
    assert [p["seconds"] for p in r["curve"]] == [20, 70, 130]
    assert [p["acknowledged"] for p in r["curve"]] == [1, 2, 3]
    quinn = next(v for v in r["volunteers"] if v["name"] == "Quinn Harper")
    assert quinn["delivery_outcome"] in ("failed", "bounced")
    assert quinn["channels_tried"] == ["email", "sms"]
    assert "*" in quinn["contact"] and "9" not in quinn["contact"].split("*")[0][3:]
    kinds = [(f["severity"], f["kind"]) for f in r["findings"]]
    assert ("critical", "zone_unreached") in kinds
    assert ("critical", "unreachable_volunteer") in kinds
    assert ("warning", "slow_zone") in kinds  # Chiapas 130 s > 60 s window
    assert ("warning", "opted_out") in kinds
    assert ("warning", "term_ended") in kinds  # Guerrero's Luis Herrera
    assert any(f["kind"] == "no_alternate" and "Guerrero" in f["message"]
               for f in r["findings"])
    assert kinds.index(("critical", "zone_unreached")) < kinds.index(("warning", "slow_zone"))


def test_findings_name_what_the_drill_left_to_follow_up(rt: Runtime) -> None:
    """HELP, citizens needing help, a number found dead during the drill (not one dead
    before it), an update and a cancel; headcounts only for the zone that reported one."""
    from dispatcher.models import AlertVersion

    alert_id = scenario(rt)
    with rt.db.session() as s:
        quinn_sms = s.scalars(select(Contact).join(Volunteer).where(
            Volunteer.name == "Quinn Harper", Contact.channel == "sms")).one()
        quinn_sms.dead_reason, quinn_sms.dead_at = "twilio 21211 invalid number", at(5)
        brian_email = s.scalars(select(Contact).join(Volunteer).where(
            Volunteer.name == "Brian Keller", Contact.channel == "email")).one()
        brian_email.dead_reason, brian_email.dead_at = "bounced", at(-86_400)
        for number, msg_type, body in ((1, "alert", "x"), (2, "update", "Roads closed"),
                                       (3, "cancel", "cancelled")):
            s.add(AlertVersion(alert_id=alert_id, number=number, msg_type=msg_type, body=body,
                               texts={}, sent_at=at(number * 10), created_by="officer:duty",
                               messages=4))
    with rt.db.session() as s:
        r = build_report(s, alert_id, today=TODAY)
    found = {f["kind"]: f for f in r["findings"]}
    assert found["help"]["message"] == "Karla Mendoza (Guerrero) asked for HELP: HELP"
    assert found["citizens_need_help"]["message"].startswith("Puebla: 3 citizen(s) need help")
    dead = [f["message"] for f in r["findings"] if f["kind"] == "dead_number"]
    assert len(dead) == 1 and dead[0].startswith("Quinn Harper (Puebla): sms ")
    assert "found dead in this drill (twilio 21211 invalid number)" in dead[0]
    assert "1 update(s)" in found["updated"]["message"]
    assert "cancelled by officer:duty; 4 stand-down" in found["cancelled"]["message"]
    assert [f["severity"] for f in r["findings"]] == sorted(
        (f["severity"] for f in r["findings"]), key=["critical", "warning", "info"].index)
    assert {z["zone"] for z in r["zones"] if z["headcount_reported"]} == {"Puebla"}
    assert r["summary"]["headcounts_reported"] == 1
    assert r["alert"]["timezone"] == "America/Mexico_City"


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.9) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile(list(map(float, range(1, 11))), 0.9) == 9.0


def test_csv_has_one_row_per_volunteer(rt: Runtime) -> None:
    alert_id = scenario(rt)
    with rt.db.session() as s:
        rows = list(csv.DictReader(io.StringIO(render_csv(build_report(s, alert_id)))))
    assert len(rows) == 6
    assert {r["name"] for r in rows} >= {"Brian Keller", "Quinn Harper"}
    brian = next(r for r in rows if r["name"] == "Brian Keller")
    assert brian["time_to_ack_seconds"] == "68.0" and brian["tier"] == "alternate1"


def test_trend_lists_exercises_in_order(rt: Runtime) -> None:
    first = scenario(rt, shift=0)
    scenario(rt, exercise=False, shift=100)
    second = scenario(rt, shift=86_400)
    with rt.db.session() as s:
        trend = exercise_trend(s)
        later = exercise_trend(s, since=date(2026, 11, 21))
    assert [t["id"] for t in trend] == [first, second]
    assert [t["id"] for t in later] == [second]
    assert trend[0]["acknowledgement_rate"] == 0.5 and trend[0]["zones_unreached"] == 1


def test_cli_report_json_and_unknown_id(rt: Runtime, cli_env: dict[str, str],
                                        tmp_path: Path) -> None:
    alert_id = scenario(rt)
    runner = CliRunner()
    out = runner.invoke(app, ["report", str(alert_id), "--format", "json"], env=cli_env)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["summary"]["recipients"] == 6 and len(data["zones"]) == 4
    # For a script (a pipe here), compact: one line from the C encoder.
    assert out.stdout.strip().count("\n") == 0
    html = tmp_path / "r.html"
    out = runner.invoke(app, ["report", str(alert_id), "-o", str(html)], env=cli_env)
    assert out.exit_code == 0 and "<svg" in html.read_text()
    missing = runner.invoke(app, ["report", "999", "--format", "json"], env=cli_env)
    assert missing.exit_code == 2 and "not found" in missing.output
    bad = runner.invoke(app, ["report", str(alert_id), "--format", "pdf"], env=cli_env)
    assert bad.exit_code == 2 and "pdf" in bad.output


@pytest.mark.browser
def test_html_report_renders_in_chromium(rt: Runtime, tmp_path: Path) -> None:
    from tests.browser_support import chromium_page

    alert_id = scenario(rt)
    from dispatcher.reports.html import render_html

    with rt.db.session() as s:
        path = tmp_path / "report.html"
        path.write_text(render_html(s, alert_id), encoding="utf-8")
    # Self-contained: nothing is loaded from elsewhere (namespace URIs are not loads).
    assert not re.search(r"""(src|href)=["']https?://""", path.read_text())
    shot = Path(__file__).resolve().parents[2] / "test-artifacts" / "report.png"
    with chromium_page() as page:
        page.goto(path.as_uri())
        assert page.locator("#summary .card").count() >= 8
        assert page.locator("#curve svg").is_visible()
        assert page.locator("#zones tbody tr").count() == 4
        assert page.locator('#zones tr[data-zone="Guerrero"]').get_attribute(
            "data-state") == "unreached"
        shot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_sqlite_times_read_as_naive_utc() -> None:
    """The report reads SQLite's time text itself (not through UTCDateTime): SQLAlchemy's
    text, a whole second, or a text with an offset all come back as naive UTC."""
    from dispatcher.models import sqlite_utc

    assert sqlite_utc("2026-11-20 14:00:01.500000") == datetime(2026, 11, 20, 14, 0, 1,
                                                                   500_000)
    assert sqlite_utc("2026-11-20 14:00:01") == datetime(2026, 11, 20, 14, 0, 1)
    assert sqlite_utc("2026-11-20 15:00:01+01:00") == datetime(2026, 11, 20, 14, 0, 1)


def test_the_report_reads_the_alert_whole_then_plans_as_usual(rt: Runtime) -> None:
    """PostgreSQL: the report's big reads run with `_PG_WHOLE_ALERT` (room to sort in
    memory), and the transaction plans as before afterwards."""
    if rt.db.is_sqlite:
        pytest.skip("PostgreSQL's planner settings")
    from sqlalchemy import text

    from dispatcher.recipient_json import _PG_WHOLE_ALERT, whole_alert_plan

    alert_id = scenario(rt)
    with rt.db.session() as s:
        def settings() -> dict[str, Any]:
            return {name: s.execute(text(f"SHOW {name}")).scalar() for name in _PG_WHOLE_ALERT}

        before = settings()
        with whole_alert_plan(s.connection()):
            assert settings() == {"enable_nestloop": "off", "jit": "off", "work_mem": "64MB"}
        assert settings() == before
        with pytest.raises(ZeroDivisionError), whole_alert_plan(s.connection()):
            1 / 0  # noqa: B018
        assert settings() == before, "a failed read leaves the plan as usual too"
        assert build_report(s, alert_id, today=TODAY)["summary"]["recipients"] == 6
        assert settings() == before
        # A statement that fails aborts the transaction: its error is the one raised (a
        # deadlock must reach `Database.run` as a deadlock), not the reset's refusal.
        with pytest.raises(DBAPIError) as failed, whole_alert_plan(s.connection()):
            s.execute(text("SELECT 1 / (SELECT count(*) - count(*) FROM alerts)"))
        assert getattr(failed.value.orig, "sqlstate", None) == "22012", failed.value
        s.rollback()
        assert settings() == before
    # The connection lost inside the block: its error is raised, not a reset's over it.
    with rt.db.session() as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
        with pytest.raises(DBAPIError) as lost, whole_alert_plan(s.connection()):
            with rt.db.engine.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            s.execute(text("SELECT 1"))
        assert lost.value.statement == "SELECT 1", lost.value
        s.rollback()
    # Its connection closed inside the block (a generator finalized late): the block's
    # own error, not the closed connection's refusal.
    with rt.db.engine.connect() as conn:
        with pytest.raises(ZeroDivisionError), whole_alert_plan(conn):
            conn.close()
            1 / 0  # noqa: B018


def test_namesakes_in_one_zone_and_tier_are_listed_in_recipient_order(rt: Runtime) -> None:
    """Volunteers of one name, zone and tier: the report lists them in the order they were
    asked (recipient id), on both databases, whatever order the database reads them in
    (here neither the volunteers' order nor the recipients' last changes follow it)."""
    namesakes = 8
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        zone = s.scalars(select(Zone).where(Zone.post_id == post.id).order_by(Zone.id)).first()
        assert zone is not None
        alert = Alert(post_id=post.id, kind="security", exercise=True, title="Namesakes",
                      bodies={"en": {"sms": "x"}}, reply_code="4821", ack_window_seconds=60,
                      policy={}, state="completed", sent_at=T0)
        s.add(alert)
        s.flush()
        volunteers = []
        for i in range(namesakes):
            v = Volunteer(post_id=post.id, kind="clv", name="Sam Ortiz", languages="en")
            s.add(v)
            s.flush()
            s.add(Contact(volunteer_id=v.id, channel="sms", value_enc=b"x",
                          value_hash=f"namesake-{i}", masked=f"+52******000{i}",
                          opted_out=False))
            volunteers.append(v)
        recs = []
        for v in reversed(volunteers):  # the last volunteer added is asked first
            recs.append(Rec(alert_id=alert.id, volunteer_id=v.id, zone_id=zone.id, tier=0,
                            state="notified", notified_at=at(1)))
            s.add(recs[-1])
            s.flush()
        for i, r in reversed(list(enumerate(recs))):  # the later asked, the earlier updated
            r.updated_at = at(100 - i)
            s.flush()
        alert_id = alert.id
    with rt.db.session() as s:
        report = build_report(s, alert_id, today=TODAY)
    assert [v["contact"] for v in report["volunteers"]] == [
        f"+52******000{i}" for i in reversed(range(namesakes))]


def test_deliveries_folded_in_python_equal_the_databases_folds(rt: Runtime) -> None:
    """`fold_deliveries` (SQLite's way: one read, folded in Python) gives what the
    database's three folds give (PostgreSQL's way): paths, error codes and totals, their
    order included."""
    from dispatcher.reports.figures import (
        delivery_paths,
        delivery_totals,
        error_codes,
        fold_deliveries,
    )

    alert_id = scenario(rt)
    with rt.db.session() as s:
        first = s.scalars(select(Delivery).where(Delivery.alert_id == alert_id)
                          .order_by(Delivery.id)).first()
        assert first is not None
        # A later twin of the first delivery, marked a possible duplicate, and a failover.
        for purpose, dup in (("alert", True), ("failover", False)):
            s.add(Delivery(alert_id=alert_id, recipient_id=first.recipient_id,
                           contact_id=first.contact_id, channel=first.channel,
                           purpose=purpose, body="x", state="bounced", error_code="550",
                           possibly_duplicate=dup))
        s.flush()
        db = s.connection()
        folded = fold_deliveries(db, alert_id)
        paths, codes, totals = delivery_paths(db, alert_id), error_codes(db, alert_id), \
            delivery_totals(db, alert_id)
    assert folded[0] == paths and folded[1] == codes
    assert folded[2] == totals
    assert list(folded[2].by_status) == list(totals.by_status)
    assert list(folded[2].by_code) == list(totals.by_code) and "550" in totals.by_code
    assert totals.failovers and totals.duplicated == 1


def test_volunteers_sorted_key_by_key_as_by_the_four_keys() -> None:
    """`sort_volunteers`' stable sorts, one a key, give the order of the keys as a tuple."""
    import random

    from dispatcher.reports.figures import VOLUNTEER_ORDER, sort_volunteers

    rng = random.Random(3)
    # (id, volunteer, zone id, tier, state, notified, acknowledged, via, name, zone, ...)
    rows = [(rng.randrange(50), 0, 0, rng.choice([0, 1, 2, 999]), "", None, None, None,
             rng.choice(["Ana", "Ána", "ana", "Ana ", "Bo", "Émile"]),
             rng.choice(["Oaxaca", "Estado de México", "Chiapas"]), "", 0)
            for _ in range(500)]
    listed = list(rows)
    sort_volunteers(listed)
    assert listed == sorted(rows, key=lambda r: tuple(r[i] for i in VOLUNTEER_ORDER))
