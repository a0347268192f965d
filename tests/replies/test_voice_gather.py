"""Key presses of alert calls (dispatcher/replies/voice.py): stored first, acted on once,
kept on disk while the database is down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import Delivery, InboundMessage, Recipient, Response, Volunteer
from dispatcher.replies.intake import Intake
from dispatcher.replies.spool import Spool
from dispatcher.replies.voice import KEPT, GatherResult, gather_batch
from dispatcher.roster.contacts import set_contact
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster
from tests.replies.test_batch import _refuse_all_writes

DANIEL = "+525551000201"  # Mexico City primary


@pytest.fixture
def rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def call_alert(rt: Runtime) -> tuple[int, int]:
    """An alert calling Daniel: (alert id, the call's delivery id)."""
    with rt.db.session() as s:
        daniel = s.scalars(select(Volunteer).where(Volunteer.name == "Daniel Ortega")).one()
        set_contact(s, rt.vault, daniel, "voice", DANIEL)
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        sent = send_alert(s, rt.settings, post, AlertRequest(
            zones=["Mexico City"], body="Test", channels=["voice"], ack_window_seconds=600))
    assert sent.alert_id is not None
    with rt.db.session() as s:
        call = s.scalars(select(Delivery).where(Delivery.alert_id == sent.alert_id)).one()
        assert call.channel == "voice" and call.language == "en"
        return sent.alert_id, call.id


def daniel_state(s: Session, alert_id: int) -> str:
    return str(s.scalars(select(Recipient.state).join(Volunteer).where(
        Recipient.alert_id == alert_id, Volunteer.name == "Daniel Ortega")).one())


def press(digit: str, sid: str = "CA" + "e" * 32) -> dict[str, str]:
    return {"CallSid": sid, "Digits": digit, "From": "+15005550006", "To": DANIEL}


def test_a_key_for_a_call_we_did_not_place_acknowledges_nothing(rt: Runtime) -> None:
    alert_id, call_id = call_alert(rt)
    with rt.db.session() as s:
        s.get(Delivery, call_id).provider_id = "CA" + "f" * 32  # type: ignore[union-attr]
    [result] = gather_batch(rt, [(press("1"), str(call_id))])
    [stranger] = gather_batch(rt, [(press("1", "CA" + "9" * 32), "999999")])
    assert result == GatherResult(answer=None) and stranger == GatherResult(answer=None)
    with rt.db.session() as s:
        assert daniel_state(s, alert_id) != "acknowledged"
        assert s.scalars(select(Response)).all() == []
        assert len(s.scalars(select(InboundMessage)).all()) == 2  # kept, for the record


def test_another_key_is_kept_and_answered_with_the_reply_code(rt: Runtime) -> None:
    alert_id, call_id = call_alert(rt)
    [result] = gather_batch(rt, [(press("5"), str(call_id))])
    assert result.kind == "unparsed" and result.answer
    with rt.db.session() as s:
        code = s.scalars(select(Response.alert_id)).one()
    assert code == alert_id


def test_key_presses_wait_on_disk_while_the_database_is_down(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alert_id, call_id = call_alert(rt)
    spool = Spool(tmp_path / "spool", rt.vault)

    async def outage() -> GatherResult:
        intake = Intake(rt, spool=spool)
        try:
            _refuse_all_writes(rt, True)
            during = await intake.submit(gather_batch, (press("1"), str(call_id)))
            assert during == KEPT and len(spool.files()) == 1
            assert b"5551000" not in spool.files()[0].read_bytes()
            _refuse_all_writes(rt, False)
            # The next batch that commits replays the kept key press first.
            return await intake.submit(gather_batch, (press("1"), str(call_id)))
        finally:
            intake.stop()

    after = asyncio.run(outage())
    assert after.kind == "ack" and after.answer
    assert spool.files() == []  # replayed once the database took a batch again
    with rt.db.session() as s:
        assert daniel_state(s, alert_id) == "acknowledged"
        # The same call's same key, kept and then pressed again: acted on once.
        assert [r.kind for r in s.scalars(select(Response))] == ["ack"]
        assert len(s.scalars(select(InboundMessage)).all()) == 1
