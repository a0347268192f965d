"""Which alert a reply answers: the one still waiting on the volunteer; several waiting
is ambiguous, shown on each, and an officer attaches it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from dispatcher.acks import LATE_REPLY_WINDOW
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.errors import Refused
from dispatcher.escalation.engine import give_up
from dispatcher.models import Alert, AlertZone, AuditEvent, InboundMessage, Post
from dispatcher.replies.attach import attach_reply
from dispatcher.replies.inbound import receive_sms
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.status import alert_status
from tests.conftest import rt_with_roster

ANA = "+529611230101"  # Chiapas primary


@pytest.fixture
def rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def send(rt: Runtime, zones: list[str]) -> tuple[int, str]:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        sent = send_alert(session, rt.settings, post,
                          AlertRequest(zones=zones, body="Test", ack_window_seconds=600))
        assert sent.alert_id is not None and sent.reply_code is not None
        return sent.alert_id, sent.reply_code


def reply(rt: Runtime, body: str, sid: str, sender: str = ANA) -> str | None:
    result = receive_sms(rt.db, rt.settings, rt.vault,
                         {"MessageSid": sid, "From": sender, "To": "+15005550006",
                          "Body": body})
    return result.answer


def zone_state(rt: Runtime, alert_id: int, zone: str = "Chiapas") -> str:
    with rt.db.session() as session:
        return next(z["state"] for z in alert_status(session, alert_id)["zones"]
                    if z["zone"] == zone)


def unreach(rt: Runtime, alert_id: int) -> None:
    """The zone's chain ran out (as the escalation engine decides it)."""
    with rt.db.session() as session:
        az = session.scalars(select(AlertZone).where(AlertZone.alert_id == alert_id)).one()
        post = session.get(Post, az.alert.post_id)
        assert post is not None
        give_up(session, rt.settings, az.alert, az, post, db_now(session))


def test_a_bare_yes_goes_to_the_alert_still_waiting_not_to_an_unreached_one(
        rt: Runtime) -> None:
    first, _ = send(rt, ["Chiapas"])
    unreach(rt, first)  # the first alert is completed, still in its late-reply window
    second, _ = send(rt, ["Chiapas"])
    answer = reply(rt, "YES", "SM1")
    assert answer and "Ana" in answer
    assert zone_state(rt, second) == "acknowledged"
    assert zone_state(rt, first) == "unreached"


def test_a_late_yes_counts_for_a_finished_alert_when_nothing_is_waiting(rt: Runtime) -> None:
    first, _ = send(rt, ["Chiapas"])
    unreach(rt, first)
    reply(rt, "Sí", "SM1")
    with rt.db.session() as session:
        ana = next(r for r in alert_status(session, first)["recipients"]
                   if r["name"] == "Ana Morales")
    assert ana["state"] == "acknowledged"


def test_two_waiting_alerts_make_a_bare_yes_ambiguous_and_an_officer_attaches_it(
        rt: Runtime) -> None:
    first, code1 = send(rt, ["Chiapas"])
    second, code2 = send(rt, ["Chiapas"])
    answer = reply(rt, "YES", "SM1")
    assert answer and code1 in answer and code2 in answer
    assert zone_state(rt, first) == zone_state(rt, second) == "waiting"
    with rt.db.session() as session:
        shown = [alert_status(session, a)["unattached_replies"] for a in (first, second)]
    assert all(len(s) == 1 and s[0]["name"] == "Ana Morales" and s[0]["text"] == "YES"
               for s in shown)
    with rt.db.session() as session:
        attach_reply(session, rt.settings, shown[1][0]["id"], actor="officer:Jane")
    assert zone_state(rt, second) == "acknowledged"
    assert zone_state(rt, first) == "waiting"
    with rt.db.session() as session:
        assert alert_status(session, first)["unattached_replies"] == []
        assert alert_status(session, second)["unattached_replies"] == []
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "reply.attached", AuditEvent.actor == "officer:Jane")) == 1
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1
    with rt.db.session() as session, pytest.raises(Refused, match="already attached"):
        attach_reply(session, rt.settings, shown[1][0]["id"], actor="officer:Jane")


def test_a_reply_with_a_code_goes_to_that_alert_even_with_two_waiting(rt: Runtime) -> None:
    first, code1 = send(rt, ["Chiapas"])
    second, _ = send(rt, ["Chiapas"])
    reply(rt, f"OK {code1}", "SM1")
    assert zone_state(rt, first) == "acknowledged"
    assert zone_state(rt, second) == "waiting"
    # With the first answered, a bare YES now has one alert waiting: the second.
    reply(rt, "YES", "SM2")
    assert zone_state(rt, second) == "acknowledged"


def close_hours_ago(rt: Runtime, alert_id: int, hours: float) -> None:
    """Move the completed alert's closing time back, by the database's clock."""
    with rt.db.session() as session:
        session.execute(update(Alert).where(Alert.id == alert_id).values(
            closed_at=db_now(session) - timedelta(hours=hours)))


def ana_state(rt: Runtime, alert_id: int) -> str:
    with rt.db.session() as session:
        return next(r["state"] for r in alert_status(session, alert_id)["recipients"]
                    if r["name"] == "Ana Morales")


def test_a_reply_to_an_alert_closed_25_hours_ago_is_not_taken(rt: Runtime) -> None:
    assert LATE_REPLY_WINDOW == timedelta(hours=24)
    first, _ = send(rt, ["Chiapas"])
    unreach(rt, first)
    before = ana_state(rt, first)
    close_hours_ago(rt, first, 25)
    reply(rt, "YES", "SM1")
    assert ana_state(rt, first) == before != "acknowledged"


def test_a_reply_to_an_alert_closed_23_hours_ago_is_taken(rt: Runtime) -> None:
    first, _ = send(rt, ["Chiapas"])
    unreach(rt, first)
    close_hours_ago(rt, first, 23)
    reply(rt, "YES", "SM1")
    assert ana_state(rt, first) == "acknowledged"
