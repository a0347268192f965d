"""The live board reads beside the writers, not behind them: a board's page, its
producer's looks (every half second for each alert watched) and a zone's pages of
volunteers never take the writers' lock, so on SQLite the replies' intake never waits
for an officer's screen; each look reads one state of the database as it is now."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from dispatcher.acks import acknowledge
from dispatcher.db import db_now
from dispatcher.models import Recipient, Zone
from dispatcher.web.board_hub import BoardHub
from tests.helpers import returns_within, write_held_open
from tests.web.conftest import bearer, login

#: Well under SQLite's busy timeout (30 s), which a read queued behind the writer waits.
ANSWERS_WITHIN = 10.0


def test_the_board_answers_while_a_write_is_open(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    r = client.post("/api/alerts", json={"zones": ["Chiapas"], "body": "Stay home",
                                         "exercise": True}, headers=bearer(tokens["officer"]))
    assert r.status_code == 200, r.text
    alert_id = int(r.json()["id"])
    login(client)
    hub = BoardHub(rt)
    feed = hub.feed(alert_id)
    with rt.db.session() as s:
        zone = s.scalars(select(Zone.name).where(Zone.name == "Chiapas")).one()
    with write_held_open(rt.db, text("UPDATE alerts SET title = title")):
        whole = returns_within(ANSWERS_WITHIN, lambda: hub.snapshot(alert_id))
        looked = returns_within(ANSWERS_WITHIN, lambda: hub._look(feed))
        page = returns_within(ANSWERS_WITHIN, lambda: client.get(
            f"/alerts/{alert_id}/volunteers", params={"zone": zone}))
    assert whole and whole[0]["id"] == alert_id, "the board's snapshot waited for the writer"
    assert looked == [None], "the board's look waited for the writer (or saw a change)"
    assert page and page[0].status_code == 200, "a zone's page waited for the writer"
    # The next look reads the database as it is then: an acknowledgement committed since
    # is in it.
    with rt.db.session() as s:
        rec = s.scalars(select(Recipient).where(Recipient.alert_id == alert_id)
                        .order_by(Recipient.id)).first()
        assert rec is not None
        acknowledge(s, rt.settings, rec, at=db_now(s), via="sms")
        acked = rec.id
    event = hub._look(feed)
    assert event is not None
    assert [row["state"] for row in event["recipients"] if row["id"] == acked] == \
        ["acknowledged"]
