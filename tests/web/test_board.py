"""The board's server side: who to call, numbers in clear only for officers (audited),
display-only cancelled zones, confirmation pages, updates, and the alert list's words."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from dispatcher.board_feed import BoardFeed
from dispatcher.domain import ZoneState
from dispatcher.models import AlertZone, AuditEvent
from dispatcher.web.alert_list import _state
from tests.web.conftest import bearer, login


def _send(client: Any, token: str, zones: list[str]) -> int:
    r = client.post("/api/alerts", json={"zones": zones, "body": "First line\nsecond",
                                         "exercise": True}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def _board_json(text: str) -> dict[str, Any]:
    block = re.search(r'id="board-data">(.*?)</script>', text, re.S)
    assert block
    return json.loads(block.group(1))  # type: ignore[no-any-return]


def test_waiting_zone_names_who_to_call_and_only_officers_get_the_number(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca"])
    csrf = login(client)
    assert csrf
    status = _board_json(client.get(f"/alerts/{alert_id}").text)
    zone = status["zones"][0]
    victor = next(r for r in status["recipients"] if r["name"] == "Victor Castillo")
    assert zone["call_next"] == [victor["id"]] and zone["shown_state"] == "waiting"
    assert "******" in victor["phone"]  # masked in the status JSON
    assert status["timezone"] == "America/Mexico_City" and status["summary"]["waiting"] == 1
    found = client.get(f"/alerts/{alert_id}/phones", params={"ids": [victor["id"]]}).json()
    assert found == {str(victor["id"]): "+529515101001"}
    with rt.db.session() as s:
        event = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "alert.phones_read")).one()
        assert event.actor == "officer:officer-officer" and event.alert_id == alert_id
        assert event.details["recipients"] == [victor["id"]]


def test_a_viewer_cannot_read_numbers_in_clear(app_rt: Any) -> None:
    from tests.web.conftest import PASSWORD

    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca"])
    from dispatcher.models import Officer
    from dispatcher.web.auth import hash_password

    with rt.db.session() as s:
        s.scalars(select(Officer).where(Officer.name == "viewer-officer")).one() \
            .password_hash = hash_password(PASSWORD)
    login(client, "viewer-officer")
    r = client.get(f"/alerts/{alert_id}/phones", params={"ids": [1]},
                   follow_redirects=False)
    assert r.status_code == 403
    assert "Cancel this alert" not in client.get(f"/alerts/{alert_id}").text


def test_cancel_confirms_then_zones_show_cancelled_but_keep_their_state(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas"])
    csrf = login(client)
    with rt.db.session() as s:  # as if the first messages went out
        from dispatcher.models import Recipient

        for rec in s.scalars(select(Recipient).where(Recipient.alert_id == alert_id)):
            rec.state = "notified"  # type: ignore[assignment]
    ask = client.get(f"/alerts/{alert_id}/cancel")
    assert "Cancel: 4 stand-down messages will go out" in ask.text  # SMS and email, twice
    done = client.post(f"/alerts/{alert_id}/cancel", data={"csrf": csrf})
    status = _board_json(done.text)
    assert {z["shown_state"] for z in status["zones"]} == {"cancelled"}
    assert {z["state"] for z in status["zones"]} == {"waiting"}  # stored states unchanged
    assert "Cancel this alert" not in done.text


def test_update_from_the_board_is_the_next_version(app_rt: Any) -> None:
    _, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca"])
    csrf = login(client)
    assert client.post(f"/alerts/{alert_id}/update", data={"body": "Moved to Reforma"},
                       follow_redirects=False).status_code == 403  # no CSRF token
    r = client.post(f"/alerts/{alert_id}/update", data={"body": "Moved to Reforma",
                                                        "csrf": csrf})
    versions = _board_json(r.text)["versions"]
    assert [v["msg_type"] for v in versions] == ["alert", "update"]
    assert versions[1]["body"] == "Moved to Reforma"
    empty = client.post(f"/alerts/{alert_id}/update", data={"body": " ", "csrf": csrf})
    assert empty.status_code == 400 and "the update has no text" in empty.text


def test_alert_list_says_what_happened(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas"])
    with rt.db.session() as s:
        az = s.scalars(select(AlertZone).where(AlertZone.alert_id == alert_id)).first()
        assert az is not None
        az.state = ZoneState.UNREACHED
    login(client)
    row = re.search(rf'<tr data-alert="{alert_id}">(.*?)</tr>', client.get("/").text, re.S)
    assert row
    assert "First line" in row.group(1) and "second" not in row.group(1)
    assert "1 of 2 zones unreached" in row.group(1) and "EXERCISE" in row.group(1)
    assert _state("completed", 7, 0, 7) == "ended: 7 zones unreached"
    assert _state("completed", 7, 7, 0) == "ended: every zone covered"


def test_inbox_handled_with_a_note_shows_who_and_when_and_can_be_undone(app_rt: Any) -> None:
    from dispatcher.models import Response, Volunteer

    rt, client, _ = app_rt
    with rt.db.session() as s:
        ana = s.scalars(select(Volunteer).where(Volunteer.name == "Ana Morales")).one()
        s.add(Response(kind="field_report", text="road <b>blocked</b>", volunteer_id=ana.id))
        s.add(Response(kind="help", text="HELP", volunteer_id=ana.id, urgent=True))
        s.add(Response(kind="unparsed", text="???", sender_masked="+52******9999"))
    csrf = login(client)
    page = client.get("/inbox").text
    assert ">field_report<" not in page and ">unparsed<" not in page  # words, not codes
    # Ana's two messages are one item, ranked by her HELP, before the stranger's.
    assert page.index('data-kind="help"') < page.index('data-kind="unparsed"')
    assert 'data-count="2"' in page
    assert "Ana Morales" in page and "Field report" in page and "Reply not understood" in page
    assert "road &lt;b&gt;blocked&lt;/b&gt;" in page  # text, never markup
    with rt.db.session() as s:
        item = s.scalars(select(Response).where(Response.kind == "help")).one().id
    client.post(f"/inbox/{item}/handled", data={"csrf": csrf, "note": "passed to RSO"})
    page = client.get("/inbox").text
    handled = page.split("Handled recently")[1]
    assert "passed to RSO" in handled and "by officer-officer" in handled
    assert 'data-kind="help"' not in page  # both of Ana's messages were handled
    client.post(f"/inbox/{item}/reopen", data={"csrf": csrf})
    page = client.get("/inbox").text
    assert "passed to RSO" not in page.split("Handled recently")[1]
    assert 'data-count="2"' in page
    with rt.db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert [a for a in actions if a != "inbox.phones_read"][-2:] == \
        ["inbox.handled", "inbox.reopened"]


def test_board_counts_how_the_calls_ended(app_rt: Any) -> None:
    from dispatcher.models import Delivery, Volunteer
    from dispatcher.receipts import apply_call_status
    from dispatcher.roster.contacts import set_contact

    rt, client, tokens = app_rt
    with rt.db.session() as s:
        victor = s.scalars(select(Volunteer).where(Volunteer.name == "Victor Castillo")).one()
        set_contact(s, rt.vault, victor, "voice", "+529515101001")
    r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "Test",
                                         "channels": ["voice"]}, headers=bearer(tokens["officer"]))
    assert r.status_code == 200, r.text
    alert_id = int(r.json()["id"])
    feed = BoardFeed(alert_id)
    with rt.db.session() as s:
        assert feed.snapshot(s)["calls_line"] == "1 to call"
    lines = []
    for status in ("ringing", "no-answer"):
        with rt.db.session() as s:
            call = s.scalars(select(Delivery).where(Delivery.alert_id == alert_id)).one()
            assert call.channel == "voice"
            apply_call_status(s, {"CallSid": "CA" + "d" * 32, "CallStatus": status},
                              str(call.id))
        with rt.db.session() as s:  # the live board's next look says how the call went
            event = feed.look(s)
            assert event is not None
            lines.append(event.get("calls_line"))
    assert lines == ["1 ringing", "1 no answer"]
    login(client)
    page = client.get(f"/alerts/{alert_id}").text
    assert '<span id="sum-calls">· calls: 1 no answer</span>' in page
    assert _board_json(page)["outcomes"] == {"voice": {"no_answer": 1}}
