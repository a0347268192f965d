"""The live board's change stream: one producer per alert sends only what changed, a
browser reconnecting with Last-Event-ID gets what it missed (or a snapshot), and a zone's
volunteers come in pages."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from sqlalchemy import select, update

from dispatcher import board_feed
from dispatcher.acks import acknowledge
from dispatcher.board_feed import PAGE_SIZE, BoardFeed
from dispatcher.db import db_now
from dispatcher.errors import NotFound
from dispatcher.models import Recipient, Volunteer
from dispatcher.runtime import Runtime
from dispatcher.web import board
from dispatcher.web.board_hub import BOARD_IDLE_SECONDS, BoardHub
from tests.bench.fixtures import bulk_roster
from tests.web.conftest import bearer, login


def _send(client: Any, token: str, zones: list[str]) -> int:
    r = client.post("/api/alerts", json={"zones": zones, "body": "Stay home",
                                         "exercise": True}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def _ack(rt: Runtime, alert_id: int, name: str) -> int:
    with rt.db.session() as s:
        rec = s.scalars(select(Recipient).join(Volunteer).where(
            Recipient.alert_id == alert_id, Volunteer.name == name)).one()
        acknowledge(s, rt.settings, rec, at=db_now(s), via="sms")
        return rec.id


def _look(rt: Runtime, feed: BoardFeed) -> dict[str, Any] | None:
    with rt.db.session() as s:
        return feed.look(s)


def _events(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, kind, data) of each event in a stream's text."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return out


def test_a_change_event_carries_only_what_changed(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas"])
    feed = BoardFeed(alert_id)
    with rt.db.session() as s:
        whole = feed.snapshot(s)
    assert {z["zone"] for z in whole["zones"]} == {"Oaxaca", "Chiapas"}
    assert _look(rt, feed) is None  # nothing changed: nothing sent
    victor = _ack(rt, alert_id, "Victor Castillo")
    event = _look(rt, feed)
    assert event is not None
    assert [z["zone"] for z in event["zones"]] == ["Oaxaca"]  # Chiapas did not change
    assert event["zones"][0]["state"] == "acknowledged"
    assert [r["id"] for r in event["recipients"]] == [victor]
    assert event["recipients"][0]["state"] == "acknowledged"
    assert event["summary"]["acknowledged"] == 1
    assert "versions" not in event and "title" not in event  # unchanged parts stay home
    assert event["event_id"] == f"{feed.epoch}-1"
    assert _look(rt, feed) is None  # the same change is sent once


def _two_events(app_rt: Any) -> tuple[BoardFeed, dict[str, Any], dict[str, Any]]:
    """A board's producer after a page load and two acknowledgements, one look each."""
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas"])
    feed = BoardFeed(alert_id)
    with rt.db.session() as s:
        feed.snapshot(s)
    _ack(rt, alert_id, "Victor Castillo")
    first = _look(rt, feed)
    _ack(rt, alert_id, "Ana Morales")
    second = _look(rt, feed)
    assert first is not None and second is not None
    return feed, first, second


def test_a_browser_that_missed_events_gets_them_or_a_snapshot(app_rt: Any) -> None:
    feed, first, second = _two_events(app_rt)
    assert feed.missed(first["event_id"]) == [second]
    assert feed.missed(f"{feed.epoch}-0") == [first, second]
    assert feed.missed(second["event_id"]) == []
    assert feed.missed("0badbeef-1") is None  # another process's (or a restarted) producer
    assert feed.missed(f"{feed.epoch}-99") is None and feed.missed("nonsense") is None


def test_events_no_longer_kept_mean_a_snapshot(app_rt: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(board_feed, "EVENTS_KEPT", 1)
    feed, first, second = _two_events(app_rt)
    assert feed.missed(f"{feed.epoch}-0") is None  # the first is gone
    assert feed.missed(first["event_id"]) == [second]


def test_the_stream_resumes_from_last_event_id_and_else_sends_a_snapshot(
        app_rt: Any, monkeypatch: Any) -> None:
    rt, client, tokens = app_rt
    monkeypatch.setattr(board, "BOARD_STREAM_SECONDS", 1.5)  # each stream ends on its own
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas"])
    login(client)
    page = client.get(f"/alerts/{alert_id}").text
    seen = page.split("events?last=", 1)[1].split('"', 1)[0]
    victor = _ack(rt, alert_id, "Victor Castillo")
    resumed = _events(client.get(f"/alerts/{alert_id}/events",
                                 headers={"Last-Event-ID": seen}).text)
    assert [kind for _, kind, _ in resumed] == ["change"]  # no snapshot: it had the board
    _, _, change = resumed[0]
    assert [r["id"] for r in change["recipients"]] == [victor]
    assert [z["zone"] for z in change["zones"]] == ["Oaxaca"]
    fresh = _events(client.get(f"/alerts/{alert_id}/events",
                               headers={"Last-Event-ID": "0badbeef-7"}).text)
    assert [kind for _, kind, _ in fresh] == ["snapshot"]  # unknown id: the whole board
    whole = fresh[0][2]
    assert {z["zone"] for z in whole["zones"]} == {"Oaxaca", "Chiapas"}
    assert victor in [r["id"] for r in whole["recipients"]]
    assert fresh[0][0] == whole["event_id"]


def test_a_zone_s_volunteers_come_in_pages(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    bulk_roster(rt, 2 * PAGE_SIZE + 7, zones=1)  # all in the post's first zone
    first_zone = _first_zone(rt)
    alert_id = _send(client, tokens["officer"], [first_zone])
    login(client)
    with rt.db.session() as s:
        listed = len(s.scalars(select(Recipient.id).where(Recipient.alert_id == alert_id)).all())
    assert listed > 2 * PAGE_SIZE
    page = client.get(f"/alerts/{alert_id}").text
    held = json.loads(page.split('id="board-data">', 1)[1].split("</script>", 1)[0])
    assert len(held["recipients"]) <= PAGE_SIZE + board_feed.CALL_NEXT_SHOWN
    assert held["zones"][0]["listed"] == listed
    assert held["zones"][0]["call_next_more"] == listed - board_feed.CALL_NEXT_SHOWN
    ids: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"zone": first_zone}
        if after is not None:
            params["after"] = after
        got = client.get(f"/alerts/{alert_id}/volunteers", params=params).json()
        assert len(got["recipients"]) <= PAGE_SIZE
        ids += [r["id"] for r in got["recipients"]]
        after = got["more_after"]
        if after is None:
            break
    assert len(ids) == listed and len(set(ids)) == listed  # every one, once
    assert held["pages"][first_zone] == ids[PAGE_SIZE - 1]
    unknown = client.get(f"/alerts/{alert_id}/volunteers", params={"zone": "Atlantis"})
    assert unknown.status_code == 404 and "Atlantis" in unknown.text
    unnamed = client.get(f"/alerts/{alert_id}/volunteers")
    assert unnamed.status_code == 422 and "name the zone" in unnamed.text


def _first_zone(rt: Runtime) -> str:
    from dispatcher.models import Zone

    with rt.db.session() as s:
        return str(s.scalars(select(Zone.name).order_by(Zone.id)).first())


@pytest.mark.parametrize("path", ["events", "volunteers?zone=Oaxaca"])
def test_the_stream_and_pages_are_for_officers_only(app_rt: Any, path: str) -> None:
    _, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca"])
    r = client.get(f"/alerts/{alert_id}/{path}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_the_board_s_zone_figures_equal_the_status_json_s(app_rt: Any) -> None:
    """The board counts in SQL what the status JSON counts from loaded rows: both, on
    zones waiting, covered, unreached, with a HELP, then cancelled."""
    from dispatcher.domain import AlertState, ZoneState
    from dispatcher.models import Alert, AlertZone, Response
    from dispatcher.status import alert_status

    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas", "Hidalgo", "Puebla"])
    _ack(rt, alert_id, "Victor Castillo")
    with rt.db.session() as s:
        ana = s.scalars(select(Recipient).join(Volunteer).where(
            Recipient.alert_id == alert_id, Volunteer.name == "Ana Morales")).one()
        s.add(Response(alert_id=alert_id, recipient_id=ana.id, volunteer_id=ana.volunteer_id,
                       zone_id=ana.zone_id, kind="help", text="HELP", urgent=True))
        hidalgo = s.scalars(select(AlertZone).join(AlertZone.zone).where(
            AlertZone.alert_id == alert_id).order_by(AlertZone.id)).all()
        next(az for az in hidalgo if az.zone.name == "Hidalgo").state = ZoneState.UNREACHED
        ana_id = ana.id

    def compare(cancelled: bool) -> None:
        with rt.db.session() as s:
            slow = {z["zone"]: z for z in alert_status(s, alert_id)["zones"]}
            fast = {z["zone"]: z for z in BoardFeed(alert_id).snapshot(s)["zones"]}
        assert set(fast) == set(slow)
        assert ana_id in slow["Chiapas"]["call_next"] and slow["Chiapas"]["help"] == 1
        assert slow["Hidalgo"]["state"] == "unreached"
        assert bool(slow["Hidalgo"]["call_next"]) is not cancelled  # a cancel ends chains
        for name, z in slow.items():
            board_row = {k: v for k, v in fast[name].items()
                         if k not in ("listed", "call_next_more")}
            assert board_row == z, name
            assert fast[name]["call_next_more"] == 0  # a handful each: all named

    compare(False)
    with rt.db.session() as s:
        s.get(Alert, alert_id).state = AlertState.CANCELLED  # type: ignore[union-attr]
    compare(True)


def test_boards_nobody_uses_are_dropped_and_watched_ones_kept(app_rt: Any) -> None:
    """A server running for years holds only the boards in use: one left alone past
    BOARD_IDLE_SECONDS goes (its producer's memory with it); one watched stays."""
    rt, client, tokens = app_rt
    first = _send(client, tokens["officer"], ["Oaxaca"])
    second = _send(client, tokens["officer"], ["Chiapas"])
    now = [0.0]
    hub = BoardHub(rt, clock=lambda: now[0])
    hub.snapshot(first)
    now[0] += BOARD_IDLE_SECONDS - 1
    hub.snapshot(second)
    assert len(hub) == 2  # not idle long enough yet
    now[0] += 2
    hub.snapshot(second)
    assert len(hub) == 1 and hub.feed(second).alert_id == second

    async def watched() -> int:
        async with hub.watch(first):
            now[0] += 10 * BOARD_IDLE_SECONDS
            hub.snapshot(second)
            kept = len(hub)
        await hub.close()
        return kept

    assert asyncio.run(watched()) == 2


def test_closing_the_boards_waits_for_a_look_still_reading(app_rt: Any) -> None:
    """The last browser leaving cancels its board's producer, but the look it started
    reads on in a thread: the server's shutdown (the hub's `close`, then the database's)
    waits for it, or a look would read a database being closed (in the tests, a schema
    being dropped under it: a deadlock)."""
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Chiapas"])
    hub = BoardHub(rt)
    looking, release, done = threading.Event(), threading.Event(), threading.Event()
    feed = hub.feed(alert_id)
    look = feed.look

    def held_look(session: Any) -> Any:
        looking.set()
        assert release.wait(30)
        try:
            return look(session)
        finally:
            done.set()

    feed.look = held_look  # type: ignore[method-assign]

    async def leave_then_close() -> bool:
        async with hub.watch(alert_id):
            assert await asyncio.to_thread(looking.wait, 30)
        closing = asyncio.create_task(hub.close())
        finished, _ = await asyncio.wait({closing}, timeout=0.2)
        release.set()
        await asyncio.wait_for(closing, 30)
        return not finished and done.is_set()

    try:
        assert asyncio.run(leave_then_close())
    finally:
        release.set()


def test_the_boards_cpu_time_is_counted_for_metrics(app_rt: Any) -> None:
    """`aln_board_cpu_seconds_total` grows with each snapshot and look: the boards' own
    cost, which the board benchmark reads (the server's whole CPU time moves by more than
    the boards' share from one run to the next)."""
    from prometheus_client import REGISTRY

    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Chiapas"])
    hub = BoardHub(rt)

    def counted() -> float:
        return REGISTRY.get_sample_value("aln_board_cpu_seconds_total") or 0.0

    before = counted()
    hub.snapshot(alert_id)
    after_snapshot = counted()
    assert after_snapshot > before
    hub._look(hub.feed(alert_id))
    assert counted() > after_snapshot


class _PausingLock:
    """A feed's lock that holds one thread (the one named) at the door until let in."""

    def __init__(self, paused: str) -> None:
        self._lock = threading.Lock()
        self.paused = paused
        self.arrived, self.go = threading.Event(), threading.Event()

    def __enter__(self) -> None:
        if threading.current_thread().name == self.paused:
            self.arrived.set()
            assert self.go.wait(30)
        self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


def test_a_snapshot_shows_what_its_event_id_says_it_does(app_rt: Any) -> None:
    """A page's snapshot is read as of when it takes the feed's lock, whatever look ran
    just before it: a snapshot read earlier but numbered after that look would never get
    the look's change (here an acknowledgement), stream or no stream."""
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Chiapas"])
    hub = BoardHub(rt)
    feed = hub.feed(alert_id)
    _look(rt, feed)  # the producer has started
    gate = _PausingLock("page")
    feed._lock = gate  # type: ignore[assignment]
    out: list[dict[str, Any]] = []
    page = threading.Thread(target=lambda: out.append(hub.snapshot(alert_id)), name="page")
    page.start()
    assert gate.arrived.wait(30)
    with rt.db.session() as s:
        name = s.scalars(select(Volunteer.name).join(Recipient).where(
            Recipient.alert_id == alert_id).order_by(Recipient.id)).first()
    assert name is not None
    acked = _ack(rt, alert_id, name)
    event = hub._look(feed)
    assert event is not None and acked in {r["id"] for r in event["recipients"]}
    gate.go.set()
    page.join(30)
    snapshot = out[0]
    assert snapshot["event_id"] == event["event_id"]
    assert [r["state"] for r in snapshot["recipients"] if r["id"] == acked] == ["acknowledged"]
    zone = next(z for z in snapshot["zones"] if z["zone"] == "Chiapas")
    assert zone["acknowledged"] >= 1


def test_a_board_asked_for_an_alert_that_does_not_exist_is_not_kept(app_rt: Any) -> None:
    rt, _, _ = app_rt
    hub = BoardHub(rt)
    with pytest.raises(NotFound):
        hub.snapshot(999_999)
    assert len(hub) == 0


def test_a_large_zone_names_the_same_first_ten_as_the_status_json(app_rt: Any) -> None:
    """A zone with more people to call than the board names: the board's first
    CALL_NEXT_SHOWN (read with a LIMIT per zone) are the status JSON's, in its order,
    before and after some of them leave the silent states (here: their rows cancelled;
    an acknowledgement would cover the zone, which then names nobody)."""
    from dispatcher.status import alert_status

    rt, client, tokens = app_rt
    bulk_roster(rt, 3 * board_feed.CALL_NEXT_SHOWN, zones=1)
    zone = _first_zone(rt)
    alert_id = _send(client, tokens["officer"], [zone])

    def compare() -> list[int]:
        with rt.db.session() as s:
            slow = {z["zone"]: z for z in alert_status(s, alert_id)["zones"]}[zone]
            fast = {z["zone"]: z for z in BoardFeed(alert_id).snapshot(s)["zones"]}[zone]
        assert len(slow["call_next"]) > board_feed.CALL_NEXT_SHOWN
        assert fast["call_next"] == slow["call_next"][:board_feed.CALL_NEXT_SHOWN]
        return list(fast["call_next"])

    first = compare()
    with rt.db.session() as s:
        s.execute(update(Recipient).where(Recipient.id.in_(first[:3]))
                  .values(state="cancelled"))
    again = compare()
    assert not set(first[:3]) & set(again) and again[:7] == first[3:]


def test_zones_are_read_a_bounded_number_at_a_time(app_rt: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The first few to call of many zones come in several statements (SQLite refuses a
    compound SELECT of more than 500 terms) and add up to the same board."""
    rt, client, tokens = app_rt
    alert_id = _send(client, tokens["officer"], ["Oaxaca", "Chiapas", "Hidalgo", "Puebla"])
    with rt.db.session() as s:
        whole = BoardFeed(alert_id).snapshot(s)["zones"]
    monkeypatch.setattr(board_feed, "ZONES_PER_READ", 1)
    with rt.db.session() as s:
        one_at_a_time = BoardFeed(alert_id).snapshot(s)["zones"]
    assert [z["call_next"] for z in one_at_a_time] == [z["call_next"] for z in whole]
    assert sum(len(z["call_next"]) for z in whole) > 0
