"""The escalation engine on the database alone: deadlines fire once, acks win, chains end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from dispatcher.acks import acknowledge
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.errors import InvalidInput, Refused
from dispatcher.escalation.engine import claim_due_deadlines, fire_due
from dispatcher.escalation.policy import EscalationPolicy, load_policy, parse_duration
from dispatcher.models import Alert, AlertZone, Deadline, Delivery, Recipient, Volunteer
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings
from tests.conftest import CONFIG_DIR, rt_with_roster


@pytest.fixture
def rt(database_url: str) -> Runtime:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def send(rt: Runtime, zones: list[str], **kwargs: object) -> int:
    req = AlertRequest(zones=zones, body="Test", **kwargs)  # type: ignore[arg-type]
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        return send_alert(session, rt.settings, post, req).alert_id


def make_due(rt: Runtime, alert_id: int) -> None:
    with rt.db.session() as session:
        past = db_now(session) - timedelta(seconds=1)
        session.execute(update(Deadline).where(Deadline.alert_id == alert_id,
                                               Deadline.state == "pending")
                        .values(due_at=past))


def tiers(rt: Runtime, alert_id: int, zone: str) -> dict[str, int]:
    with rt.db.session() as session:
        rows = session.execute(
            select(Volunteer.name, Recipient.tier).join(Volunteer)
            .join(AlertZone, (AlertZone.zone_id == Recipient.zone_id)
                  & (AlertZone.alert_id == Recipient.alert_id))
            .where(Recipient.alert_id == alert_id)).all()
    return {name: tier for name, tier in rows}


def zone_state(rt: Runtime, alert_id: int) -> dict[int, str]:
    with rt.db.session() as session:
        return dict(session.execute(select(AlertZone.zone_id, AlertZone.state)
                                    .where(AlertZone.alert_id == alert_id)).all())


def test_parse_duration() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("4s") == 4
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    for bad in ("", "soon", "0s", "-5m"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)


def test_policy_loads_from_config_and_is_frozen_on_the_alert(rt: Runtime) -> None:
    assert load_policy(CONFIG_DIR, "drill").ack_window_seconds == 20
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=4, policy="drill")
    with rt.db.session() as session:
        policy = EscalationPolicy.from_dict(session.get(Alert, alert_id).policy)
    assert policy.ack_window_seconds == 4 and policy.stand_down and policy.name == "drill"


def test_nothing_fires_before_the_window(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=600)
    assert fire_due(rt.db, rt.settings, "w1") == 0
    assert tiers(rt, alert_id, "Chiapas") == {"Ana Morales": 0}


def test_chain_walks_alternates_then_gives_up_to_the_duty_officer(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=60)
    for expected in (["Ana Morales", "Brian Keller"],
                     ["Ana Morales", "Brian Keller", "Carmen Ruiz"]):
        make_due(rt, alert_id)
        assert fire_due(rt.db, rt.settings, "w1") == 1
        assert sorted(tiers(rt, alert_id, "Chiapas")) == expected
    make_due(rt, alert_id)
    assert fire_due(rt.db, rt.settings, "w1") == 1
    assert list(zone_state(rt, alert_id).values()) == ["unreached"]
    people = tiers(rt, alert_id, "Chiapas")
    assert people["ACS Duty Officer"] == 999
    with rt.db.session() as session:
        notices = session.scalars(select(Delivery).where(Delivery.alert_id == alert_id,
                                                         Delivery.purpose == "unreached")).all()
        assert session.get(Alert, alert_id).state == "completed"
    assert sorted(d.channel for d in notices) == ["email", "sms"]
    assert all("Chiapas" in d.body for d in notices)


def test_acknowledgement_cancels_the_zone_deadlines(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=60)
    with rt.db.session() as session:
        ana = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        outcome = acknowledge(session, rt.settings, ana, at=db_now(session), via="sms")
    assert outcome.zone_acknowledged
    make_due(rt, alert_id)
    assert fire_due(rt.db, rt.settings, "w1") == 0
    assert tiers(rt, alert_id, "Chiapas") == {"Ana Morales": 0}
    assert list(zone_state(rt, alert_id).values()) == ["acknowledged"]


def test_ack_that_lands_after_the_claim_still_wins(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=60)
    make_due(rt, alert_id)
    claimed = claim_due_deadlines(rt.db, "w1", lease_seconds=30)
    assert len(claimed) == 1
    with rt.db.session() as session:
        ana = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        acknowledge(session, rt.settings, ana, at=db_now(session), via="sms")
    from dispatcher.escalation.engine import fire

    with rt.db.session() as session:
        assert fire(session, rt.settings, claimed[0], "w1") is False
    assert tiers(rt, alert_id, "Chiapas") == {"Ana Morales": 0}


def test_a_crashed_workers_claim_is_taken_over_after_the_lease(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas"], ack_window_seconds=60)
    make_due(rt, alert_id)
    assert claim_due_deadlines(rt.db, "dead-worker", lease_seconds=30) != []
    assert fire_due(rt.db, rt.settings, "w2") == 0  # still leased to the dead worker
    with rt.db.session() as session:
        session.execute(update(Deadline).where(Deadline.state == "claimed").values(
            lease_until=db_now(session) - timedelta(seconds=1)))
    assert fire_due(rt.db, rt.settings, "w2") == 1
    assert "Brian Keller" in tiers(rt, alert_id, "Chiapas")


def test_zone_without_alternate_is_unreached_after_one_window(rt: Runtime) -> None:
    alert_id = send(rt, ["Hidalgo"], ack_window_seconds=60)
    make_due(rt, alert_id)
    fire_due(rt.db, rt.settings, "w1")
    assert list(zone_state(rt, alert_id).values()) == ["unreached"]


def test_expired_alternate_is_skipped(rt: Runtime) -> None:
    # Guerrero's alternate1 (Luis Herrera) ended his term: the chain goes to the officer.
    alert_id = send(rt, ["Guerrero"], ack_window_seconds=60)
    make_due(rt, alert_id)
    fire_due(rt.db, rt.settings, "w1")
    assert "Luis Herrera" not in tiers(rt, alert_id, "Guerrero")
    assert list(zone_state(rt, alert_id).values()) == ["unreached"]


def test_zone_with_nobody_is_refused_unless_forced(rt: Runtime) -> None:
    with pytest.raises(Refused, match="Tabasco"):
        send(rt, ["Tabasco"])
    alert_id = send(rt, ["Tabasco"], force=True)
    fire_due(rt.db, rt.settings, "w1")
    assert list(zone_state(rt, alert_id).values()) == ["unreached"]


def test_quorum_two_needs_two_acknowledgements(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    policies = tmp_path / "config"
    import shutil

    shutil.copytree(CONFIG_DIR, policies)
    (policies / "policies" / "two.toml").write_text('ack_window = "1m"\nquorum = 2\n')
    settings: Settings = rt.settings.model_copy(update={"config_dir": policies})
    req = AlertRequest(zones=["Mexico City"], body="x", policy="two")
    with rt.db.session() as session:
        post = ensure_post(session, settings, rt.vault)
        alert_id = send_alert(session, settings, post, req).alert_id
    with rt.db.session() as session:
        first, second = session.scalars(select(Recipient).where(
            Recipient.alert_id == alert_id).order_by(Recipient.id)).all()
        assert not acknowledge(session, settings, first, at=db_now(session),
                               via="sms").zone_acknowledged
        assert acknowledge(session, settings, second, at=db_now(session),
                           via="sms").zone_acknowledged


def test_deadline_count_matches_zones(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas", "Oaxaca", "Puebla"], ack_window_seconds=60)
    with rt.db.session() as session:
        n = session.scalar(select(func.count()).select_from(Deadline).where(
            Deadline.alert_id == alert_id))
    assert n == 3


def _with_policy(rt: Runtime, tmp_path, name: str, text: str) -> Settings:  # type: ignore[no-untyped-def]
    import shutil

    config = tmp_path / "config"
    if not config.exists():
        shutil.copytree(CONFIG_DIR, config)
    (config / "policies" / f"{name}.toml").write_text(text)
    return rt.settings.model_copy(update={"config_dir": config})


def _send_with(rt: Runtime, settings: Settings, zones: list[str], policy: str) -> int:
    req = AlertRequest(zones=zones, body="x", policy=policy)
    with rt.db.session() as session:
        post = ensure_post(session, settings, rt.vault)
        return send_alert(session, settings, post, req).alert_id


def _purposes(rt: Runtime, alert_id: int) -> list[tuple[str, str]]:
    with rt.db.session() as session:
        return [(name, purpose) for name, purpose in session.execute(
            select(Volunteer.name, Delivery.purpose).join(Recipient, Recipient.id ==
                                                          Delivery.recipient_id)
            .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
            .where(Delivery.alert_id == alert_id, Delivery.channel == "sms")
            .order_by(Delivery.id))]


def test_reminder_goes_to_the_silent_tier_within_the_window(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _with_policy(rt, tmp_path, "remind", 'ack_window = "60s"\nreminders = 1\n')
    alert_id = _send_with(rt, settings, ["Chiapas"], "remind")
    with rt.db.session() as session:
        sent_at = session.get(Alert, alert_id).sent_at
        kinds = sorted((d.kind, round((d.due_at - sent_at).total_seconds()))
                       for d in session.scalars(select(Deadline)))
    assert kinds == [("escalate", 60), ("reminder", 30)]
    with rt.db.session() as session:
        session.execute(update(Deadline).where(Deadline.kind == "reminder")
                        .values(due_at=db_now(session) - timedelta(seconds=1)))
    fire_due(rt.db, settings, "w1")
    assert _purposes(rt, alert_id) == [("Ana Morales", "alert"), ("Ana Morales", "reminder")]


def test_stand_down_tells_the_others_when_the_zone_is_covered(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _with_policy(rt, tmp_path, "sd", 'ack_window = "60s"\nstand_down = true\n')
    alert_id = _send_with(rt, settings, ["Mexico City"], "sd")
    with rt.db.session() as session:
        session.execute(update(Recipient).values(state="notified"))
    with rt.db.session() as session:
        daniel = session.scalars(select(Recipient).join(Volunteer).where(
            Volunteer.name == "Daniel Ortega")).one()
        acknowledge(session, settings, daniel, at=db_now(session), via="sms")
    assert ("Emily Carter", "stand_down") in _purposes(rt, alert_id)
    assert ("Daniel Ortega", "stand_down") not in _purposes(rt, alert_id)


def test_each_mode_passes_a_silent_volunteers_duty_to_the_alternate(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _with_policy(rt, tmp_path, "each", 'ack_window = "60s"\nmode = "each"\n')
    alert_id = _send_with(rt, settings, ["Mexico City"], "each")
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Deadline).where(
            Deadline.kind == "escalate")) == 2  # one per targeted volunteer
        daniel = session.scalars(select(Recipient).join(Volunteer).where(
            Volunteer.name == "Daniel Ortega")).one()
        assert not acknowledge(session, settings, daniel, at=db_now(session),
                               via="sms").zone_acknowledged
    make_due(rt, alert_id)
    fire_due(rt.db, settings, "w1")
    people = tiers(rt, alert_id, "Mexico City")
    assert people["Fernando Díaz"] == 1  # Emily stayed silent: her duty passed on
    with rt.db.session() as session:
        fernando = session.scalars(select(Recipient).join(Volunteer).where(
            Volunteer.name == "Fernando Díaz")).one()
        assert acknowledge(session, settings, fernando, at=db_now(session),
                           via="sms").zone_acknowledged


def test_a_second_worker_on_one_sqlite_file_is_refused(rt: Runtime) -> None:
    from dispatcher.worker import Worker

    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL takes several workers")
    first = Worker(rt, name="host:1:a")
    first.register()
    with pytest.raises(Refused, match="one worker per file"):
        Worker(rt, name="host:2:b").register()
    first.unregister()
    Worker(rt, name="host:3:c").register()
