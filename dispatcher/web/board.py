"""The alert's board: the live zone board, its events, and what an officer does from it
(call the next volunteer, update, cancel, attach a reply).

The board renders the status JSON (`dispatcher.status`), first from a JSON block in the
page, then from every change the server sends as a server-sent event. Phone numbers in the
status JSON are masked; officers get the ones to call in clear from `/alerts/{id}/phones`,
and every such read is audited like a clear roster read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.board_feed import zone_page
from dispatcher.dispatch.versions import RECEIVED, cancel_alert, update_alert
from dispatcher.domain import AlertState, Role
from dispatcher.errors import AlnError, InvalidInput, NotFound
from dispatcher.models import Alert, Recipient
from dispatcher.replies.attach import attach_reply
from dispatcher.runtime import Runtime
from dispatcher.status import clear_phones, find_alert
from dispatcher.web.app_state import boards_of, runtime_of, wake_worker
from dispatcher.web.auth import Caller, check_csrf
from dispatcher.web.board_hub import seq_of, sse
from dispatcher.web.dashboard import form_of, officer_or_login, page
from dispatcher.web.limits import MAX_ROW_ID, RowId

router = APIRouter(include_in_schema=False)
#: How long one event stream lasts before the browser reconnects (which it does at once,
#: showing "Reconnecting…", and gets what it missed): a stream that never ends would hold a
#: stopping server open.
BOARD_STREAM_SECONDS = 300.0
#: How soon (ms) the browser reconnects after a stream ends or the server goes away.
BOARD_RETRY_MS = 1000
#: Longest silence on a stream: a comment line keeps proxies from closing it.
BOARD_KEEPALIVE_SECONDS = 15.0
#: Most numbers one lookup reveals (a zone's tier is a handful of people).
MAX_PHONES_PER_LOOKUP = 50
#: Longest zone name asked for (the column's length).
MAX_ZONE_NAME = 200
#: Longest Last-Event-ID taken (ours are "<8 hex>-<number>").
MAX_EVENT_ID = 40


def _check_alert(rt: Runtime, alert_id: int) -> None:
    with rt.db.reading() as session:
        find_alert(session, alert_id)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '</script>' can close it early."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e")


def _board_page(request: Request, caller: Caller, alert_id: int,
                http_status: int = 200, **values: Any) -> HTMLResponse:
    status = boards_of(request).snapshot(alert_id)
    context = {"csrf": caller.csrf, "officer": caller.at_least(Role.OFFICER)}
    return page("board.html", caller, http_status=http_status, status=status,
                status_json=_script_json(status), context_json=_script_json(context),
                **values)


@router.get("/alerts/{alert_id}")
def board(alert_id: RowId, request: Request) -> HTMLResponse:
    return _board_page(request, officer_or_login(request), alert_id)


@router.get("/alerts/{alert_id}/events")
async def board_events(alert_id: RowId, request: Request,
                       last: str | None = Query(default=None, max_length=MAX_EVENT_ID)
                       ) -> StreamingResponse:
    """Server-sent events: what changed on the board, from this process's one producer
    for the alert. A browser that says which event it saw last (`Last-Event-ID` when it
    reconnects, `?last=` with the id its page was rendered at) gets the events it missed;
    when those are no longer kept, or it says nothing, a snapshot of the whole board."""
    officer_or_login(request)
    hub = boards_of(request)
    await run_in_threadpool(_check_alert, runtime_of(request), alert_id)  # 404 now
    seen = (request.headers.get("last-event-id") or last or "")[:MAX_EVENT_ID]

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {BOARD_RETRY_MS}\n\n"
        loop = asyncio.get_running_loop()
        ends = loop.time() + BOARD_STREAM_SECONDS
        async with hub.watch(alert_id) as queue:  # from here on no event is missed
            missed = hub.feed(alert_id).missed(seen) if seen else None
            if missed is None:
                snapshot = await run_in_threadpool(hub.snapshot, alert_id)
                sent = seq_of(snapshot["event_id"])
                yield sse(snapshot, "snapshot")
            else:
                sent = seq_of(seen)
                for event in missed:
                    sent = seq_of(event["event_id"])
                    yield sse(event, "change")
            while (left := ends - loop.time()) > 0 and not await request.is_disconnected():
                try:
                    item = await asyncio.wait_for(queue.get(),
                                                  min(left, BOARD_KEEPALIVE_SECONDS))
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    break  # this browser fell behind: it reconnects and catches up
                seq, text = item
                if seq > sent:
                    sent = seq
                    yield text

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/alerts/{alert_id}/volunteers")
def volunteers(alert_id: RowId, request: Request,
               zone: str = Query(default="", max_length=MAX_ZONE_NAME),
               after: int | None = Query(default=None, gt=0, le=MAX_ROW_ID)) -> JSONResponse:
    """One page of a zone's recipients (the board lists a zone's first page, then these),
    with `more_after`: the id to ask the next page after, or null after the last."""
    officer_or_login(request)
    if not zone:
        raise InvalidInput("name the zone whose volunteers to list (?zone=...)")
    with runtime_of(request).db.reading() as session:
        rows, more_after = zone_page(session, alert_id, zone, after)
    return JSONResponse({"zone": zone, "recipients": rows, "more_after": more_after},
                        headers={"Cache-Control": "no-store"})


@router.get("/alerts/{alert_id}/phones")
def phones(alert_id: RowId, request: Request,
           ids: list[int] = Query(default=[], max_length=MAX_PHONES_PER_LOOKUP)
           ) -> JSONResponse:
    """The numbers to call, in clear: officers only, and every read is audited."""
    caller = officer_or_login(request, Role.OFFICER)
    wanted = sorted({i for i in ids if 0 < i <= MAX_ROW_ID})
    rt = runtime_of(request)
    with rt.db.session() as session:
        found = clear_phones(session, rt.vault, alert_id, wanted)
        audit.record(session, f"officer:{caller.name}", "alert.phones_read",
                     alert_id=alert_id, recipients=sorted(found))
    return JSONResponse({str(k): v for k, v in found.items()},
                        headers={"Cache-Control": "no-store"})


def _standdown_count(rt: Runtime, alert_id: int) -> tuple[Alert, int]:
    """The alert, and how many stand-down messages cancelling it would queue now."""
    with rt.db.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        count = 0
        for rec in session.scalars(select(Recipient).where(
                Recipient.alert_id == alert_id, Recipient.state.in_(RECEIVED))):
            count += len([c for c in rec.volunteer.contacts
                          if not c.opted_out and not c.dead_reason
                          and (not alert.channels or c.channel in alert.channels)])
        session.expunge(alert)
        return alert, count


@router.get("/alerts/{alert_id}/cancel")
def confirm_cancel(alert_id: RowId, request: Request) -> HTMLResponse:
    """The confirmation page: what cancelling will do, before anything is done."""
    caller = officer_or_login(request, Role.OFFICER)
    alert, count = _standdown_count(runtime_of(request), alert_id)
    return page("confirm_cancel.html", caller, alert=alert, messages=count,
                draft=alert.state == AlertState.DRAFT,
                done=alert.state == AlertState.CANCELLED)


async def officer_action(request: Request, alert_id: int,
                         act: Callable[[Session, Runtime, str], object]) -> RedirectResponse:
    """One board action: an officer, a valid form token, `act(session, runtime, actor)` in
    one transaction, the worker woken, and back to the board."""
    caller = officer_or_login(request, Role.OFFICER)
    check_csrf(caller, (await form_of(request)).get("csrf"))
    rt = runtime_of(request)

    def work() -> None:
        with rt.db.session() as session:
            act(session, rt, f"officer:{caller.name}")

    await run_in_threadpool(work)
    wake_worker(request)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.post("/alerts/{alert_id}/cancel")
async def cancel(alert_id: RowId, request: Request) -> RedirectResponse:
    return await officer_action(request, alert_id, lambda session, rt, actor: cancel_alert(
        session, rt.settings, alert_id, actor=actor))


@router.post("/alerts/{alert_id}/update", response_model=None)
async def update(alert_id: RowId, request: Request) -> HTMLResponse | RedirectResponse:
    """The alert's next version, from the board (same code, zones and escalation)."""
    body = str((await form_of(request)).get("body") or "")
    try:
        return await officer_action(request, alert_id, lambda session, rt, actor: update_alert(
            session, rt.settings, alert_id, body, actor=actor))
    except AlnError as exc:
        caller = officer_or_login(request, Role.OFFICER)
        return _board_page(request, caller, alert_id, http_status=400,
                           update_error=str(exc), update_body=body)


@router.post("/alerts/{alert_id}/replies/{response_id}/attach")
async def attach(alert_id: RowId, response_id: RowId, request: Request) -> RedirectResponse:
    """An officer attaches an ambiguous YES shown on this alert to it (audited)."""
    return await officer_action(request, alert_id, lambda session, rt, actor: attach_reply(
        session, rt.settings, response_id, actor=actor))
