"""Updates and cancels are versions of one alert; drafts are sent like any alert; reply
codes are allocated from those no alert still taking replies holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import func, select, update

from dispatcher.acks import LATE_REPLY_WINDOW
from dispatcher.cap import create_draft_alert, export_cap, import_cap
from dispatcher.compose import composer
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest, allocate_reply_code
from dispatcher.dispatch.versions import cancel_alert, update_alert
from dispatcher.errors import NotFound, Refused
from dispatcher.models import Alert, Delivery
from dispatcher.reports.figures import build_report
from dispatcher.reports.html import render_html
from dispatcher.roster.posts import ensure_post
from tests.engine import Engine, email_requests
from tests.helpers import wait_until
from tests.integration.test_alert_path import ANA, BRIAN, signed_sms

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def test_a_reply_with_the_code_after_an_update_acknowledges_the_alert(engine: Engine) -> None:
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=600)
    code = engine.code(alert_id)
    with engine.rt.db.session() as s:
        version = update_alert(s, engine.rt.settings, alert_id, "Roads closed", actor="test")
        assert version.number == 2
    wait_until(lambda: any("Roads closed" in b for b in engine.sms_to(ANA)), what="update SMS")
    assert code in next(b for b in engine.sms_to(ANA) if "Roads closed" in b)
    reply = signed_sms(engine, ANA, f"YES {code}", "SM" + "a" * 32)
    assert reply.status_code == 200 and "Ana" in reply.text
    engine.wait_zone(alert_id, "Chiapas", "acknowledged")
    status = engine.status(alert_id)
    assert [v["msg_type"] for v in status["versions"]] == ["alert", "update"]
    assert status["versions"][1]["body"] == "Roads closed"
    assert status["reply_code"] == code
    # The update respected --channel sms: nothing went by email.
    assert email_requests(engine.sim) == []
    with engine.rt.db.session() as s:
        assert s.scalar(select(Alert.id).where(Alert.id != alert_id)) is None  # one alert


def test_a_tier_asked_after_an_update_gets_the_alert_then_the_update(engine: Engine) -> None:
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=1)
    with engine.rt.db.session() as s:
        update_alert(s, engine.rt.settings, alert_id, "Roads closed", actor="test")
    wait_until(lambda: len(engine.sms_to(BRIAN)) >= 2, timeout=15, what="alternate1's messages")
    first, second = engine.sms_to(BRIAN)[:2]
    assert engine.code(alert_id) in first and "Roads closed" not in first
    assert "Roads closed" in second


def test_update_and_cancel_refuse_what_they_cannot_do(engine: Engine) -> None:
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=600)
    with engine.rt.db.session() as s:
        with pytest.raises(Refused, match="no text"):
            update_alert(s, engine.rt.settings, alert_id, "   ", actor="test")
        with pytest.raises(NotFound):
            update_alert(s, engine.rt.settings, 9999, "x", actor="test")
        cancel_alert(s, engine.rt.settings, alert_id, actor="test")
    with engine.rt.db.session() as s:
        with pytest.raises(Refused, match="cancelled"):
            update_alert(s, engine.rt.settings, alert_id, "x", actor="test")
        with pytest.raises(Refused, match="already cancelled"):
            cancel_alert(s, engine.rt.settings, alert_id, actor="test")


def test_cap_export_of_a_cancelled_alert_is_a_cancel_referencing_every_version(
        engine: Engine) -> None:
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=600)
    with engine.rt.db.session() as s:
        update_alert(s, engine.rt.settings, alert_id, "Roads closed", actor="test")
    with engine.rt.db.session() as s:
        cancel_alert(s, engine.rt.settings, alert_id, actor="test")
    with engine.rt.db.session() as s:
        root = etree.fromstring(export_cap(s, alert_id))
    assert root.findtext(f"{CAP}msgType") == "Cancel"
    assert root.findtext(f"{CAP}identifier").endswith(f"-{alert_id}-v3")
    refs = root.findtext(f"{CAP}references").split()
    assert [r.split(",")[1].rsplit("-", 1)[-1] for r in refs] == [str(alert_id), "v2"]
    status = engine.status(alert_id)
    assert [v["msg_type"] for v in status["versions"]] == ["alert", "update", "cancel"]
    with engine.rt.db.session() as s:
        report = build_report(s, alert_id)
        page = render_html(s, alert_id)
    assert [v["body"] for v in report["versions"]][1:] == ["Roads closed", "cancelled"]
    assert "Roads closed" in page and 'id="versions"' in page


def test_a_cap_draft_holds_no_code_and_is_sent_with_the_same_rules(engine: Engine) -> None:
    source = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=600, fan_out=False)
    with engine.rt.db.session() as s:
        post = ensure_post(s, engine.rt.settings, engine.rt.vault)
        draft = create_draft_alert(s, post, import_cap(s, post, export_cap(s, source)))
        draft_id = draft.id
        assert draft.reply_code == "" and draft.state == "draft"
    with engine.rt.db.session() as s:
        post = ensure_post(s, engine.rt.settings, engine.rt.vault)
        sent = send_alert(s, engine.rt.settings, post,
                          AlertRequest(zones=[], body="", draft_id=draft_id, channels=["sms"],
                                       ack_window_seconds=600))
    assert sent.alert_id == draft_id
    assert sent.reply_code and sent.reply_code != engine.code(source)
    status = engine.status(draft_id)
    assert status["state"] in ("sending", "active")  # the running worker may have sent it
    assert [z["zone"] for z in status["zones"]] == ["Chiapas"]
    assert [r["name"] for r in status["recipients"]] == ["Ana Morales"]
    with engine.rt.db.session() as s:
        post = ensure_post(s, engine.rt.settings, engine.rt.vault)
        with pytest.raises(Refused, match="not a draft"):
            send_alert(s, engine.rt.settings, post,
                       AlertRequest(zones=[], body="", draft_id=draft_id))


def test_reply_codes_run_out_with_a_clear_refusal(engine: Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dispatcher.dispatch.plan.REPLY_CODES", ("1111", "2222"))
    first = engine.send(["Chiapas"], channels=["sms"], fan_out=False)
    second = engine.send(["Oaxaca"], channels=["sms"], fan_out=False)
    assert {engine.code(first), engine.code(second)} == {"1111", "2222"}
    with engine.rt.db.session() as s, pytest.raises(Refused, match="every reply code"):
        allocate_reply_code(s, 1)
    # A cancelled alert still takes late replies for a day: its code is held until then.
    freed = engine.code(first)
    with engine.rt.db.session() as s:
        cancel_alert(s, engine.rt.settings, first, actor="test")
    with engine.rt.db.session() as s, pytest.raises(Refused, match="every reply code"):
        allocate_reply_code(s, 1)
    with engine.rt.db.session() as s:
        s.execute(update(Alert).where(Alert.id == first).values(
            closed_at=db_now(s) - LATE_REPLY_WINDOW - timedelta(minutes=1)))
    with engine.rt.db.session() as s:
        assert allocate_reply_code(s, 1) == freed


def test_reply_codes_are_four_digits_never_starting_with_zero() -> None:
    assert len(composer.REPLY_CODES) == 9000
    assert all(len(c) == 4 and c[0] != "0" for c in composer.REPLY_CODES)


def test_pending_deliveries_of_a_cancelled_alert_are_not_sent(engine_factory: Any) -> None:
    engine = engine_factory(start=False)
    alert_id = engine.send(["Chiapas"], channels=["sms"], fan_out=False)
    with engine.rt.db.session() as s:
        s.execute(update(Delivery).where(Delivery.alert_id == alert_id)
                  .values(lease_until=None))
        cancel_alert(s, engine.rt.settings, alert_id, actor="test")
    with engine.rt.db.session() as s:
        states = set(s.scalars(select(Delivery.state).where(Delivery.alert_id == alert_id,
                                                            Delivery.purpose == "alert")))
    assert states == {"cancelled"}


def test_a_cancel_tells_a_volunteer_whose_alert_is_in_flight(engine_factory: Any) -> None:
    """The alert is at the provider but not yet recorded: the volunteer may have it, so the
    cancel tells them too, and their row is not marked cancelled."""
    from dispatcher.dispatch.sender import Sender
    from dispatcher.models import Recipient

    engine = engine_factory(start=False)
    alert_id = engine.send(["Chiapas"], channels=["sms"], fan_out=False)
    sender = Sender(engine.rt.db, engine.rt.settings, engine.rt.vault, {}, "test")
    assert len(sender._claim(alert_id)) == 1  # handed to a channel, not recorded yet
    with engine.rt.db.session() as s:
        assert cancel_alert(s, engine.rt.settings, alert_id, actor="test") == 1
    with engine.rt.db.session() as s:
        ana = s.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        assert ana.state == "pending"
        purposes = sorted(s.scalars(select(Delivery.purpose).where(
            Delivery.alert_id == alert_id)))
    assert purposes == ["alert", "cancel"]


def test_a_cancel_reads_its_recipients_paths_in_bulk(database_url: str) -> None:
    """Cancelling (as updating, standing down, reminding) words a message per channel,
    language and zone once and reads every recipient's paths in one statement a chunk,
    not three loads and a flush per recipient (41 s for a cancel of an alert that had
    reached 10,000 volunteers): the statements do not grow with the recipients, and each
    recipient still gets the cancel on every live text path, in their language."""
    from collections import Counter

    from sqlalchemy import event

    from dispatcher.models import Recipient, Volunteer
    from tests.conftest import rt_with_roster

    rt = rt_with_roster(database_url)
    try:
        with rt.db.session() as s:
            post = ensure_post(s, rt.settings, rt.vault)
            alert_id = send_alert(s, rt.settings, post, AlertRequest(
                zones=["all"], body="Test", ack_window_seconds=600, force=True)).alert_id
        with rt.db.session() as s:
            s.execute(update(Recipient).where(Recipient.alert_id == alert_id)
                      .values(state="notified"))
            s.execute(update(Delivery).where(Delivery.alert_id == alert_id)
                      .values(state="sent"))
            told = s.scalar(select(func.count()).select_from(Recipient).where(
                Recipient.alert_id == alert_id))
            paths = dict(Counter(s.scalars(select(Delivery.recipient_id).where(
                Delivery.alert_id == alert_id))))
        assert told >= 8
        seen: list[str] = []

        def note(conn: object, cursor: object, sql: str, *args: object) -> None:
            seen.append(sql.split(None, 1)[0].upper())

        event.listen(rt.db.engine, "before_cursor_execute", note)
        try:
            with rt.db.session() as s:
                count = cancel_alert(s, rt.settings, alert_id, actor="test")
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", note)
        assert len(seen) <= 30, Counter(seen)
        with rt.db.session() as s:
            cancels = s.execute(select(Delivery.recipient_id, Delivery.body, Volunteer.languages)
                                .join(Recipient, Recipient.id == Delivery.recipient_id)
                                .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
                                .where(Delivery.alert_id == alert_id,
                                       Delivery.purpose == "cancel")).all()
        assert count == len(cancels) == sum(paths.values())
        assert dict(Counter(r for r, _, _ in cancels)) == paths
        english = {body for _, body, langs in cancels if langs.startswith("en")}
        spanish = {body for _, body, langs in cancels if langs.startswith("es")}
        assert english and all("cancel" in b.lower() for b in english)
        assert not spanish or english.isdisjoint(spanish)
    finally:
        rt.close()
