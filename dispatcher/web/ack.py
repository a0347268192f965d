"""The acknowledgement link in emails: GET shows a button, only the POST acknowledges.

Mail scanners open every link in an email, so a GET must never acknowledge. The
token is signed and expires; a forged or expired one gets a clear page and
changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatcher.acks import acknowledge
from dispatcher.db import db_now
from dispatcher.domain import AlertState, RecipientState
from dispatcher.models import Alert, Recipient
from dispatcher.runtime import Runtime
from dispatcher.tokens import BadToken, read_ack_token
from dispatcher.web.app_state import runtime_of, wake_worker

router = APIRouter(include_in_schema=False)
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))


def _page(status: int = 200, **values: object) -> HTMLResponse:
    defaults = {"lang": "en", "heading": "ALN alert", "message": "", "message_class": "",
                "show_button": False, "exercise": False, "title": "", "zone": "",
                "button": "Confirm I received this alert"}
    defaults.update(values)
    return HTMLResponse(_env.get_template("ack.html").render(**defaults), status_code=status)


def _load(session: Session, rt: Runtime, token: str) -> tuple[Recipient, Alert]:
    """The recipient and alert a token names; BadToken when forged, altered or expired."""
    recipient_id, _alert_id = read_ack_token(rt.vault, token, rt.settings.ack_link_max_age_seconds)
    rec = session.get(Recipient, recipient_id)
    if rec is None:
        raise BadToken("this confirmation link is not valid")
    alert = session.get(Alert, rec.alert_id)
    assert alert is not None
    _ = rec.zone.name  # loaded now: the page renders after the session closes
    return rec, alert


def _read(rt: Runtime, token: str) -> tuple[Recipient, Alert]:
    with rt.db.session() as session:
        return _load(session, rt, token)


@router.get("/ack/{token}", response_class=HTMLResponse)
async def ack_page(token: str, request: Request) -> HTMLResponse:
    rt = runtime_of(request)
    try:
        rec, alert = await run_in_threadpool(_read, rt, token)
    except BadToken as exc:
        return _page(400, heading="Link not valid", message=str(exc), message_class="bad")
    if rec.state == RecipientState.ACKNOWLEDGED:
        return _page(heading=alert.title, exercise=alert.exercise,
                     message="Already confirmed. Thank you.", message_class="ok")
    return _page(heading=alert.title, exercise=alert.exercise, show_button=True,
                 title=alert.title, zone=rec.zone.name)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def ack_confirm(token: str, request: Request) -> HTMLResponse:
    rt = runtime_of(request)

    def work() -> tuple[str, Alert]:
        with rt.db.session() as session:
            rec, alert = _load(session, rt, token)
            if alert.state == AlertState.CANCELLED and rec.state != RecipientState.ACKNOWLEDGED:
                return "closed", alert
            acknowledge(session, rt.settings, rec, at=db_now(session), via="link")
            return "ok", alert

    try:
        outcome, alert = await run_in_threadpool(work)
    except BadToken as exc:
        return _page(400, heading="Link not valid", message=str(exc), message_class="bad")
    if outcome == "closed":
        return _page(heading=alert.title, exercise=alert.exercise,
                     message="This alert is closed; no confirmation is needed.")
    wake_worker(request)
    return _page(heading=alert.title, exercise=alert.exercise,
                 message="Confirmed. Thank you.", message_class="ok")
