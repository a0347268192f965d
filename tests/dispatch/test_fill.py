"""A streamed alert (`dispatch.fill`): its first wave is written in chunks after the
alert commits, and ends as the rows an alert written at once would have; a crash, a
cancel, an acknowledgement or an update in the middle loses nobody and asks nobody
twice."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from dispatcher import acks, lifecycle
from dispatcher.db import db_now
from dispatcher.dispatch import fill
from dispatcher.dispatch.failover import on_dead_path
from dispatcher.dispatch.fill import fill_steps, run_fills
from dispatcher.dispatch.outbox import Sent, send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.versions import cancel_alert, update_alert
from dispatcher.domain import (
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    DeliveryState,
    RecipientState,
    ZoneState,
)
from dispatcher.escalation.engine import claim_due, fire_due
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Membership,
    Recipient,
    Volunteer,
)
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.status import alert_status
from tests.conftest import CONFIG_DIR, rt_with_roster
from tests.helpers import returns_within, write_held_open

ZONES = ["Chiapas", "Mexico City", "Puebla", "Oaxaca"]


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Runtime:
    """The sample roster, and one more policy: `each`, a window per volunteer."""
    runtime = rt_with_roster(database_url)
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "policies" / "each.toml").write_text('ack_window = "10m"\nmode = "each"\n')
    (config / "policies" / "standdown.toml").write_text('ack_window = "10m"\nstand_down = true\n')
    runtime.settings = runtime.settings.model_copy(update={"config_dir": config})
    yield runtime
    runtime.close()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of one, then two: the sample roster's zones take several."""
    monkeypatch.setattr(fill, "FIRST_CHUNK", 1)
    monkeypatch.setattr(fill, "CHUNK", 2)


def send(rt: Runtime, *, streamed: bool, filler: str | None = "filler",
         zones: list[str] = ZONES, **kwargs: Any) -> Sent:
    settings = rt.settings.model_copy(update={"stream_above": 0 if streamed else 10**9})
    with rt.db.session() as session:
        post = ensure_post(session, settings, rt.vault)
        return send_alert(session, settings, post,
                          AlertRequest(zones=zones, body="Fill test", ack_window_seconds=600,
                                       **kwargs), filler=filler)


def one_chunk_written(rt: Runtime, **kwargs: Any) -> tuple[Sent, Iterator[int]]:
    """A streamed alert to Mexico City (two primaries) whose fill has written its first
    chunk (one volunteer) and waits to go on."""
    sent = send(rt, streamed=True, zones=["Mexico City"], **kwargs)
    assert sent.alert_id is not None
    steps = fill_steps(rt.db, rt.settings, sent.fills[0], "filler")
    assert next(steps) == 1
    return sent, steps


def claim_fills(rt: Runtime, worker: str) -> list[int]:
    """The due fills nobody is working on, claimed as a worker claims them."""
    return claim_due(rt.db, worker, rt.settings.lease_seconds, fills=True)[1]

def dead_worker() -> str:
    """A worker name whose process is gone: its claims are taken over at once."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{socket.gethostname()}:{done.stdout.strip()}:dead"


def rows(rt: Runtime, alert_id: int) -> dict[str, Any]:
    """The alert's rows, with what differs between two alerts (ids, clocks, the reply
    code in the texts) taken out."""
    with rt.db.session() as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.sent_at is not None
        sent_at: datetime = alert.sent_at
        code = alert.reply_code or ""
        recipients = {r.id: r for r in s.scalars(select(Recipient).where(
            Recipient.alert_id == alert_id))}
        return {
            "recipients": sorted(
                (r.volunteer_id, r.zone_id, r.tier, str(r.state), str(r.skipped),
                 (r.due_at - sent_at).total_seconds()) for r in recipients.values()),
            "deliveries": sorted(
                (recipients[d.recipient_id].volunteer_id, d.contact_id, d.channel,
                 str(d.purpose), d.language, str(d.state), (d.subject or "").replace(code, "#"),
                 (d.body or "").replace(code, "#"), d.segments)
                for d in s.scalars(select(Delivery).where(Delivery.alert_id == alert_id))),
            "deadlines": sorted(
                (d.zone_id, d.kind, d.tier, d.step, str(d.state),
                 (d.due_at - sent_at).total_seconds(),
                 recipients[d.recipient_id].volunteer_id if d.recipient_id else None)
                for d in s.scalars(select(Deadline).where(
                    Deadline.alert_id == alert_id, Deadline.kind != DeadlineKind.FILL))),
            "zones": sorted((z.zone_id, str(z.state), z.current_tier) for z in s.scalars(
                select(AlertZone).where(AlertZone.alert_id == alert_id))),
        }


def fills_of(rt: Runtime, alert_id: int) -> list[Deadline]:
    with rt.db.session() as s:
        found = list(s.scalars(select(Deadline).where(Deadline.alert_id == alert_id,
                                                      Deadline.kind == DeadlineKind.FILL)))
        s.expunge_all()
        return found


def asked(rt: Runtime, alert_id: int) -> Counter[int]:
    """How many recipient rows each volunteer has in the alert."""
    with rt.db.session() as s:
        return Counter(s.scalars(select(Recipient.volunteer_id).where(
            Recipient.alert_id == alert_id)))


def first_tier(rt: Runtime, zones: list[str] = ZONES) -> set[int]:
    """The volunteers of the zones' first tiers (the sample roster's primaries)."""
    with rt.db.session() as s:
        from dispatcher.models import Zone
        return set(s.scalars(select(Membership.volunteer_id).join(Zone).where(
            Zone.name.in_(zones), Membership.tier == 0)))


@pytest.mark.parametrize("policy", ["default", "each"])
def test_a_streamed_alert_ends_with_the_rows_of_one_written_at_once(
        rt: Runtime, policy: str) -> None:
    at_once = send(rt, streamed=False, policy=policy)
    streamed = send(rt, streamed=True, policy=policy)
    assert at_once.fills == [] and at_once.alert_id is not None
    assert streamed.alert_id is not None and len(streamed.fills) == len(ZONES)
    assert asked(rt, streamed.alert_id) == Counter(), "rows were written before the commit"
    written = run_fills(rt.db, rt.settings, streamed.fills, "filler")
    assert written == sum(asked(rt, at_once.alert_id).values())
    assert rows(rt, streamed.alert_id) == rows(rt, at_once.alert_id)
    assert {d.state for d in fills_of(rt, streamed.alert_id)} == {DeadlineState.DONE}


def test_the_next_zones_wave_is_read_while_another_thread_writes(rt: Runtime) -> None:
    """`run_fills` reads the next zone while it writes the current one: the read neither
    queues behind the writer (SQLite's writers hold a lock) nor sees its rows."""
    sent = send(rt, streamed=True, zones=["Mexico City"])
    assert sent.alert_id is not None
    with write_held_open(rt.db, update(Deadline).where(Deadline.id == sent.fills[0])
                         .values(lease_until=Deadline.lease_until)):
        waves = returns_within(5, lambda: fill.read_wave(rt.db, sent.fills[0], "filler"))
        assert waves, "reading the wave waited for the writer"
    wave = waves[0]
    assert wave is not None and wave.targets == wave.fresh
    assert {t.volunteer.id for t in wave.fresh} == first_tier(rt, ["Mexico City"])
    # Another worker's fill is not read.
    assert fill.read_wave(rt.db, sent.fills[0], "someone-else") is None


def test_each_later_zones_wave_is_read_while_the_zone_before_it_is_written(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the lane's first chunk has committed, the third zone's wave is read while the
    second zone is written, not after that zone's first chunk (the writer had waited)."""
    import threading

    monkeypatch.setattr(fill, "PG_LANES", 1)
    monkeypatch.setattr(fill, "FIRST_CHUNK", 100)
    monkeypatch.setattr(fill, "CHUNK", 100)  # one chunk a zone
    sent = send(rt, streamed=True)
    zone_of = {d.id: d.zone_id for d in fills_of(rt, sent.alert_id or 0)}
    third_read = threading.Event()
    read_wave, write_chunk = fill.read_wave, fill.write_chunk
    before_second_written: list[bool] = []

    def reading(db: Any, deadline_id: int, worker: str) -> Any:
        if deadline_id == sent.fills[2]:
            third_read.set()
        return read_wave(db, deadline_id, worker)

    def writing(session: Any, alert: Any, az: Any, *args: Any, **kwargs: Any) -> Any:
        if az.zone_id == zone_of[sent.fills[1]]:
            before_second_written.append(third_read.wait(2))
        return write_chunk(session, alert, az, *args, **kwargs)

    monkeypatch.setattr(fill, "read_wave", reading)
    monkeypatch.setattr(fill, "write_chunk", writing)
    assert run_fills(rt.db, rt.settings, sent.fills, "filler") > 0
    assert before_second_written == [True]
    assert set(asked(rt, sent.alert_id or 0)) == first_tier(rt)


def test_the_collector_stays_paused_from_a_lanes_first_zone_to_its_last(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """No collection between a lane's zones: resumed after each zone, the collector's
    first run scanned everything made since (the next zone's wave, read ahead)."""
    import gc

    monkeypatch.setattr(fill, "PG_LANES", 1)
    sent = send(rt, streamed=True)
    events: list[str] = []
    fill_steps_of = fill.fill_steps

    def steps(*args: Any, **kwargs: Any) -> Iterator[int]:
        events.append("start")
        yield from fill_steps_of(*args, **kwargs)
        events.append("end")

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and events:
            events.append("collection")

    monkeypatch.setattr(fill, "fill_steps", steps)
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    gc.enable()
    gc.set_threshold(1)  # any allocation with the collector on sets one off
    gc.callbacks.append(collected)
    try:
        run_fills(rt.db, rt.settings, sent.fills, "filler")
    finally:
        gc.callbacks.remove(collected)
        gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
    last = len(events) - 1 - events[::-1].index("end")
    assert events.count("start") == len(ZONES)
    assert "collection" not in events[:last], events
    assert set(asked(rt, sent.alert_id or 0)) == first_tier(rt)


def test_a_remainder_under_half_a_chunk_joins_the_chunk_before_it(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zone of a first chunk and less than a chunk and a half more is written in two
    chunks, not in a third for the few left over: each chunk is a transaction and a
    commit."""
    from dispatcher.models import Zone
    from tests.bench.fixtures import bulk_roster

    monkeypatch.setattr(fill, "FIRST_CHUNK", 1)
    monkeypatch.setattr(fill, "CHUNK", 4)
    assert [fill.later_chunk(n) for n in (0, 3, 4, 5, 6, 7, 13)] == [0, 3, 4, 5, 4, 4, 4]
    with rt.db.session() as s:
        zone = s.scalars(select(Zone.name).order_by(Zone.id).limit(1)).one()
    bulk_roster(rt, 6 - len(first_tier(rt, [zone])), zones=1)  # its first zone
    first = first_tier(rt, [zone])
    sent = send(rt, streamed=True, zones=[zone])
    # Before: 1, 4 and 1.
    assert list(fill_steps(rt.db, rt.settings, sent.fills[0], "filler")) == [1, 5]
    assert set(asked(rt, sent.alert_id or 0)) == first
    # A lane's later zone starts with a whole chunk, sized alike: 6 with chunks of 5 is
    # one transaction (before: 5, then 1).
    monkeypatch.setattr(fill, "CHUNK", 5)
    again = send(rt, streamed=True, zones=[zone])
    assert list(fill_steps(rt.db, rt.settings, again.fills[0], "filler",
                           first_chunk=fill.CHUNK)) == [6]
    assert set(asked(rt, again.alert_id or 0)) == first


def test_a_chunk_renews_its_own_and_its_queued_fills_leases_only(rt: Runtime) -> None:
    """A lane renews its own fills' leases, never another lane's: locking a fill another
    lane is writing would wait on that lane, which may be waiting on this one."""
    sent = send(rt, streamed=True, zones=["Mexico City", "Chiapas", "Puebla"])
    mine, queued, other = sent.fills
    with rt.db.session() as s:
        s.execute(update(Deadline).where(Deadline.id.in_(sent.fills))
                  .values(lease_until=db_now(s)))
    steps = fill_steps(rt.db, rt.settings, mine, "filler", queued=[queued])
    assert next(steps) == 1
    steps.close()
    with rt.db.session() as s:
        now = db_now(s)
        leases = {d.id: d.lease_until for d in s.scalars(
            select(Deadline).where(Deadline.id.in_(sent.fills)))}
    assert leases[mine] > now and leases[queued] > now
    assert leases[other] <= now, "another lane's fill was locked and renewed"


def test_a_lane_renews_its_queued_fills_leases_as_it_goes(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk, a zone's last too, renews the leases of the fills queued behind it in
    its lane: a lane of small zones (a chunk each) keeps its queue from being taken
    over."""
    monkeypatch.setattr(fill, "FIRST_CHUNK", 100)
    monkeypatch.setattr(fill, "CHUNK", 100)  # one chunk a zone
    sent = send(rt, streamed=True)
    with rt.db.session() as s:
        s.execute(update(Deadline).where(Deadline.id.in_(sent.fills))
                  .values(lease_until=db_now(s)))
        claimed_at = db_now(s)
    seen: list[Any] = []
    write_chunk = fill.write_chunk

    def looking(session: Any, alert: Any, az: Any, *args: Any, **kwargs: Any) -> Any:
        if az.zone_id == fills_zone[sent.fills[-1]]:
            with rt.db.reading() as r:
                seen.append(r.get(Deadline, sent.fills[-1]).lease_until)  # type: ignore[union-attr]
        return write_chunk(session, alert, az, *args, **kwargs)

    fills_zone = {d.id: d.zone_id for d in fills_of(rt, sent.alert_id or 0)}
    monkeypatch.setattr(fill, "write_chunk", looking)
    run_fills(rt.db, rt.settings, sent.fills, "filler")
    assert seen and seen[0] > claimed_at, "the last zone's fill waited with its first lease"


@pytest.mark.postgres
def test_fills_are_written_in_two_lanes_at_once_on_postgresql(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each lane writes on its own connection, at the same time as the other: the second
    lane starts once the first chunk has committed (the first message leaves first), then
    a chunk of each lane waits here for one of the other's, which a single lane never
    reaches."""
    import threading

    runtime = rt_with_roster(postgres_url)
    try:
        both = threading.Barrier(2, timeout=10)
        lanes: set[str] = set()
        calls: list[str] = []
        write_chunk = fill.write_chunk

        other_lane = threading.Event()
        early: list[bool] = []

        def meeting(*args: Any, **kwargs: Any) -> Any:
            name = threading.current_thread().name
            calls.append(name)
            if name != calls[0]:
                other_lane.set()
            if len(calls) == 1:
                # The first chunk: no other lane may write before it commits.
                early.append(other_lane.wait(2))
            elif name not in lanes:
                lanes.add(name)
                both.wait()  # BrokenBarrierError when the lanes take turns
            return write_chunk(*args, **kwargs)

        monkeypatch.setattr(fill, "write_chunk", meeting)
        sent = send(runtime, streamed=True)
        written = run_fills(runtime.db, runtime.settings, sent.fills, "filler")
        assert len(lanes) == 2 and not both.broken
        assert early == [False], "the second lane wrote before the first chunk committed"
        assert sent.alert_id is not None
        assert written == sum(asked(runtime, sent.alert_id).values()) > 0
        assert {d.state for d in fills_of(runtime, sent.alert_id)} == {DeadlineState.DONE}
    finally:
        runtime.close()


def test_a_fill_left_by_a_dead_process_is_taken_over_and_asks_each_volunteer_once(
        rt: Runtime) -> None:
    gone = dead_worker()
    sent = send(rt, streamed=True, filler=gone, zones=["Mexico City"])
    assert sent.alert_id is not None
    steps = fill_steps(rt.db, rt.settings, sent.fills[0], gone)
    assert next(steps) == 1  # one chunk committed, then the process "dies"
    steps.close()
    assert sum(asked(rt, sent.alert_id).values()) == 1
    taken = claim_fills(rt, "worker-2")
    assert taken == sent.fills
    run_fills(rt.db, rt.settings, taken, "worker-2")
    assert asked(rt, sent.alert_id) == Counter(
        {v: 1 for v in first_tier(rt, ["Mexico City"])})
    with rt.db.session() as s:
        windows = s.scalars(select(Deadline).where(
            Deadline.alert_id == sent.alert_id, Deadline.kind == DeadlineKind.ESCALATE)).all()
        assert len(windows) == 1
    # The dead filler, were it to come back, writes nothing more.
    assert list(fill_steps(rt.db, rt.settings, sent.fills[0], gone)) == []


def test_a_live_fillers_claim_is_not_taken(rt: Runtime) -> None:
    sent = send(rt, streamed=True, filler="alive-elsewhere")
    assert claim_fills(rt, "worker-2") == []
    assert sent.alert_id is not None and asked(rt, sent.alert_id) == Counter()


def test_an_alert_sent_without_a_filler_is_filled_by_a_worker(rt: Runtime) -> None:
    sent = send(rt, streamed=True, filler=None)
    assert sent.alert_id is not None
    with rt.db.session() as s:
        zones = alert_status(s, sent.alert_id)["zones"]
    # A fill waiting for a worker is no deadline an officer watches.
    assert [z["next_deadline_at"] for z in zones] == [None] * len(ZONES)
    taken = claim_fills(rt, "worker-1")
    assert sorted(taken) == sorted(sent.fills)
    run_fills(rt.db, rt.settings, taken, "worker-1")
    assert sent.alert_id is not None
    assert set(asked(rt, sent.alert_id)) == first_tier(rt)


def test_a_cancel_stops_a_fill(rt: Runtime) -> None:
    sent, steps = one_chunk_written(rt)
    with rt.db.session() as s:
        cancel_alert(s, rt.settings, sent.alert_id, actor="test")
    assert list(steps) == [], "the fill wrote after the cancel"
    assert sum(asked(rt, sent.alert_id).values()) == 1
    assert [d.state for d in fills_of(rt, sent.alert_id)] == [DeadlineState.CANCELLED]
    with rt.db.session() as s:
        pending = s.scalars(select(Delivery.id).where(
            Delivery.alert_id == sent.alert_id, Delivery.purpose == DeliveryPurpose.ALERT,
            Delivery.state == DeliveryState.PENDING)).all()
    assert pending == []


def test_a_zone_covered_mid_fill_still_asks_the_rest_but_sets_no_window(rt: Runtime) -> None:
    sent, steps = one_chunk_written(rt)
    with rt.db.session() as s:
        first = s.scalars(select(Recipient).where(Recipient.alert_id == sent.alert_id)).one()
        outcome = acks.acknowledge(s, rt.settings, first, at=first.due_at, via="sms")
    assert outcome.zone_acknowledged
    assert [d.state for d in fills_of(rt, sent.alert_id)] == [DeadlineState.CLAIMED]
    list(steps)
    assert asked(rt, sent.alert_id) == Counter(
        {v: 1 for v in first_tier(rt, ["Mexico City"])})
    with rt.db.session() as s:
        live = s.scalars(select(Deadline.kind).where(
            Deadline.alert_id == sent.alert_id,
            Deadline.state.in_([DeadlineState.PENDING, DeadlineState.CLAIMED]))).all()
        zone = s.scalars(select(AlertZone).where(AlertZone.alert_id == sent.alert_id)).one()
    assert live == [] and zone.state == ZoneState.ACKNOWLEDGED


def test_each_mode_does_not_cover_a_zone_before_its_duties_are_all_written(
        rt: Runtime) -> None:
    sent, steps = one_chunk_written(rt, policy="each")
    with rt.db.session() as s:
        first = s.scalars(select(Recipient).where(Recipient.alert_id == sent.alert_id)).one()
        outcome = acks.acknowledge(s, rt.settings, first, at=first.due_at, via="sms")
    # One duty of several answered: the others are not written yet, but still count.
    assert not outcome.zone_acknowledged
    list(steps)
    with rt.db.session() as s:
        others = s.scalars(select(Recipient).where(
            Recipient.alert_id == sent.alert_id, Recipient.id != first.id)).all()
        for rec in others:
            outcome = acks.acknowledge(s, rt.settings, rec, at=rec.due_at, via="sms")
    assert outcome.zone_acknowledged


def test_an_update_mid_fill_reaches_those_written_before_and_after(rt: Runtime) -> None:
    sent, steps = one_chunk_written(rt)
    with rt.db.session() as s:
        update_alert(s, rt.settings, sent.alert_id, "Meeting point moved", actor="test")
    list(steps)
    with rt.db.session() as s:
        updated = Counter(s.scalars(select(Recipient.volunteer_id).join(
            Delivery, Delivery.recipient_id == Recipient.id).where(
            Recipient.alert_id == sent.alert_id, Delivery.purpose == DeliveryPurpose.UPDATE)))
        states = set(s.scalars(select(Recipient.state).where(
            Recipient.alert_id == sent.alert_id)))
    primaries = first_tier(rt, ["Mexico City"])
    assert set(updated) == primaries and len(primaries) > 1
    assert states <= {RecipientState.PENDING}


def test_a_dry_run_and_a_small_alert_are_never_streamed(rt: Runtime) -> None:
    settings = rt.settings.model_copy(update={"stream_above": 0})
    with rt.db.session() as session:
        post = ensure_post(session, settings, rt.vault)
        dry = send_alert(session, settings, post, AlertRequest(zones=ZONES, body="x"),
                         dry_run=True)
    assert dry.preview is not None and dry.fills == []
    assert rt.settings.stream_above >= 1000
    small = send(rt, streamed=False)
    assert small.fills == [] and small.preview is not None


def test_the_api_answers_a_streamed_alert_with_its_preview_and_a_worker_fills_it(
        rt: Runtime) -> None:
    from fastapi.testclient import TestClient

    from dispatcher.web.app import create_app
    from dispatcher.web.auth import add_officer
    from tests.web.conftest import bearer

    rt.settings = rt.settings.model_copy(update={"stream_above": 0})
    with rt.db.session() as s:
        token = add_officer(s, "officer-1", "officer")
    with TestClient(create_app(rt, run_worker=False)) as client:
        r = client.post("/api/alerts", json={"zones": ZONES, "body": "Streamed"},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["preview"]["reply_code"] == answer["reply_code"]
    taken = claim_fills(rt, "worker-1")
    assert len(taken) == len(ZONES)
    run_fills(rt.db, rt.settings, taken, "worker-1")
    with rt.db.session() as s:
        sms = s.scalars(select(Delivery.id).where(Delivery.alert_id == answer["id"],
                                                  Delivery.channel == "sms")).all()
    assert answer["preview"]["sms"] == len(sms) > 0
    assert sorted(z["zone"] for z in answer["preview"]["zones"]) == sorted(ZONES)


def unreachable(rt: Runtime, name: str) -> None:
    """Every contact path of `name` opted out: asked, they are written failed."""
    with rt.db.session() as s:
        vid = s.scalars(select(Volunteer.id).where(Volunteer.name == name)).one()
        s.execute(update(Contact).where(Contact.volunteer_id == vid).values(opted_out=True))


def test_a_zone_covered_mid_fill_with_stand_down_asks_nobody_more(rt: Runtime) -> None:
    sent, steps = one_chunk_written(rt, policy="standdown")
    with rt.db.session() as s:
        first = s.scalars(select(Recipient).where(Recipient.alert_id == sent.alert_id)).one()
        assert acks.acknowledge(s, rt.settings, first, at=first.due_at,
                                via="sms").zone_acknowledged
    assert list(steps) == []
    assert sum(asked(rt, sent.alert_id).values()) == 1
    assert [d.state for d in fills_of(rt, sent.alert_id)] == [DeadlineState.DONE]


def test_each_mode_covers_a_zone_whose_duties_were_all_answered_while_it_filled(
        rt: Runtime) -> None:
    # Mexico City's primaries by name: Daniel Ortega (the first chunk), Emily Carter (the
    # last, written failed: no duty of hers is left to answer).
    unreachable(rt, "Emily Carter")
    sent, steps = one_chunk_written(rt, policy="each")
    with rt.db.session() as s:
        daniel = s.scalars(select(Recipient).where(Recipient.alert_id == sent.alert_id)).one()
        assert not acks.acknowledge(s, rt.settings, daniel, at=daniel.due_at,
                                    via="sms").zone_acknowledged
    list(steps)
    with rt.db.session() as s:
        zone = s.scalars(select(AlertZone).where(AlertZone.alert_id == sent.alert_id)).one()
    assert zone.state == ZoneState.ACKNOWLEDGED


def test_a_tier_dead_when_its_fill_ends_escalates_at_once(rt: Runtime) -> None:
    unreachable(rt, "Emily Carter")
    sent, steps = one_chunk_written(rt)
    with rt.db.session() as s:
        for d in s.scalars(select(Delivery).where(Delivery.alert_id == sent.alert_id)).all():
            lifecycle.move(d, DeliveryState.FAILED)
            on_dead_path(s, d, "unknown number")
        daniel = s.scalars(select(Recipient).where(Recipient.alert_id == sent.alert_id)).one()
        assert daniel.state == RecipientState.FAILED
    list(steps)
    with rt.db.session() as s:
        window = s.scalars(select(Deadline).where(
            Deadline.alert_id == sent.alert_id, Deadline.kind == DeadlineKind.ESCALATE,
            Deadline.state == DeadlineState.PENDING).order_by(Deadline.due_at)).first()
        assert window is not None and window.due_at <= db_now(s)


def test_a_workers_deadline_claim_takes_the_due_fills_along(rt: Runtime) -> None:
    """The worker claims fills in its deadlines' transaction (`fire_due(fills=...)`);
    firing without a list leaves them to a caller that writes them."""
    sent = send(rt, streamed=True, filler=None)
    assert fire_due(rt.db, rt.settings, "w1") == 0
    fills: list[int] = []
    assert fire_due(rt.db, rt.settings, "w1", fills) == 0
    assert sorted(fills) == sorted(sent.fills)
    assert {d.claimed_by for d in fills_of(rt, sent.alert_id or 0)} == {"w1"}


@pytest.mark.postgres
def test_a_cancel_waiting_for_a_fill_being_written_holds_the_queued_ones_at_once(
        postgres_url: str) -> None:
    """A cancel waits for the chunk a lane is writing, but takes the fills nobody holds
    first: a lane cannot start one of them meanwhile (it had written every zone while the
    cancel waited)."""
    import threading

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from tests.helpers import wait_until

    runtime = rt_with_roster(postgres_url)
    try:
        sent = send(runtime, streamed=True)
        assert sent.alert_id is not None
        writing, queued = sent.fills[0], sent.fills[1]
        lane = runtime.db.engine.connect()
        lane.execute(text("SELECT id FROM deadlines WHERE id = :id FOR UPDATE"),
                     {"id": writing})  # a chunk of this fill is being written
        xid = lane.execute(text("SELECT pg_current_xact_id()::text")).scalar()
        cancelled: list[int] = []
        cancel = threading.Thread(target=lambda: cancelled.append(runtime.db.run(
            lambda s: cancel_alert(s, runtime.settings, sent.alert_id or 0, actor="test"))))
        cancel.start()
        try:
            with runtime.db.engine.connect() as probe:
                wait_until(lambda: probe.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' "
                    "AND NOT granted AND transactionid::text = :xid"), {"xid": xid}).scalar(),
                    what="the cancel waits for the lane")
            other_lane = runtime.db.engine.connect()
            try:
                with pytest.raises(OperationalError, match="could not obtain lock"):
                    other_lane.execute(text(
                        "SELECT id FROM deadlines WHERE id = :id FOR UPDATE NOWAIT"),
                        {"id": queued})
            finally:
                other_lane.close()
        finally:
            lane.rollback()
            lane.close()
            cancel.join(30)
        assert cancelled
        assert {d.state for d in fills_of(runtime, sent.alert_id)} == {DeadlineState.CANCELLED}
    finally:
        runtime.close()
