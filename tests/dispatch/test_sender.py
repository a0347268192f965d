"""The sender's recorder: a batch of receipts written set-based."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from channels.base import Receipt
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.sender import Claimed, Outcome, Sender
from dispatcher.models import Delivery, Recipient
from dispatcher.receipts import apply_twilio_status
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster


@pytest.fixture
def rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def _claimed(rt: Runtime) -> tuple[Sender, list[Claimed]]:
    """An SMS alert to every zone's primary, its deliveries claimed by a sender."""
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        alert_id = send_alert(session, rt.settings, post, AlertRequest(
            zones=["all"], body="Receipts", channels=["sms"], ack_window_seconds=3600,
            force=True)).alert_id
    assert alert_id is not None
    sender = Sender(rt.db, rt.settings, rt.vault, {}, "test")
    claimed = [d for d, _ in sender._claim(alert_id)]
    assert len(claimed) >= 4
    return sender, claimed


def _accepted(d: Claimed, sid: str, segments: int = 1) -> Outcome:
    return Outcome(d.id, d.recipient_id, d.alert_id,
                   receipt=Receipt(provider_id=sid, status="queued", segments=segments))


def test_a_batch_of_receipts_keeps_what_status_callbacks_said_first(rt: Runtime) -> None:
    """Written in one statement for the whole batch: a message whose callback landed
    first keeps its state (delivered, undelivered) and error code but gets its receipt;
    the others become accepted (an earlier attempt's error cleared) and their recipients
    notified; a delivery twice in a batch keeps its last."""
    sender, claimed = _claimed(rt)
    delivered, dead, *rest = claimed
    with rt.db.session() as s:
        apply_twilio_status(s, {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"},
                            str(delivered.id))
        apply_twilio_status(s, {"MessageSid": "SM" + "2" * 32, "MessageStatus": "undelivered",
                                "ErrorCode": "30003"}, str(dead.id))
        # An earlier attempt's error (a 429 the retry got past) is cleared by the receipt.
        s.get_one(Delivery, rest[0].id).error_code = "20429"
    batch = [_accepted(delivered, "SM-early"), _accepted(dead, "SM-dead"),
             *(_accepted(d, f"SM-{d.id}", segments=2) for d in rest),
             _accepted(delivered, "SM-last", segments=3)]
    sender._record(batch)
    with rt.db.session() as s:
        rows = {d.id: d for d in s.scalars(select(Delivery).where(
            Delivery.id.in_([c.id for c in claimed])))}
        assert rows[delivered.id].state == "delivered"
        assert (rows[delivered.id].provider_id, rows[delivered.id].segments) == ("SM-last", 3)
        assert rows[dead.id].state == "undelivered" and rows[dead.id].provider_id == "SM-dead"
        assert rows[dead.id].error_code == "30003", "the callback's code is kept"
        for d in claimed:
            row = rows[d.id]
            assert row.claimed_by is None and row.lease_until is None
            assert row.sent_at is not None
        for d in rest:
            row = rows[d.id]
            assert (row.state, row.provider_id, row.segments) == ("accepted", f"SM-{d.id}", 2)
            assert row.error_code is None
            recipient = s.get_one(Recipient, d.recipient_id)
            assert recipient.state == "notified" and recipient.notified_at is not None


def test_a_provider_id_json_cannot_carry_is_written_whole_and_alike(
        sqlite_url: str) -> None:
    """SQLite reads a JSON string only up to a NUL: such a batch goes row by row, and its
    rows read back as the set-based write leaves them."""
    rt = rt_with_roster(sqlite_url)
    try:
        sender, claimed = _claimed(rt)
        plain, odd = claimed[:2], claimed[2:4]
        sender._record([_accepted(d, f"SM-{d.id}") for d in plain])
        sender._record([_accepted(odd[0], "SM\x00odd"), _accepted(odd[1], f"SM-{odd[1].id}")])
        with rt.db.session() as s:
            rows = {d.id: d for d in s.scalars(select(Delivery).where(
                Delivery.id.in_([c.id for c in claimed[:4]])))}
        assert rows[odd[0].id].provider_id == "SM\x00odd"

        def written(row: Delivery) -> tuple[object, ...]:
            return (row.state, row.segments, row.claimed_by, row.lease_until, row.error_code,
                    row.sent_at is not None, row.updated_at is not None)

        for d in claimed[:4]:
            assert written(rows[d.id]) == ("accepted", 1, None, None, None, True, True), d.id
    finally:
        rt.close()
