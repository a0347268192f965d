"""The dashboard: server-rendered pages, a live zone board by server-sent events.

No front-end build step: Jinja2 pages, and small script files (`static/`; the CSP allows
no inline script, so page data comes in JSON blocks). The alert's board is in `board.py`. Every
page needs a logged-in officer (else a redirect to /login); every form POST
carries the session's CSRF token.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.domain import Role
from dispatcher.errors import AlnError
from dispatcher.models import Zone
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.web.alert_list import alert_list
from dispatcher.web.api import (
    AlertIn,
    api_send_alert,
    problem_text,
)
from dispatcher.web.app_state import runtime_of, wake_worker
from dispatcher.web.audit_view import (
    BadFilter,
    actor_label,
    audit_events,
    choices,
    kind_label,
    parse_filter,
)
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
from dispatcher.web.inbox_view import (
    handled_page,
    inbox_page,
    mark_handled,
    reopen,
    waiting_count,
)
from dispatcher.web.limits import RowId
from dispatcher.web.localtime import local_time
from dispatcher.web.paging import Cursor
from dispatcher.web.throttle import LoginThrottle, client_address

router = APIRouter(include_in_schema=False)
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))

_env.filters["local"] = local_time
TEMPLATES = ["security", "demonstration", "health", "weather", "administrative"]
#: How many just-handled items the inbox keeps in view (with Undo) under the waiting ones.
HANDLED_ON_INBOX = 3


class LoginRequired(Exception):
    """Raised by page handlers for anonymous callers; answered with a redirect."""


def page(name: str, caller: Caller | None, http_status: int = 200,
         headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(caller=caller, **values),
                        status_code=http_status, headers=headers)


def officer_or_login(request: Request, role: Role = Role.VIEWER) -> Caller:
    """The logged-in officer (with the inbox's waiting count, which every page's
    navigation shows), else a redirect to the login page."""
    caller = authenticate(request)
    if caller is None:
        raise LoginRequired()
    if not caller.at_least(role):
        from fastapi import HTTPException

        raise HTTPException(403, f"this needs the {role.value} role")
    with runtime_of(request).db.reading() as session:  # beside the writers, as `authenticate`
        return dataclasses.replace(caller, inbox_waiting=waiting_count(session))


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
        alerts = alert_list(session, post.timezone)
    # An exercise unless the officer unticks it: a real alert is the deliberate choice.
    values.setdefault("form", {"zones": [], "template": "security", "body": "",
                               "exercise": True})
    return page("index.html", caller, zones=zones, alerts=alerts, templates=TEMPLATES,
                **values)


@router.get("/")
def index(request: Request) -> HTMLResponse:
    return _index(runtime_of(request), officer_or_login(request))


@router.post("/compose", response_model=None)
async def compose(request: Request) -> Response:
    """Preview, then Send (which only asks for confirmation, naming what will go out),
    then Confirm (which sends)."""
    caller = officer_or_login(request, Role.OFFICER)
    form = await form_of(request)
    check_csrf(caller, form.get("csrf"))
    rt = runtime_of(request)
    action = form.get("action")
    kept = {"zones": form.get("zones") or [], "template": str(form.get("template") or "security"),
            "body": str(form.get("body") or ""), "exercise": bool(form.get("exercise")),
            "ack_window": str(form.get("ack_window") or "") or None}
    try:
        data = AlertIn.model_validate({**kept, "dry_run": action != "confirm"})
    except ValidationError as exc:
        return _index(rt, caller, form=kept, error=problem_text(exc))
    try:
        result = await run_in_threadpool(api_send_alert, rt, data, caller)
    except AlnError as exc:
        return _index(rt, caller, form=kept, error=str(exc))
    volunteers = sum(len(z["recipients"]) for z in result.get("zones", []))
    if action == "send":
        return page("confirm_send.html", caller, form=kept, preview=result,
                    volunteers=volunteers)
    if data.dry_run:
        return _index(rt, caller, form=kept, preview=result, volunteers=volunteers)
    wake_worker(request)
    return RedirectResponse(f"/alerts/{result['id']}", status_code=303)


# --- inbox and audit ---------------------------------------------------------------------------


@router.get("/inbox")
def inbox(request: Request, cursor: Cursor = None) -> HTMLResponse:
    """Waiting items, a page at a time (`cursor` from the "Older" link); officers see known
    senders' numbers to call, viewers the masked ones."""
    caller = officer_or_login(request)
    rt = runtime_of(request)
    officer = caller.at_least(Role.OFFICER)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        found = inbox_page(session, post.timezone, cursor=cursor,
                           vault=rt.vault if officer else None, officer=caller.name)
        recent = handled_page(session, post.timezone, limit=HANDLED_ON_INBOX).items
    return page("inbox.html", caller, rows=found.items, next_cursor=found.next_cursor,
                first_page=cursor is None, handled=recent, timezone=post.timezone,
                view="waiting")


@router.get("/inbox/handled")
def inbox_handled(request: Request, page_number: int = Query(0, alias="page", ge=0,
                                                             le=10_000)) -> HTMLResponse:
    """What officers handled, most recent first, with who, when, the note, and Undo."""
    caller = officer_or_login(request)
    rt = runtime_of(request)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        found = handled_page(session, post.timezone, page=page_number)
    return page("inbox.html", caller, rows=found.items, next_page=found.next_cursor,
                page_number=page_number, timezone=post.timezone, view="handled")


@router.post("/inbox/{response_id}/handled")
async def handled(response_id: RowId, request: Request) -> RedirectResponse:
    caller = officer_or_login(request, Role.OFFICER)
    form = await form_of(request)
    check_csrf(caller, form.get("csrf"))
    rt = runtime_of(request)

    def work() -> None:
        with rt.db.session() as session:
            mark_handled(session, response_id, caller.name, str(form.get("note") or ""))

    await run_in_threadpool(work)
    return RedirectResponse("/inbox", status_code=303)


@router.post("/inbox/{response_id}/reopen")
async def reopen_item(response_id: RowId, request: Request) -> RedirectResponse:
    caller = officer_or_login(request, Role.OFFICER)
    form = await form_of(request)
    check_csrf(caller, form.get("csrf"))
    rt = runtime_of(request)

    def work() -> None:
        with rt.db.session() as session:
            reopen(session, response_id, caller.name)

    await run_in_threadpool(work)
    back = "/inbox/handled" if form.get("back") == "handled" else "/inbox"
    return RedirectResponse(back, status_code=303)


@router.get("/audit")
def audit_page(request: Request) -> HTMLResponse:
    """The audit trail in words, newest first, filtered by ?actor=, ?alert= and ?kind=
    (a value that names nothing: the form again with what is wrong, and no rows)."""
    caller = officer_or_login(request)
    rt = runtime_of(request)
    params = {k: request.query_params.get(k) or "" for k in ("actor", "alert", "kind")}
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        actors, kinds = choices(session)
        try:
            where = parse_filter(params, actors, kinds)
        except BadFilter as exc:
            return page("audit.html", caller, http_status=400, rows=[], error=str(exc),
                        params=params, actors=actors, kinds=kinds, timezone=post.timezone,
                        actor_label=actor_label, kind_label=kind_label)
        rows = audit_events(session, post.timezone, where)
    return page("audit.html", caller, rows=rows, params=params, actors=actors, kinds=kinds,
                timezone=post.timezone, filtered=any(params.values()),
                actor_label=actor_label, kind_label=kind_label)
