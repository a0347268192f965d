"""Access to what the app holds, for routers (no module-level globals)."""

from __future__ import annotations

from fastapi import Request

from dispatcher.replies.intake import Intake
from dispatcher.runtime import Runtime
from dispatcher.web.board_hub import BoardHub


def runtime_of(request: Request) -> Runtime:
    return request.app.state.rt  # type: ignore[no-any-return]


def wake_worker(request: Request) -> None:
    """Make the in-process worker act now (an ack cancels, a dead path escalates)."""
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()


def intake_of(request: Request) -> Intake:
    return request.app.state.intake  # type: ignore[no-any-return]


def boards_of(request: Request) -> BoardHub:
    return request.app.state.boards  # type: ignore[no-any-return]
