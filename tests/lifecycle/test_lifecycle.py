"""The one owner of state: allowed moves pass, every other move is refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import bindparam, select

from dispatcher import lifecycle
from dispatcher.domain import (
    AlertState,
    DeadlineState,
    DeliveryState,
    RecipientState,
    ZoneState,
)
from dispatcher.lifecycle import IllegalTransition
from dispatcher.models import Alert, AlertZone, Deadline, Delivery, Recipient, table
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster

MODELS = [(Alert, AlertState), (AlertZone, ZoneState), (Recipient, RecipientState),
          (Delivery, DeliveryState), (Deadline, DeadlineState)]
PACKAGE = Path(__file__).resolve().parents[2] / "dispatcher"


@pytest.mark.parametrize(("model", "states"), MODELS)
def test_every_move_is_allowed_or_refused_naming_both_states(model, states) -> None:
    for current in states:
        for new in states:
            obj = model()
            obj.state = current  # the test sets up a state by hand; code never does
            if lifecycle.allowed(model, current, new):
                assert lifecycle.move(obj, new) or current == new
                assert obj.state == new
            elif current == new:
                assert lifecycle.move(obj, new) is False  # already there: nothing to do
            else:
                with pytest.raises(IllegalTransition) as err:
                    lifecycle.move(obj, new)
                assert current.value in str(err.value) and new.value in str(err.value)
                assert obj.state == current


@given(st.lists(st.sampled_from(list(RecipientState)), max_size=12))
def test_a_recipient_only_ever_takes_allowed_moves(moves: list[RecipientState]) -> None:
    rec = Recipient()
    rec.state = RecipientState.PENDING
    for new in moves:
        before = rec.state
        try:
            lifecycle.move(rec, new)
        except IllegalTransition:
            assert rec.state == before
        else:
            assert rec.state == before == new or new in lifecycle.TRANSITIONS[Recipient][before]
    # Acknowledged is final.
    if rec.state == RecipientState.ACKNOWLEDGED:
        for new in RecipientState:
            if new != RecipientState.ACKNOWLEDGED:
                with pytest.raises(IllegalTransition):
                    lifecycle.move(rec, new)


def test_property_tests_are_not_timed() -> None:
    """The example above failed once on a machine loaded to 10 by hypothesis's default
    200 ms deadline; the suite's profile (tests/conftest.py) has none, in CI or not."""
    from hypothesis import settings

    assert settings.default.deadline is None


def test_a_bulk_move_refuses_a_source_the_table_does_not_allow() -> None:
    with pytest.raises(IllegalTransition, match="from acknowledged to pending"):
        lifecycle.move_statement(Recipient, RecipientState.PENDING,
                                 only_from=[RecipientState.ACKNOWLEDGED])


def test_a_bulk_move_leaves_rows_it_may_not_move(sqlite_url: str) -> None:
    rt: Runtime = rt_with_roster(sqlite_url)
    with rt.db.session() as session:
        alert = lifecycle.start(Alert(post_id=1, kind="security", title="t", reply_code="1234",
                                      ack_window_seconds=60), AlertState.SENDING)
        session.add(alert)
        session.flush()
        alert_id = alert.id
    with rt.db.session() as session:
        # An active alert may complete; a draft may not.
        assert lifecycle.move_rows(session, Alert, AlertState.COMPLETED,
                                   Alert.id == alert_id) == 1
        assert lifecycle.move_rows(session, Alert, AlertState.ACTIVE, Alert.id == alert_id) == 0
    with rt.db.session() as session:
        stored = session.get(Alert, alert_id)
        assert stored is not None and stored.state is AlertState.COMPLETED
    rt.close()


def test_a_state_column_refuses_a_value_outside_its_enum(sqlite_url: str) -> None:
    rt = rt_with_roster(sqlite_url)
    with pytest.raises(Exception, match="nonsense"), rt.db.session() as session:
        session.add(Alert(post_id=1, kind="security", title="t", reply_code="1",
                          ack_window_seconds=60, state="nonsense"))
        session.flush()
    rt.close()


#: Assigning a state: `x.state = ...`, `state=SomeState.X` in a constructor or `.values()`.
ASSIGNMENT = re.compile(r"\.state\s*=(?!=)|\bstate\s*=\s*\w*State\.|values\([^)]*\bstate\s*=")


def test_no_module_but_the_lifecycle_assigns_a_state() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "lifecycle.py" and path.parent == PACKAGE:
            continue
        if "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ASSIGNMENT.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


STATE_VALUES = {s.value for _, states in MODELS for s in states}
#: A state compared or stored as a bare string: `== "waiting"`, `in ("completed", ...`.
STATE_LITERAL = re.compile(r"""(==|!=|\bin\s*[\(\[{]|state\s*[=:])\s*["'](\w+)["']""")


def test_no_state_is_spelled_as_a_string_outside_the_domain() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "domain.py" or "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in STATE_LITERAL.finditer(line):
                if match.group(2) in STATE_VALUES:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_refused_move_names_the_model_the_row_and_both_states() -> None:
    rec = Recipient(id=7)
    rec.state = RecipientState.ACKNOWLEDGED  # the test sets up a state by hand
    with pytest.raises(IllegalTransition) as err:
        lifecycle.move(rec, RecipientState.PENDING)
    assert str(err.value) == "recipient 7 cannot move from acknowledged to pending"
    with pytest.raises(IllegalTransition) as err:
        lifecycle.check(AlertZone, ZoneState.UNREACHED, ZoneState.WAITING)
    assert str(err.value) == "alert zone cannot move from unreached to waiting"


def test_a_new_object_moves_from_its_models_default_state() -> None:
    alert = Alert()
    assert lifecycle.move(alert, AlertState.SENDING) and alert.state is AlertState.SENDING
    with pytest.raises(IllegalTransition, match="alert cannot move from draft to completed"):
        lifecycle.move(Alert(), AlertState.COMPLETED)
    assert lifecycle.move(Deadline(), DeadlineState.PENDING) is False  # already there


def test_a_new_object_starts_in_its_default_or_in_a_state_reachable_from_it() -> None:
    assert lifecycle.start(Alert(), AlertState.DRAFT).state is AlertState.DRAFT
    assert lifecycle.start(Alert(), "sending").state is AlertState.SENDING
    assert lifecycle.start(Recipient(), RecipientState.FAILED).state is RecipientState.FAILED
    with pytest.raises(IllegalTransition, match="alert cannot move from draft to completed"):
        lifecycle.start(Alert(), AlertState.COMPLETED)


def test_a_state_is_reached_only_from_the_sources_its_table_lists() -> None:
    assert lifecycle.sources(Deadline, DeadlineState.CANCELLED) == [
        DeadlineState.PENDING, DeadlineState.CLAIMED]
    assert lifecycle.sources(Alert, "draft") == []
    with pytest.raises(IllegalTransition, match="no alert may move to draft"):
        lifecycle.move_statement(Alert, AlertState.DRAFT)


def test_a_bulk_move_narrowed_to_some_sources_leaves_the_others(sqlite_url: str) -> None:
    rt = rt_with_roster(sqlite_url)
    with rt.db.session() as session:
        alerts = [lifecycle.start(Alert(post_id=1, kind="security", title="t", reply_code=code,
                                        ack_window_seconds=60), state)
                  for code, state in (("1", AlertState.DRAFT), ("2", AlertState.SENDING))]
        session.add_all(alerts)
        session.flush()
        # Draft and sending may both be cancelled; only drafts are asked for.
        assert lifecycle.move_rows(session, Alert, AlertState.CANCELLED, Alert.post_id == 1,
                                   only_from=[AlertState.DRAFT]) == 1
    with rt.db.session() as session:
        assert [a.state for a in session.scalars(select(Alert).order_by(Alert.id))] == [
            AlertState.CANCELLED, AlertState.SENDING]
    rt.close()


def test_a_bulk_move_includes_rows_the_session_has_not_written_yet(sqlite_url: str) -> None:
    rt = rt_with_roster(sqlite_url)
    with rt.db.session() as session:
        session.add(lifecycle.start(Alert(post_id=1, kind="security", title="t",
                                          reply_code="1", ack_window_seconds=60),
                                    AlertState.SENDING))
        assert lifecycle.move_rows(session, Alert, AlertState.CANCELLED,
                                   Alert.post_id == 1) == 1
    with rt.db.session() as session:
        assert session.scalars(select(Alert.state)).all() == [AlertState.CANCELLED]
    rt.close()


def test_a_statement_built_once_moves_only_rows_in_an_allowed_state(sqlite_url: str) -> None:
    rt = rt_with_roster(sqlite_url)
    activate = lifecycle.move_statement(Alert, AlertState.ACTIVE,
                                        table(Alert).c.id == bindparam("a_id"))
    with rt.db.session() as session:
        alerts = [lifecycle.start(Alert(post_id=1, kind="security", title="t", reply_code=code,
                                        ack_window_seconds=60), state)
                  for code, state in (("1", AlertState.DRAFT), ("2", AlertState.SENDING))]
        session.add_all(alerts)
        session.flush()
        conn = session.connection()
        draft, sending = (a.id for a in alerts)
        assert conn.execute(activate, {"a_id": draft}).rowcount == 0  # a draft is not sent
        assert conn.execute(activate, {"a_id": sending}).rowcount == 1
    with rt.db.session() as session:
        assert [a.state for a in session.scalars(select(Alert).order_by(Alert.id))] == [
            AlertState.DRAFT, AlertState.ACTIVE]
    rt.close()
