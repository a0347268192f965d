"""WhatsApp replies (`From=whatsapp:+...`) follow the SMS reply rules; STOP moves only WhatsApp."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from dispatcher.db import db_now
from dispatcher.dispatch.whatsapp import open_sessions
from dispatcher.models import Contact, Recipient, Response, Volunteer
from dispatcher.replies.inbound import receive_sms
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster
from tests.replies.test_reply_rules import ANA, send, zone_state

ANA_WA = "whatsapp:" + ANA


@pytest.fixture
def rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def whatsapp(rt: Runtime, body: str, sid: str) -> str | None:
    return receive_sms(rt.db, rt.settings, rt.vault,
                       {"MessageSid": sid, "From": ANA_WA, "To": "whatsapp:+15005550006",
                        "Body": body, "WaId": ANA.lstrip("+"), "ProfileName": "Ana"}).answer


def paths(rt: Runtime) -> dict[str, bool]:
    with rt.db.session() as session:
        return dict(session.execute(
            select(Contact.channel, Contact.opted_out).join(Volunteer)
            .where(Volunteer.name == "Ana Morales")).all())


def test_a_whatsapp_si_acknowledges_the_alert(rt: Runtime) -> None:
    alert_id, code = send(rt, ["Chiapas"])
    answer = whatsapp(rt, "Sí", "SMwa1")
    assert zone_state(rt, alert_id) == "acknowledged"
    assert answer is not None and code in answer
    with rt.db.session() as session:
        via = session.scalar(select(Recipient.acknowledged_via).where(
            Recipient.alert_id == alert_id, Recipient.tier == 0))
        channel = session.scalar(select(Response.channel).where(Response.alert_id == alert_id))
    assert via == "whatsapp" and channel == "whatsapp"


def test_stop_on_whatsapp_opts_out_whatsapp_only_and_sms_stays_live(rt: Runtime) -> None:
    assert paths(rt) == {"sms": False, "whatsapp": False, "email": False}
    answer = whatsapp(rt, "STOP", "SMwa2")
    assert paths(rt) == {"sms": False, "whatsapp": True, "email": False}
    assert answer is not None and "WhatsApp" in answer
    whatsapp(rt, "START", "SMwa3")
    assert paths(rt) == {"sms": False, "whatsapp": False, "email": False}


def test_stop_by_sms_leaves_whatsapp_live(rt: Runtime) -> None:
    receive_sms(rt.db, rt.settings, rt.vault,
                {"MessageSid": "SMsms1", "From": ANA, "To": "+15005550006", "Body": "STOP"})
    assert paths(rt) == {"sms": True, "whatsapp": False, "email": False}


def test_a_whatsapp_message_opens_a_24_hour_session_an_sms_does_not(rt: Runtime) -> None:
    with rt.db.session() as session:
        ana = session.scalars(select(Volunteer.id).where(Volunteer.name == "Ana Morales")).one()
    receive_sms(rt.db, rt.settings, rt.vault,
                {"MessageSid": "SMsms2", "From": ANA, "To": "+15005550006", "Body": "hola"})
    with rt.db.session() as session:
        assert open_sessions(session, [ana], db_now(session)) == set()
    whatsapp(rt, "hola", "SMwa4")
    with rt.db.session() as session:
        now = db_now(session)
        assert open_sessions(session, [ana], now) == {ana}
        assert open_sessions(session, [ana], now + timedelta(hours=24, seconds=1)) == set()
