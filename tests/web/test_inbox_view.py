"""The inbox's rules: a volunteer's HELP first and never pushed out by strangers, a
sender's repeats folded with a count, pages that never repeat an item, Handled folding
only what was shown, numbers to call for officers only, the waiting count on every page."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from dispatcher.models import AuditEvent, InboundMessage, Officer, Response, Volunteer
from dispatcher.web.auth import hash_password
from dispatcher.web.inbox_view import INBOX_PAGE, inbox_page, waiting_count
from tests.web.conftest import PASSWORD, login

ANA_PHONE = "+529611230101"


def _volunteer(s: Any, name: str) -> int:
    return s.scalars(select(Volunteer.id).where(Volunteer.name == name)).one()


def _stranger(s: Any, number: str, texts: list[str], urgent: bool = False) -> list[int]:
    """Messages from a number nobody on the roster has, as the webhook keeps them."""
    ids = []
    for i, text in enumerate(texts):
        inbound = InboundMessage(source="twilio", dedupe_key=f"{number}-{i}-{text[:20]}",
                                 raw_enc=b"x", sender_hash=f"hash-{number}")
        s.add(inbound)
        s.flush()
        r = Response(kind="field_report", text=text, inbound_id=inbound.id, urgent=urgent,
                     sender_masked=number[:3] + "******" + number[-4:])
        s.add(r)
        s.flush()
        ids.append(r.id)
    return ids


def _every_page(session: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        found = inbox_page(session, "UTC", cursor=cursor)
        pages.append(found.items)
        if found.next_cursor is None:
            return pages
        cursor = found.next_cursor


def test_a_strangers_flood_never_buries_a_volunteers_help(app_rt: Any) -> None:
    rt, _, _ = app_rt
    with rt.db.session() as s:
        ana = _volunteer(s, "Ana Morales")
        s.add(Response(kind="help", text="HELP, we are trapped", volunteer_id=ana,
                       urgent=True))
        s.flush()
        _stranger(s, "+15550001111", [f"HELP HELP {i}" for i in range(600)], urgent=True)
        for n in range(INBOX_PAGE + 5):  # more senders than a page holds
            _stranger(s, f"+1555100{n:04d}", ["what is this?"])
    with rt.db.session() as s:
        pages = _every_page(s)
        first = pages[0]
        assert first[0]["name"] == "Ana Morales" and first[0]["help"]
        assert first[1]["count"] == 600 and first[1]["text"] == "HELP HELP 599"
        assert len(first) == INBOX_PAGE and len(pages) == 2
        shown = [i["id"] for p in pages for i in p]
        assert len(shown) == len(set(shown)) == 2 + INBOX_PAGE + 5  # one item per sender
        assert waiting_count(s) == 2 + INBOX_PAGE + 5
        # The flood's earlier messages are folded under it, the newest first.
        assert [e["text"] for e in first[1]["earlier"]][:2] == ["HELP HELP 598", "HELP HELP 597"]


def test_order_is_volunteer_help_then_urgent_then_newest(app_rt: Any) -> None:
    rt, _, _ = app_rt
    with rt.db.session() as s:
        victor = _volunteer(s, "Victor Castillo")
        maria = _volunteer(s, "Maria Torres")
        s.add(Response(kind="help", text="help", volunteer_id=victor, urgent=True))
        s.flush()
        _stranger(s, "+15550002222", ["HELP"], urgent=True)
        s.add(Response(kind="field_report", text="road blocked", volunteer_id=maria))
        s.flush()
        _stranger(s, "+15550003333", ["newest"])
    with rt.db.session() as s:
        items = inbox_page(s, "UTC").items
    assert [i["text"] for i in items] == ["help", "HELP", "newest", "road blocked"]
    assert items[0]["label"] == "HELP" and items[1]["label"] == "Field report"
    assert items[1]["urgent"] and not items[1]["help"]
    assert items[3]["zone"] == "Hidalgo"  # a known sender's zone, from the roster


def test_handled_folds_only_what_was_shown_and_undo_restores_it(app_rt: Any) -> None:
    rt, client, _ = app_rt
    with rt.db.session() as s:
        ids = _stranger(s, "+15550004444", ["one", "two", "three"])
    csrf = login(client)
    page = client.get("/inbox").text
    assert f'data-item="{ids[-1]}" data-count="3"' in page
    with rt.db.session() as s:  # a fourth arrives after the officer read the page
        later = _stranger(s, "+15550004444", ["four"])
    client.post(f"/inbox/{ids[-1]}/handled", data={"csrf": csrf, "note": "spam"})
    page = client.get("/inbox").text
    assert f'data-item="{later[0]}" data-count="1"' in page  # not handled unseen
    handled = client.get("/inbox/handled").text
    assert "3 messages from this sender" in handled and "spam" in handled
    assert "by officer-officer" in handled
    r = client.post(f"/inbox/{ids[-1]}/reopen", data={"csrf": csrf, "back": "handled"},
                    follow_redirects=False)
    assert r.headers["location"] == "/inbox/handled"
    with rt.db.session() as s:
        assert s.scalars(select(Response.id).where(Response.handled_at.is_(None))
                         .order_by(Response.id)).all() \
            == [*ids, *later]
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(
            ["inbox.handled", "inbox.reopened"])).order_by(AuditEvent.id)).all()
        assert [(e.action, e.details["messages"]) for e in audit] == \
            [("inbox.handled", 3), ("inbox.reopened", 3)]


def test_officers_get_a_number_to_call_viewers_the_masked_one(app_rt: Any) -> None:
    rt, client, _ = app_rt
    with rt.db.session() as s:
        s.add(Response(kind="help", text="HELP", volunteer_id=_volunteer(s, "Ana Morales"),
                       urgent=True, sender_masked="+52******0101"))
        s.scalars(select(Officer).where(Officer.name == "viewer-officer")).one() \
            .password_hash = hash_password(PASSWORD)
    login(client)
    page = client.get("/inbox").text
    assert f'href="tel:{ANA_PHONE}"' in page and "Ana Morales</strong> (Chiapas)" in page
    with rt.db.session() as s:
        read = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "inbox.phones_read")).one()
        assert read.actor == "officer:officer-officer"
    client.cookies.clear()
    login(client, "viewer-officer")
    page = client.get("/inbox").text
    assert ANA_PHONE not in page and "tel:" not in page and "+52******0101" in page
    assert 'action="/inbox/' not in page  # a viewer cannot mark anything handled


def test_every_page_shows_how_many_items_wait(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    with rt.db.session() as s:
        _stranger(s, "+15550005555", ["a", "b"])
        _stranger(s, "+15550006666", ["c"])
    login(client)
    alert = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "Test"},
                        headers={"Authorization": f"Bearer {tokens['officer']}"}).json()["id"]
    for path in ("/", "/inbox", "/inbox/handled", "/audit", f"/alerts/{alert}",
                 f"/alerts/{alert}/cancel"):
        page = client.get(path).text
        count = re.search(r'id="nav-waiting">(\d+)<', page)
        assert count and count.group(1) == "2", path


def test_the_api_handles_an_item_as_the_dashboard_does(app_rt: Any) -> None:
    """One rule for Handled: through the API too, the sender's earlier waiting messages go
    with the item (never a later one), and a second officer is told it is already done."""
    rt, client, tokens = app_rt
    h = {"Authorization": f"Bearer {tokens['officer']}"}
    with rt.db.session() as s:
        ids = _stranger(s, "+15550005555", ["one", "two"])
        later = _stranger(s, "+15550005555", ["three"])
    r = client.post(f"/api/inbox/{ids[-1]}/handled", headers=h)
    assert r.status_code == 200, r.text
    with rt.db.session() as s:
        waiting = s.scalars(select(Response.id).where(Response.handled_at.is_(None))).all()
        assert ids[0] not in waiting and ids[1] not in waiting and later[0] in waiting
    again = client.post(f"/api/inbox/{ids[-1]}/handled", headers=h)
    assert again.status_code == 409 and "already handled" in again.json()["detail"]
