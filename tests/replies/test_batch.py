"""Inbound SMS in batches: the same outcome as one at a time, and one bad message costs
nothing but itself."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import (
    Alert,
    AlertZone,
    AuditEvent,
    Contact,
    Delivery,
    InboundMessage,
    Recipient,
    Response,
    Volunteer,
)
from dispatcher.receipts import status_batch
from dispatcher.replies.inbound import InboundResult, receive_batch, receive_sms, sms_batch
from dispatcher.replies.intake import Intake
from dispatcher.replies.spool import Spool
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster

DANIEL, EMILY, FERNANDO = "+525551000201", "+525551000202", "+525551000203"  # Mexico City
STRANGER = "+525599999999"


@pytest.fixture
def rt(database_url: str) -> Runtime:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def send(rt: Runtime, zones: list[str]) -> tuple[int, str]:
    req = AlertRequest(zones=zones, body="Test", ack_window_seconds=600)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        sent = send_alert(session, rt.settings, post, req)
        return sent.alert_id, sent.reply_code


def script(run: str, code: str) -> list[dict[str, str]]:
    """Replies that depend on each other: the second and third see what the first did."""
    said = [
        ("a", DANIEL, f"YES {code}"),     # acknowledges, covers the zone
        ("b", DANIEL, f"ok {code}"),      # already acknowledged
        ("c", EMILY, f"sí {code}"),       # the zone is covered by now
        ("a", DANIEL, f"YES {code}"),     # Twilio retrying the first: a repeat
        ("d", FERNANDO, "HELP"),          # an alternate not yet asked, in distress
        ("e", STRANGER, "road blocked at Reforma"),
        ("f", EMILY, "STOP"),
        ("g", EMILY, "START"),          # Twilio's opt-in: back in
        ("h", FERNANDO, "OPTOUT"),      # Twilio's opt-out keywords beyond STOP
        ("i", FERNANDO, "INFO"),        # Twilio's help keyword: answered, not urgent
        ("j", FERNANDO, "YES"),         # opts back in; nothing of his to acknowledge
    ]
    return [{"MessageSid": f"SM{run}{sid}", "From": phone, "To": "+15005550006", "Body": body}
            for sid, phone, body in said]


def outcome(rt: Runtime, alert_id: int, code: str,
            results: list[InboundResult]) -> dict[str, object]:
    with rt.db.session() as s:
        states = dict(s.execute(select(Volunteer.name, Recipient.state).join(Volunteer)
                                .where(Recipient.alert_id == alert_id)).all())
        zone = s.scalars(select(AlertZone.state).where(AlertZone.alert_id == alert_id)).one()
        audit = list(s.scalars(select(AuditEvent.action).where(AuditEvent.alert_id == alert_id)
                               .order_by(AuditEvent.id)))
        alert_state = s.get(Alert, alert_id).state
    return {
        "answers": [(r.duplicate, (r.answer or "").replace(code, "CODE"), r.kind,
                     r.acknowledged_alert == alert_id) for r in results],
        "states": states, "zone": zone, "alert": alert_state, "audit": audit,
    }


def opt_state(rt: Runtime, after_audit_id: int) -> tuple[dict[str, bool], list[str]]:
    """Who is opted out now, and the opt-out/in events recorded since `after_audit_id`."""
    with rt.db.session() as s:
        opted = {c.masked: c.opted_out for c in s.scalars(
            select(Contact).where(Contact.channel == "sms"))}
        events = list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.id > after_audit_id, AuditEvent.action.like("contact.%"))
            .order_by(AuditEvent.id)))
    return opted, events


def last_audit_id(rt: Runtime) -> int:
    with rt.db.session() as s:
        return s.scalar(select(func.max(AuditEvent.id))) or 0


def test_a_batch_does_what_one_at_a_time_does(rt: Runtime) -> None:
    first, first_code = send(rt, ["Mexico City"])
    mark = last_audit_id(rt)
    one_by_one = [receive_sms(rt.db, rt.settings, rt.vault, m) for m in script("x", first_code)]
    opts_one_by_one = opt_state(rt, mark)
    second, second_code = send(rt, ["Mexico City"])
    mark = last_audit_id(rt)
    batch = receive_batch(rt.db, rt.settings, rt.vault, script("y", second_code))

    expected = outcome(rt, first, first_code, one_by_one)
    assert outcome(rt, second, second_code, batch) == expected
    assert opt_state(rt, mark) == opts_one_by_one
    # And what that is, spelled out.
    assert [a[0] for a in expected["answers"]] == [False, False, False, True, False, False,
                                                    False, False, False, False, False]
    assert [a[3] for a in expected["answers"]] == [True, True, True, False, False, False,
                                                    False, False, False, False, False]
    assert [a[2] for a in expected["answers"]][4:] == [
        "help", "field_report", "opt_out", "opt_in", "opt_out", "info", "unparsed"]
    assert not any(opts_one_by_one[0].values())
    assert opts_one_by_one[1] == ["contact.opted_out", "contact.opted_in",
                                  "contact.opted_out", "contact.opted_in"]
    assert expected["states"] == {"Daniel Ortega": "acknowledged",
                                  "Emily Carter": "acknowledged"}
    assert (expected["zone"], expected["alert"]) == ("acknowledged", "completed")
    assert expected["audit"] == ["alert.sent", "recipient.acknowledged", "zone.acknowledged",
                                 "alert.completed", "recipient.acknowledged"]
    assert batch[0].queued_work and not batch[2].queued_work
    with rt.db.session() as s:
        kinds = Counter(s.scalars(select(Response.kind).join(InboundMessage).where(
            InboundMessage.dedupe_key.like("SMy%"))))
        stored = s.scalar(select(InboundMessage.id).where(InboundMessage.dedupe_key == "SMya"))
    assert kinds == {"ack": 3, "help": 1, "field_report": 1, "opt_out": 2, "opt_in": 1,
                     "info": 1, "unparsed": 1}
    assert stored is not None


def _inject_fault(rt: Runtime, event: str = "INSERT ON responses",
                  when: str = "NEW.text = 'boom'") -> None:
    """A real database error on some rows: by default the responses table refuses the
    text 'boom'."""
    with rt.db.session() as s:
        if rt.db.is_sqlite:
            s.execute(text(f"CREATE TRIGGER boom BEFORE {event} "
                           f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected'); END"))
        else:
            s.execute(text("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                           f"IF {when} THEN RAISE EXCEPTION 'injected'; END IF; "
                           "RETURN NEW; END $$ LANGUAGE plpgsql"))
            s.execute(text(f"CREATE TRIGGER boom BEFORE {event} "
                           "FOR EACH ROW EXECUTE FUNCTION boom()"))


def test_one_failing_message_costs_only_itself(rt: Runtime) -> None:
    alert_id, code = send(rt, ["Mexico City"])
    _inject_fault(rt)
    results = receive_batch(rt.db, rt.settings, rt.vault, [
        {"MessageSid": "SM1", "From": DANIEL, "Body": f"YES {code}"},
        {"MessageSid": "SM2", "From": FERNANDO, "Body": "boom"},
        {"MessageSid": "SM3", "From": EMILY, "Body": f"YES {code}"},
    ])
    assert [r.acknowledged_alert for r in results] == [alert_id, None, alert_id]
    assert results[1].answer is None
    with rt.db.session() as s:
        failed = s.scalars(select(InboundMessage).where(InboundMessage.dedupe_key == "SM2")).one()
        states = set(s.scalars(select(Recipient.state).where(Recipient.alert_id == alert_id)))
        done = s.scalars(select(InboundMessage.processed_at).where(
            InboundMessage.dedupe_key.in_(["SM1", "SM3"]))).all()
    # What Fernando said is kept, marked as not acted on, with the reason.
    assert failed.processed_at is None and "injected" in (failed.error or "")
    assert rt.vault.decrypt(failed.raw_enc).count("boom") == 1
    assert states == {"acknowledged"} and len(done) == 2 and all(done)


def test_intake_answers_every_concurrent_webhook(rt: Runtime) -> None:
    alert_id, code = send(rt, ["Mexico City", "Chiapas", "Oaxaca", "Puebla"])
    with rt.db.session() as s:
        asked = s.scalar(select(Recipient.id).where(Recipient.alert_id == alert_id).limit(1))
    assert asked is not None
    messages = [{"MessageSid": f"SM{i}", "From": phone, "Body": f"YES {code}"}
                for i, phone in enumerate([DANIEL, EMILY, "+529611230101", "+529515101001",
                                           "+522222300801"] * 8)]  # each says it 8 times

    with rt.db.session() as s:
        delivery_ids = list(s.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id,
                                                                Delivery.channel == "sms")))
    receipts = [({"MessageSid": f"SMd{d}", "MessageStatus": "delivered", "To": DANIEL},
                 str(d)) for d in delivery_ids]

    async def burst() -> tuple[list[InboundResult], list[bool]]:
        intake = Intake(rt)
        try:
            # Replies and receipts interleaved: each kind goes to its own batch handler.
            replies = [intake.submit(sms_batch, m) for m in messages]
            statuses = [intake.submit(status_batch, r) for r in receipts]
            both = await asyncio.gather(*replies, *statuses)
            return list(both[:len(replies)]), list(both[len(replies):])
        finally:
            intake.stop()

    results, moved = asyncio.run(burst())
    assert all(moved) and len(moved) == len(delivery_ids) > 0
    assert all(r.acknowledged_alert == alert_id for r in results)
    assert sum(r.queued_work for r in results) == 4  # one per zone covered
    with rt.db.session() as s:
        states = Counter(s.scalars(select(Recipient.state).where(Recipient.alert_id == alert_id)))
        stored = len(s.scalars(select(InboundMessage.id)).all())
        delivered = set(s.scalars(select(Delivery.state).where(Delivery.id.in_(delivery_ids))))
    assert states["acknowledged"] == 5 and stored == len(messages) + len(receipts)
    assert delivered == {"delivered"}


def test_a_status_callback_that_cannot_be_applied_is_kept_with_its_error(rt: Runtime) -> None:
    alert_id, _ = send(rt, ["Mexico City"])
    with rt.db.session() as s:
        first, second = s.scalars(select(Delivery.id).where(
            Delivery.alert_id == alert_id, Delivery.channel == "sms").order_by(Delivery.id))
    _inject_fault(rt, "UPDATE ON deliveries", f"NEW.id = {first}")
    receipts = [({"MessageSid": f"SMs{d}", "MessageStatus": "delivered", "To": DANIEL}, str(d))
                for d in (first, second)]
    assert status_batch(rt, receipts) == [False, True]
    with rt.db.session() as s:
        kept = s.scalars(select(InboundMessage).where(
            InboundMessage.dedupe_key == f"SMs{first}:delivered")).one()
        states = dict(s.execute(select(Delivery.id, Delivery.state).where(
            Delivery.id.in_([first, second]))).all())
    assert kept.processed_at is None and "injected" in (kept.error or "")
    assert states[second] == "delivered" and states[first] != "delivered"


def _refuse_all_writes(rt: Runtime, on: bool) -> None:
    """The database refusing every inbound write: as good as gone, for the intake."""
    with rt.db.session() as s:
        if not on:
            s.execute(text("DROP TRIGGER down ON inbound_messages" if not rt.db.is_sqlite
                           else "DROP TRIGGER down"))
        elif rt.db.is_sqlite:
            s.execute(text("CREATE TRIGGER down BEFORE INSERT ON inbound_messages "
                           "BEGIN SELECT RAISE(ABORT, 'database down'); END"))
        else:
            s.execute(text("CREATE OR REPLACE FUNCTION down() RETURNS trigger AS $$ BEGIN "
                           "RAISE EXCEPTION 'database down'; END $$ LANGUAGE plpgsql"))
            s.execute(text("CREATE TRIGGER down BEFORE INSERT ON inbound_messages "
                           "FOR EACH ROW EXECUTE FUNCTION down()"))


def test_replies_wait_on_disk_while_the_database_is_down(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alert_id, code = send(rt, ["Mexico City"])
    spool = Spool(tmp_path / "spool", rt.vault)

    async def reply(intake: Intake, sid: str, phone: str) -> InboundResult:
        return await intake.submit(sms_batch, {"MessageSid": sid, "From": phone,
                                               "Body": f"YES {code}"})

    async def outage() -> list[InboundResult]:
        intake = Intake(rt, spool=spool)
        try:
            _refuse_all_writes(rt, True)
            during = [await reply(intake, "SMdown1", DANIEL), await reply(intake, "SMdown2", EMILY)]
            kept = spool.files()
            assert len(kept) == 2
            # Encrypted like the database: no phone number on disk in clear.
            assert all(b"5551000" not in p.read_bytes() for p in kept)
            _refuse_all_writes(rt, False)
            # The first batch that commits again replays what waited, oldest first.
            during.append(await intake.submit(sms_batch, {"MessageSid": "SMup", "From": FERNANDO,
                                                          "Body": "HELP"}))
            return during
        finally:
            intake.stop()

    results = asyncio.run(outage())
    assert [r.answer for r in results[:2]] == [None, None]  # answered, with no text yet
    assert results[2].kind == "help" and results[2].answer
    assert spool.files() == []
    with rt.db.session() as s:
        states = dict(s.execute(select(Volunteer.name, Recipient.state).join(Volunteer)
                                .where(Recipient.alert_id == alert_id)).all())
        stored = list(s.scalars(select(InboundMessage.dedupe_key).order_by(InboundMessage.id)))
    assert states == {"Daniel Ortega": "acknowledged", "Emily Carter": "acknowledged"}
    assert stored == ["SMup", "SMdown1", "SMdown2"]


def test_a_kept_request_that_cannot_be_read_is_set_aside(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spool = Spool(tmp_path / "spool", rt.vault)
    spool.directory.mkdir()
    (spool.directory / "00000000000000000001-abcdef12.req").write_bytes(b"not ours")
    assert spool.replay(rt) == 0
    assert spool.files() == []
    assert [p.suffix for p in spool.directory.iterdir()] == [".unreadable"]


def test_a_batch_of_status_callbacks_reads_its_deliveries_once(rt: Runtime) -> None:
    """A batch of receipts reads its deliveries and their recipients in two statements
    and the database's clock once, and writes its changes together: beside storing each
    callback, the statements do not grow with the batch (a query per callback, and on
    PostgreSQL a flush per callback for the clock, made a batch 4-6 times as costly in
    CPU time)."""
    from sqlalchemy import event

    alert_id, _ = send(rt, ["Mexico City", "Chiapas", "Oaxaca", "Puebla"])
    with rt.db.session() as s:
        delivery_ids = list(s.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id,
                                                                Delivery.channel == "sms")))
    assert len(delivery_ids) >= 4

    def statements(status: str, ids: list[int]) -> list[str]:
        seen: list[str] = []

        def note(conn: object, cursor: object, sql: str, *args: object) -> None:
            seen.append(sql.split(None, 1)[0].upper())

        event.listen(rt.db.engine, "before_cursor_execute", note)
        try:
            moved = status_batch(rt, [({"MessageSid": f"SM{status}{d}", "MessageStatus": status,
                                        "To": DANIEL}, str(d)) for d in ids])
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", note)
        assert all(moved), moved
        return [kind for kind in seen if kind not in ("BEGIN", "COMMIT", "SAVEPOINT")]

    kinds = statements("delivered", delivery_ids)
    # Each callback is stored (an INSERT each); the rest is per batch: the deliveries and
    # their recipients read, the clock (PostgreSQL), the changes written (one statement
    # per table and set of columns).
    assert kinds.count("INSERT") == len(delivery_ids)
    assert len(kinds) - len(delivery_ids) <= 6, kinds
    with rt.db.session() as s:
        states = set(s.scalars(select(Delivery.state).where(Delivery.id.in_(delivery_ids))))
        notified = set(s.scalars(select(Recipient.state).join(
            Delivery, Delivery.recipient_id == Recipient.id).where(
            Delivery.id.in_(delivery_ids))))
    assert states == {"delivered"} and notified == {"notified"}


def test_a_callback_whose_reference_is_no_delivery_id_is_stored_not_failed(rt: Runtime) -> None:
    """`?ref=` that is not one of our ids (digits of another script, too many digits) is
    no reference: the callback is stored and matched by its MessageSid, never an error
    kept for an officer (`int('²')` raised, and 40 digits overflowed the database)."""
    alert_id, _ = send(rt, ["Mexico City"])
    with rt.db.session() as s:
        d = s.scalars(select(Delivery).where(Delivery.alert_id == alert_id,
                                             Delivery.channel == "sms").limit(1)).one()
        d.provider_id = "SM" + "7" * 32
    receipts = [({"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "To": DANIEL},
                 ref) for ref in ("²", "9" * 40)]
    assert status_batch(rt, receipts) == [True, False]  # the second: a repeat of the first
    with rt.db.session() as s:
        errors = list(s.scalars(select(InboundMessage.error).where(
            InboundMessage.source == "twilio_status")))
        state = s.scalar(select(Delivery.state).where(Delivery.provider_id == "SM" + "7" * 32))
    assert errors == [None] and state == "delivered"


def test_an_acknowledgement_committed_during_a_receipts_batch_is_kept(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process acknowledges a volunteer while a batch of status callbacks about
    their message is being applied: the batch must not write the recipient back as it read
    it (PostgreSQL reads committed rows: read once for the batch, the row was written back
    `notified`, and the acknowledgement lost). The batch locks its rows; the other writer
    waits for it, then acknowledges."""
    import threading
    from datetime import UTC, datetime

    from dispatcher import lifecycle, receipts

    alert_id, _ = send(rt, ["Mexico City"])
    with rt.db.session() as s:
        first, second = s.execute(select(Delivery.id, Delivery.recipient_id).where(
            Delivery.alert_id == alert_id, Delivery.channel == "sms")
            .order_by(Delivery.id).limit(2)).all()
        s.execute(text("UPDATE deliveries SET state = 'accepted' WHERE alert_id = :a"),
                  {"a": alert_id})
    acked: list[BaseException | None] = []

    def acknowledge() -> None:
        try:
            with rt.db.session() as other:
                other.connection().execute(lifecycle.ACKNOWLEDGE_RECIPIENT, {
                    "r_id": second.recipient_id, "r_at": datetime.now(UTC), "r_via": "sms"})
            acked.append(None)
        except BaseException as exc:  # reported below
            acked.append(exc)

    writer = threading.Thread(target=acknowledge)
    stored = receipts.store_inbound

    def store_then_race(*args: object, **kwargs: object) -> int | None:
        if not writer.is_alive() and not acked:
            writer.start()
            # Done at once where nothing is locked; otherwise it waits for the batch.
            writer.join(timeout=1.0)
        return stored(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(receipts, "store_inbound", store_then_race)
    moved = status_batch(rt, [
        ({"MessageSid": "SMr1", "MessageStatus": "sent", "To": DANIEL}, str(first.id)),
        ({"MessageSid": "SMr2", "MessageStatus": "delivered", "To": DANIEL}, str(second.id))])
    writer.join(timeout=30)
    assert not writer.is_alive() and acked == [None], acked
    assert moved == [True, True]
    with rt.db.session() as s:
        state = s.scalar(select(Recipient.state).where(Recipient.id == second.recipient_id))
        delivered = s.scalar(select(Delivery.state).where(Delivery.id == second.id))
    assert state == "acknowledged" and delivered == "delivered"
