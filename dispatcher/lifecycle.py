"""The one owner of state: every move of an alert, alert zone, recipient, delivery or
deadline goes through here, whether on one ORM object or on rows in bulk.

The allowed moves are the tables in `dispatcher.domain`; a move they do not allow
raises `IllegalTransition` naming both states, so a second copy of a rule somewhere
else cannot quietly disagree with the first. Other modules decide *when* to move
(an acknowledgement, a receipt, a deadline); only this one writes a state.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, or_, update
from sqlalchemy.orm import Session

from dispatcher.domain import (
    ALERT_TRANSITIONS,
    DEADLINE_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    RECIPIENT_TRANSITIONS,
    ZONE_TRANSITIONS,
    AlertState,
    DeadlineState,
    DeliveryState,
    RecipientState,
    ZoneState,
)
from dispatcher.errors import AlnError
from dispatcher.models import Alert, AlertZone, Deadline, Delivery, Recipient, table

#: Each stateful model, with its allowed moves.
TRANSITIONS: dict[type[Any], dict[Any, frozenset[Any]]] = {
    Alert: ALERT_TRANSITIONS,
    AlertZone: ZONE_TRANSITIONS,
    Recipient: RECIPIENT_TRANSITIONS,
    Delivery: DELIVERY_TRANSITIONS,
    Deadline: DEADLINE_TRANSITIONS,
}
STATES: dict[type[Any], type[StrEnum]] = {
    Alert: AlertState, AlertZone: ZoneState, Recipient: RecipientState,
    Delivery: DeliveryState, Deadline: DeadlineState,
}
#: What a model is called in an error.
NAMES = {Alert: "alert", AlertZone: "alert zone", Recipient: "recipient",
         Delivery: "delivery", Deadline: "deadline"}


class IllegalTransition(AlnError):
    """A move the state machine does not allow; a bug, never an officer's mistake."""

    status = 500


def allowed(model: type[Any], current: StrEnum | str, new: StrEnum | str) -> bool:
    states = STATES[model]
    return states(new) in TRANSITIONS[model][states(current)]


def check(model: type[Any], current: StrEnum | str, new: StrEnum | str,
          ident: object = None) -> None:
    """Raise `IllegalTransition` unless `current` may become `new`."""
    if not allowed(model, current, new):
        which = f" {ident}" if ident is not None else ""
        raise IllegalTransition(
            f"{NAMES[model]}{which} cannot move from {STATES[model](current).value} "
            f"to {STATES[model](new).value}")


def sources(model: type[Any], new: StrEnum | str) -> list[Any]:
    """Every state from which `new` may be reached."""
    target = STATES[model](new)
    return [state for state, moves in TRANSITIONS[model].items() if target in moves]


def move(obj: Any, new: StrEnum | str) -> bool:
    """Move one ORM object; False (and nothing written) when it is already there.

    A move to the state the object is in counts as done unless the table lists that
    self-move (a claim taken over): callers race with other processes, and "already
    acknowledged" is an answer, not an error.
    """
    model = type(obj)
    current = obj.state if obj.state is not None else _default(model)
    states = STATES[model]
    if states(current) == states(new) and not allowed(model, current, new):
        return False
    check(model, current, new, getattr(obj, "id", None))
    obj.state = states(new)
    return True


def start(obj: Any, initial: StrEnum | str) -> Any:
    """A new object's first state, other than its model's default (a recipient nobody
    can reach starts failed; an alert created to be sent at once starts sending)."""
    obj.state = first_state(type(obj), initial)
    return obj


def first_state(model: type[Any], initial: StrEnum | str) -> StrEnum:
    """The state a new row of `model` may be written in: its default, or one the default
    may move to. `start` for one object; rows written in bulk (`dispatcher.bulk`) take
    their state from here too."""
    default = _default(model)
    if STATES[model](initial) != default:
        check(model, default, initial)
    return STATES[model](initial)


def _default(model: type[Any]) -> StrEnum:
    """The state a new row of `model` starts in when nobody says otherwise."""
    default: Any = table(model).c.state.default
    return STATES[model](default.arg)


def move_rows(session: Session, model: type[Any], new: StrEnum | str,
              *where: ColumnElement[bool], only_from: Iterable[StrEnum | str] | None = None,
              **values: object) -> int:
    """Move every row matching `where` whose state may become `new` (or, narrower, is in
    `only_from`); other columns set from `values`. Returns how many rows moved.

    The session's pending changes are flushed first (an ORM statement); objects already
    loaded are not refreshed, so read rows again after a bulk move.
    """
    stmt = move_statement(model, new, *where, only_from=only_from, core=False, **values)
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def move_statement(model: type[Any], new: StrEnum | str, *where: ColumnElement[bool],
                   only_from: Iterable[StrEnum | str] | None = None, core: bool = True,
                   **values: object) -> Update:
    """The UPDATE behind `move_rows`; `core` builds it on the table, for a statement built
    once and run many times on the Core connection."""
    states = STATES[model]
    froms = [states(s) for s in only_from] if only_from is not None else sources(model, new)
    for current in froms:
        check(model, current, new)
    if not froms:
        raise IllegalTransition(f"no {NAMES[model]} may move to {states(new).value}")
    target: Any = table(model) if core else model
    column = target.c.state if core else model.state
    # Spelled out rather than IN (...): a literal list is an "expanding" parameter that
    # SQLAlchemy re-renders on every execution, and some of these run per reply.
    return (update(target).where(*where, or_(*(column == s.value for s in froms)))
            .values(state=states(new).value, **values))


#: The acknowledgement path's statement, built once: a recipient not yet acknowledged
#: becomes acknowledged (bind `r_id`, `r_at`, `r_via`).
ACKNOWLEDGE_RECIPIENT = move_statement(
    Recipient, RecipientState.ACKNOWLEDGED, table(Recipient).c.id == bindparam("r_id"),
    acknowledged_at=bindparam("r_at"), acknowledged_via=bindparam("r_via"))
