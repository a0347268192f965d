"""Acknowledgements: a volunteer's answer covers their zone, stops that zone's chain and
completes the alert only when no zone is left waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from dispatcher.acks import acknowledge
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import AlertRequest, send_alert
from dispatcher.domain import OPEN_ALERT_STATES, AlertState, DeadlineState, ZoneState
from dispatcher.models import Alert, AlertZone, Deadline, Recipient, Volunteer, Zone
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster


@pytest.fixture
def rt(sqlite_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(sqlite_url)
    yield runtime
    runtime.close()


def send(rt: Runtime, zones: list[str]) -> int:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        sent = send_alert(session, rt.settings, post,
                          AlertRequest(zones=zones, body="Test", ack_window_seconds=600))
        assert sent.alert_id is not None
        return sent.alert_id


def ack(rt: Runtime, alert_id: int, name: str) -> None:
    """`name` acknowledges `alert_id`, as the reply path does."""
    with rt.db.session() as session:
        rec = session.scalars(select(Recipient).join(Volunteer).where(
            Recipient.alert_id == alert_id, Volunteer.name == name)).one()
        acknowledge(session, rt.settings, rec, at=db_now(session), via="sms")


def alert_of(rt: Runtime, alert_id: int) -> tuple[AlertState, bool]:
    """The alert's state, and whether it has a closing time."""
    with rt.db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        return alert.state, alert.closed_at is not None


def deadlines(rt: Runtime) -> dict[tuple[int, str], set[DeadlineState]]:
    """Each (alert, zone)'s deadline states."""
    with rt.db.session() as session:
        rows = session.execute(select(Deadline.alert_id, Zone.name, Deadline.state)
                               .join(Zone, Zone.id == Deadline.zone_id)).all()
    found: dict[tuple[int, str], set[DeadlineState]] = {}
    for alert_id, zone, state in rows:
        found.setdefault((alert_id, zone), set()).add(state)
    return found


def test_an_alert_completes_only_when_no_zone_is_waiting(rt: Runtime) -> None:
    alert_id = send(rt, ["Chiapas", "Oaxaca"])
    ack(rt, alert_id, "Ana Morales")  # Chiapas covered, Oaxaca still waiting
    state, closed = alert_of(rt, alert_id)
    assert state in OPEN_ALERT_STATES and not closed
    ack(rt, alert_id, "Victor Castillo")  # Oaxaca covered: nothing waits any more
    assert alert_of(rt, alert_id) == (AlertState.COMPLETED, True)


def test_covering_a_zone_cancels_only_that_zones_and_that_alerts_deadlines(
        rt: Runtime) -> None:
    first = send(rt, ["Chiapas", "Oaxaca"])
    second = send(rt, ["Chiapas"])
    assert all(states == {DeadlineState.PENDING} for states in deadlines(rt).values())
    ack(rt, first, "Ana Morales")
    assert deadlines(rt) == {
        (first, "Chiapas"): {DeadlineState.CANCELLED},
        (first, "Oaxaca"): {DeadlineState.PENDING},
        (second, "Chiapas"): {DeadlineState.PENDING},
    }
    with rt.db.session() as session:
        zones = {(az.alert_id, az.zone.name): az.state
                 for az in session.scalars(select(AlertZone))}
    assert zones == {(first, "Chiapas"): ZoneState.ACKNOWLEDGED,
                     (first, "Oaxaca"): ZoneState.WAITING,
                     (second, "Chiapas"): ZoneState.WAITING}
