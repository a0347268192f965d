"""The dashboard: server-rendered pages, a live zone board by server-sent events.

No front-end build step: Jinja2 pages, and one small script file for the live board
(`static/board.js`; the CSP allows no inline script, so its data comes in a JSON block). Every
page needs a logged-in officer (else a redirect to /login); every form POST
carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.dispatch.versions import cancel_alert
from dispatcher.domain import Role
from dispatcher.errors import AlnError
from dispatcher.models import Alert, Zone
from dispatcher.replies.attach import attach_reply
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.status import alert_status
from dispatcher.web.api import (
    AlertIn,
    api_send_alert,
    audit_rows,
    inbox_rows,
    mark_handled,
    problem_text,
)
from dispatcher.web.app_state import runtime_of, wake_worker
from dispatcher.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_SECONDS,
    Caller,
    authenticate,
    check_csrf,
    check_login_csrf,
    end_sessions,
    login_officer,
    new_login_csrf,
    session_cookie,
)
from dispatcher.web.limits import RowId
from dispatcher.web.throttle import LoginThrottle, client_address

router = APIRouter(include_in_schema=False)
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))
#: How often the live board looks for changes.
BOARD_POLL_SECONDS = 0.5
TEMPLATES = ["security", "demonstration", "health", "weather", "administrative"]


class LoginRequired(Exception):
    """Raised by page handlers for anonymous callers; answered with a redirect."""


def page(name: str, caller: Caller | None, http_status: int = 200,
         headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(caller=caller, **values),
                        status_code=http_status, headers=headers)


def officer_or_login(request: Request, role: Role = Role.VIEWER) -> Caller:
    caller = authenticate(request)
    if caller is None:
        raise LoginRequired()
    if not caller.at_least(role):
        from fastapi import HTTPException

        raise HTTPException(403, f"this needs the {role.value} role")
    return caller


async def form_of(request: Request) -> dict[str, Any]:
    form = await request.form()
    return {k: form.getlist(k) if k == "zones" else form.get(k) for k in form.keys()}


# --- login -----------------------------------------------------------------------------------


def _login_page(request: Request, http_status: int = 200, error: str | None = None,
                headers: dict[str, str] | None = None) -> HTMLResponse:
    """The login form, with the token of its cookie (a new one unless it has one)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_login_csrf()
    response = page("login.html", None, http_status=http_status, headers=headers,
                    error=error, login_csrf=token)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        path="/login", secure=runtime_of(request).settings.public_url
                        .startswith("https"))
    return response


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    rt = runtime_of(request)
    form = await form_of(request)
    name, secret = str(form.get("name") or ""), str(form.get("password") or "")
    check_login_csrf(request, form.get("csrf"), rt.settings.public_url)
    throttle: LoginThrottle = request.app.state.login_throttle
    client = client_address(request, request.app.state.trusted_proxies)
    wait = throttle.reserve(client, name)
    if wait:
        return _login_page(request, http_status=429,
                           error=f"Too many attempts; try again in {math.ceil(wait)} s.",
                           headers={"Retry-After": str(math.ceil(wait))})

    def check() -> str | None:
        with rt.db.session() as session:
            officer = login_officer(session, name, secret)
            if officer is not None:
                audit.record(session, f"officer:{officer.name}", "officer.login", client=client)
            else:  # the name is a claim, not an identity: a detail of an anonymous event
                audit.record(session, audit.ANONYMOUS, "officer.login_failed",
                             name=audit.clipped(name), client=client)
            return session_cookie(rt, officer) if officer else None

    cookie = None
    try:
        cookie = await run_in_threadpool(check)
    finally:
        throttle.settle(client, name, succeeded=cookie is not None)
    if cookie is None:
        return _login_page(request, http_status=401, error="Wrong name or password.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True,
                        samesite="strict", max_age=SESSION_MAX_AGE_SECONDS,
                        secure=rt.settings.public_url.startswith("https"))
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    caller = officer_or_login(request)
    check_csrf(caller, (await form_of(request)).get("csrf"))
    rt = runtime_of(request)

    def end() -> None:
        with rt.db.session() as session:
            end_sessions(session, caller.officer_id)
            audit.record(session, f"officer:{caller.name}", "officer.logout")

    await run_in_threadpool(end)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- alerts ----------------------------------------------------------------------------------


def _index(rt: Runtime, caller: Caller, **values: Any) -> HTMLResponse:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        zones = list(session.scalars(select(Zone.name).where(Zone.post_id == post.id)
                                     .order_by(Zone.name)))
        alerts = [{"id": a.id, "title": a.title, "state": a.state, "exercise": a.exercise,
                   "reply_code": a.reply_code,
                   "sent_at": a.sent_at.strftime("%Y-%m-%d %H:%M") if a.sent_at else ""}
                  for a in session.scalars(select(Alert).order_by(Alert.id.desc()).limit(50))]
    values.setdefault("form", {"zones": [], "template": "security", "body": "",
                               "exercise": False})
    return page("index.html", caller, zones=zones, alerts=alerts, templates=TEMPLATES,
                **values)


@router.get("/")
def index(request: Request) -> HTMLResponse:
    return _index(runtime_of(request), officer_or_login(request))


@router.post("/compose", response_model=None)
async def compose(request: Request) -> Response:
    caller = officer_or_login(request, Role.OFFICER)
    form = await form_of(request)
    check_csrf(caller, form.get("csrf"))
    rt = runtime_of(request)
    kept = {"zones": form.get("zones") or [], "template": str(form.get("template") or "security"),
            "body": str(form.get("body") or ""), "exercise": bool(form.get("exercise")),
            "ack_window": str(form.get("ack_window") or "") or None}
    try:
        data = AlertIn.model_validate({**kept, "dry_run": form.get("action") != "send"})
    except ValidationError as exc:
        return _index(rt, caller, form=kept, error=problem_text(exc))
    try:
        result = await run_in_threadpool(api_send_alert, rt, data, caller)
    except AlnError as exc:
        return _index(rt, caller, form=kept, error=str(exc))
    if data.dry_run:
        return _index(rt, caller, form=kept, preview=result)
    wake_worker(request)
    return RedirectResponse(f"/alerts/{result['id']}", status_code=303)


def _status(rt: Runtime, alert_id: int) -> dict[str, Any]:
    with rt.db.session() as session:
        return alert_status(session, alert_id)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '</script>' can close it early."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e")


@router.get("/alerts/{alert_id}")
def board(alert_id: RowId, request: Request) -> HTMLResponse:
    caller = officer_or_login(request)
    status = _status(runtime_of(request), alert_id)
    return page("board.html", caller, status=status, status_json=_script_json(status))


@router.get("/alerts/{alert_id}/events")
async def board_events(alert_id: RowId, request: Request) -> StreamingResponse:
    """Server-sent events: the alert's status whenever it changes."""
    officer_or_login(request)
    rt = runtime_of(request)
    await run_in_threadpool(_status, rt, alert_id)  # 404 now rather than mid-stream

    async def stream() -> AsyncIterator[str]:
        last = ""
        while not await request.is_disconnected():
            data = json.dumps(await run_in_threadpool(_status, rt, alert_id), default=str)
            if data != last:
                last = data
                yield f"data: {data}\n\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(BOARD_POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/alerts/{alert_id}/cancel")
async def cancel(alert_id: RowId, request: Request) -> RedirectResponse:
    caller = officer_or_login(request, Role.OFFICER)
    check_csrf(caller, (await form_of(request)).get("csrf"))
    rt = runtime_of(request)

    def work() -> None:
        with rt.db.session() as session:
            cancel_alert(session, rt.settings, alert_id, actor=f"officer:{caller.name}")

    await run_in_threadpool(work)
    wake_worker(request)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.post("/alerts/{alert_id}/replies/{response_id}/attach")
async def attach(alert_id: RowId, response_id: RowId, request: Request) -> RedirectResponse:
    """An officer attaches an ambiguous YES shown on this alert to it (audited)."""
    caller = officer_or_login(request, Role.OFFICER)
    check_csrf(caller, (await form_of(request)).get("csrf"))
    rt = runtime_of(request)

    def work() -> None:
        with rt.db.session() as session:
            attach_reply(session, rt.settings, response_id, actor=f"officer:{caller.name}")

    await run_in_threadpool(work)
    wake_worker(request)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


# --- inbox and audit ---------------------------------------------------------------------------


@router.get("/inbox")
def inbox(request: Request) -> HTMLResponse:
    caller = officer_or_login(request)
    return page("inbox.html", caller, rows=inbox_rows(runtime_of(request)))


@router.post("/inbox/{response_id}/handled")
async def handled(response_id: RowId, request: Request) -> RedirectResponse:
    caller = officer_or_login(request, Role.OFFICER)
    check_csrf(caller, (await form_of(request)).get("csrf"))
    await run_in_threadpool(mark_handled, runtime_of(request), response_id, caller)
    return RedirectResponse("/inbox", status_code=303)


@router.get("/audit")
def audit_page(request: Request) -> HTMLResponse:
    caller = officer_or_login(request)
    return page("audit.html", caller, rows=audit_rows(runtime_of(request)))
