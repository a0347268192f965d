"""A policy's tier as steps: later channels come due by the clock, an answer cancels them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select, update

from dispatcher.acks import acknowledge
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.errors import InvalidInput
from dispatcher.escalation.engine import fire_due
from dispatcher.escalation.policy import LEGACY_STEPS, EscalationPolicy, Step, load_policy
from dispatcher.models import Alert, Deadline, Delivery, Recipient, Volunteer
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from tests.conftest import CONFIG_DIR, SAMPLE_ROSTER, UNREACHABLE_PROVIDERS, make_settings

#: SMS and email at once, WhatsApp after 5 minutes of silence, the next tier after 15.
STEPPED = """
ack_window = "15m"
[[steps]]
channels = ["sms", "email"]
after = "0s"
[[steps]]
channels = ["whatsapp"]
after = "5m"
"""


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "policies" / "stepped.toml").write_text(STEPPED, encoding="utf-8")
    runtime = Runtime.open(make_settings(
        f"sqlite:///{tmp_path / 'aln.db'}", **UNREACHABLE_PROVIDERS, config_dir=config,
        twilio_whatsapp_from="+14155238886"))
    with runtime.db.session() as session:
        post = ensure_post(session, runtime.settings, runtime.vault)
        import_sample_roster(session, runtime.vault, post, SAMPLE_ROSTER)
    yield runtime
    runtime.close()


def send(rt: Runtime, policy: str = "stepped") -> int:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        alert_id = send_alert(session, rt.settings, post, AlertRequest(
            zones=["Chiapas"], body="Test", policy=policy)).alert_id
    assert alert_id is not None
    return alert_id


def deliveries(rt: Runtime, alert_id: int) -> list[tuple[str, str]]:
    """(volunteer, channel) of every alert delivery, sorted."""
    with rt.db.session() as session:
        return sorted(tuple(row) for row in session.execute(
            select(Volunteer.name, Delivery.channel).join(Recipient, Recipient.id ==
                                                          Delivery.recipient_id)
            .join(Volunteer).where(Delivery.alert_id == alert_id,
                                   Delivery.purpose == "alert")).all())


def test_a_silent_tier_gets_the_next_step_at_5_minutes_then_the_next_tier(rt: Runtime) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        alert_id = send(rt)
    assert deliveries(rt, alert_id) == [("Ana Morales", "email"), ("Ana Morales", "sms")]
    with time_machine.travel(start + timedelta(minutes=4, seconds=59), tick=False):
        assert fire_due(rt.db, rt.settings, "w1") == 0
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        assert fire_due(rt.db, rt.settings, "w1") == 1
    assert ("Ana Morales", "whatsapp") in deliveries(rt, alert_id)
    with time_machine.travel(start + timedelta(minutes=15), tick=False):
        assert fire_due(rt.db, rt.settings, "w1") == 1
    # Brian (alternate1) has no WhatsApp: his tier's step has nobody, so no step deadline.
    assert ("Brian Keller", "sms") in deliveries(rt, alert_id)
    with rt.db.session() as session:
        steps = session.scalars(select(Deadline.tier).where(
            Deadline.alert_id == alert_id, Deadline.kind == "step")).all()
    assert steps == [0]


def test_an_answer_before_the_step_cancels_it(rt: Runtime) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        alert_id = send(rt)
    with time_machine.travel(start + timedelta(minutes=2), tick=False), \
            rt.db.session() as session:
        ana = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        acknowledge(session, rt.settings, ana, at=db_now(session), via="sms")
    with time_machine.travel(start + timedelta(minutes=6), tick=False):
        assert fire_due(rt.db, rt.settings, "w1") == 0
    assert ("Ana Morales", "whatsapp") not in deliveries(rt, alert_id)
    with rt.db.session() as session:
        states = session.scalars(select(Deadline.state).where(
            Deadline.alert_id == alert_id, Deadline.kind == "step")).all()
    assert states == ["cancelled"]


def test_an_alert_frozen_without_steps_escalates_as_before(rt: Runtime) -> None:
    alert_id = send(rt, policy="default")
    with rt.db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        old = {k: v for k, v in alert.policy.items() if k != "steps"}
        alert.policy = old  # as frozen before steps existed
        session.flush()
        session.execute(update(Deadline).where(Deadline.alert_id == alert_id).values(
            due_at=db_now(session) - timedelta(seconds=1)))
    assert EscalationPolicy.from_dict(old).tier_steps() == LEGACY_STEPS
    assert fire_due(rt.db, rt.settings, "w1") == 1
    # The next tier gets every message channel at once, and no later step is scheduled.
    assert ("Brian Keller", "email") in deliveries(rt, alert_id)
    assert ("Brian Keller", "sms") in deliveries(rt, alert_id)
    with rt.db.session() as session:
        assert session.scalars(select(Deadline).where(Deadline.alert_id == alert_id,
                                                      Deadline.kind == "step")).all() == []


def test_the_shipped_policies_and_their_steps() -> None:
    default = load_policy(CONFIG_DIR, "default")
    assert default.steps == (Step(("sms", "whatsapp", "email"), 0), Step(("voice",), 300))
    drill = load_policy(CONFIG_DIR, "drill")
    assert drill.ack_window_seconds == 20 and len(drill.steps) == 1
    assert EscalationPolicy.from_dict(default.to_dict()) == default


@pytest.mark.parametrize(("steps", "message"), [
    ('[[steps]]\nchannels = ["sms", "fax"]\n', "step 1: 'fax' is not a channel"),
    ('[[steps]]\nchannels = ["sms"]\nafter = "1m"\n', "step 1: the first step goes at once"),
    ('[[steps]]\nchannels = ["sms"]\n[[steps]]\nchannels = ["voice"]\nafter = "20m"\n',
     "step 2: after '20m' is not before the end of the acknowledgement window"),
    ('[[steps]]\nchannels = []\n', "step 1: channels must be a non-empty list"),
])
def test_a_bad_step_is_refused_naming_the_step(tmp_path: Path, steps: str, message: str) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.toml").write_text('ack_window = "15m"\n' + steps)
    with pytest.raises(InvalidInput, match=message):
        load_policy(tmp_path, "bad")


def test_a_shorter_window_drops_the_steps_it_would_never_reach() -> None:
    default = load_policy(CONFIG_DIR, "default")
    assert [s.channels for s in default.with_window(120).steps] == [("sms", "whatsapp",
                                                                     "email")]


def test_fixed_wordings_are_texts_never_calls(rt: Runtime) -> None:
    from dispatcher.dispatch.outbox import message_to
    from dispatcher.domain import DeliveryPurpose
    from dispatcher.roster.contacts import set_contact

    alert_id = send(rt)
    with rt.db.session() as session:
        ana = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        set_contact(session, rt.vault, ana.volunteer, "voice", "+529611230101")
        alert = session.get(Alert, alert_id)
        assert alert is not None
        alert.channels = ["sms", "whatsapp", "voice", "email"]  # as once voice is configured
        session.flush()
        message_to(session, rt.settings, alert, [ana.id], DeliveryPurpose.CANCEL, "cancelled")
        sent = sorted(session.scalars(select(Delivery.channel).where(
            Delivery.alert_id == alert_id, Delivery.purpose == "cancel")))
    assert sent == ["email", "sms", "whatsapp"]
