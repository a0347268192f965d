"""The officer API (JSON, bearer token): the same work as the CLI, over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.csv_cells import csv_text
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import AlertRequest, send_alert
from dispatcher.dispatch.versions import cancel_alert, update_alert
from dispatcher.domain import AlertState, Role
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.escalation.policy import parse_duration
from dispatcher.models import Alert, AuditEvent, Response, Zone
from dispatcher.replies.attach import attach_reply
from dispatcher.roster.gaps import find_gaps
from dispatcher.roster.listing import roster_rows
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.status import alert_status
from dispatcher.web.app_state import runtime_of, wake_worker
from dispatcher.web.auth import Caller, api_caller
from dispatcher.web.headers import REPORT_CONTENT_SECURITY_POLICY
from dispatcher.web.limits import MAX_ROW_ID, RowId

router = APIRouter(prefix="/api")
viewer = Depends(api_caller(Role.VIEWER))
officer = Depends(api_caller(Role.OFFICER))
admin = Depends(api_caller(Role.ADMIN))


#: Longest alert body (an email can be longer than an SMS; nobody writes a book).
MAX_BODY_CHARS = 10_000
#: Longest name of a zone, template, policy or channel, and of a title.
MAX_NAME_CHARS = 200
#: Most zones or channels named in one request.
MAX_LIST_ITEMS = 500

Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]


class AlertIn(BaseModel):
    zones: list[Name] = Field(default=[], max_length=MAX_LIST_ITEMS)
    body: str = Field("", max_length=MAX_BODY_CHARS)
    draft_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID,
                                 description="send this draft (from a CAP import)")
    title: Name | None = None
    template: Name | None = None
    exercise: bool = False
    ack_window: str | None = Field(None, max_length=32, description="e.g. 15m, 90s")
    policy: Name = "default"
    channels: list[Name] = Field(default=[], max_length=MAX_LIST_ITEMS)
    force: bool = False
    dry_run: bool = False


class UpdateIn(BaseModel):
    body: str = Field(max_length=MAX_BODY_CHARS)


def problem_text(exc: ValidationError) -> str:
    """A validation error as one line an officer can act on: each field and what is wrong."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def alert_request(data: AlertIn, actor: str) -> AlertRequest:
    return AlertRequest(zones=data.zones, body=data.body, title=data.title,
                        template=data.template, exercise=data.exercise,
                        ack_window_seconds=parse_duration(data.ack_window)
                        if data.ack_window else None, policy=data.policy,
                        channels=data.channels, force=data.force, actor=actor,
                        draft_id=data.draft_id)


def api_send_alert(rt: Runtime, data: AlertIn, caller: Caller) -> dict[str, Any]:
    """Plan (and unless a dry run, create) an alert; the worker sends it."""
    req = alert_request(data, f"officer:{caller.name}")
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        result = send_alert(session, rt.settings, post, req, dry_run=data.dry_run)
    if result.alert_id is None:
        return {"dry_run": True, **result.preview}
    return {"id": result.alert_id, "reply_code": result.reply_code, "preview": result.preview}


@router.post("/alerts")
async def post_alert(data: AlertIn, request: Request, caller: Caller = officer) -> dict[str, Any]:
    result = await run_in_threadpool(api_send_alert, runtime_of(request), data, caller)
    wake_worker(request)
    return result


@router.get("/alerts")
def list_alerts(request: Request, _: Caller = viewer) -> list[dict[str, Any]]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        return [{"id": a.id, "title": a.title, "kind": a.kind, "msg_type": a.msg_type,
                 "exercise": a.exercise, "state": a.state, "reply_code": a.reply_code,
                 "sent_at": a.sent_at.isoformat() if a.sent_at else None}
                for a in session.scalars(select(Alert).order_by(Alert.id.desc()).limit(100))]


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: RowId, request: Request, _: Caller = viewer) -> dict[str, Any]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        return alert_status(session, alert_id)


@router.post("/alerts/{alert_id}/cancel")
def post_cancel(alert_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        count = cancel_alert(session, rt.settings, alert_id, actor=f"officer:{caller.name}")
    wake_worker(request)
    return {"id": alert_id, "state": AlertState.CANCELLED.value, "messages": count}


@router.post("/alerts/{alert_id}/update")
def post_update(alert_id: RowId, data: UpdateIn, request: Request,
                caller: Caller = officer) -> dict[str, Any]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        version = update_alert(session, rt.settings, alert_id, data.body,
                               actor=f"officer:{caller.name}")
        result = {"id": alert_id, "version": version.number, "messages": version.messages}
    wake_worker(request)
    return result


@router.post("/replies/{response_id}/attach")
def post_attach(response_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    """Attach an ambiguous acknowledgement to the alert it was shown on."""
    rt = runtime_of(request)
    with rt.db.session() as session:
        outcome = attach_reply(session, rt.settings, response_id,
                               actor=f"officer:{caller.name}")
    wake_worker(request)
    return {"id": response_id, "recipient_id": outcome.recipient_id, "zone": outcome.zone,
            "zone_acknowledged": outcome.zone_acknowledged}


@router.get("/roster")
def get_roster(request: Request, zone: str | None = None,
               caller: Caller = viewer) -> list[dict[str, Any]]:
    """The roster: contacts masked for viewers; in clear for officers, and every such read
    is in the audit trail (volunteers signed to safeguard these numbers; so do we)."""
    rt = runtime_of(request)
    reveal = caller.at_least(Role.OFFICER)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        rows = roster_rows(session, rt.vault, post, zone=zone, reveal=reveal)
        if reveal:
            audit.record(session, f"officer:{caller.name}", "roster.read",
                         zone=audit.clipped(zone) if zone else None, rows=len(rows))
        return rows


@router.get("/roster/gaps")
def get_gaps(request: Request, _: Caller = viewer) -> dict[str, Any]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        return find_gaps(session, ensure_post(session, rt.settings, rt.vault)).to_dict()


@router.get("/zones")
def get_zones(request: Request, _: Caller = viewer) -> list[str]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        return list(session.scalars(select(Zone.name).where(Zone.post_id == post.id)
                                    .order_by(Zone.name)))


@router.get("/reports/{alert_id}", response_model=None)
def get_report(alert_id: RowId, request: Request, format: str = "json",
               _: Caller = viewer) -> Any:
    from dispatcher.reports.csv_export import render_csv
    from dispatcher.reports.figures import build_report

    rt = runtime_of(request)
    with rt.db.session() as session:
        report = build_report(session, alert_id)
    if format == "json":
        return report
    if format == "csv":
        return PlainTextResponse(render_csv(report), media_type="text/csv")
    if format == "html":
        from dispatcher.reports.html import render_report_html

        return HTMLResponse(render_report_html(report), headers={
            "Content-Security-Policy": REPORT_CONTENT_SECURITY_POLICY})
    raise InvalidInput(f"format '{format}' is not json, csv or html")


def inbox_rows(rt: Runtime, include_handled: bool = False) -> list[dict[str, Any]]:
    """Field reports, unreadable replies and HELP (urgent first, newest first)."""
    with rt.db.session() as session:
        query = select(Response).where(Response.kind.in_(["field_report", "unparsed", "help"]))
        if not include_handled:
            query = query.where(Response.handled_at.is_(None))
        rows = session.scalars(query.order_by(Response.urgent.desc(), Response.id.desc())
                               .limit(500)).all()
        return [{"id": r.id, "kind": r.kind, "urgent": r.urgent, "text": r.text,
                 "sender": r.sender_masked, "alert_id": r.alert_id, "zone_id": r.zone_id,
                 "at": r.created_at.isoformat(), "handled_at": r.handled_at.isoformat()
                 if r.handled_at else None} for r in rows]


@router.get("/inbox")
def get_inbox(request: Request, all: bool = False, _: Caller = viewer) -> list[dict[str, Any]]:
    return inbox_rows(runtime_of(request), include_handled=all)


def mark_handled(rt: Runtime, response_id: int, caller: Caller) -> None:
    with rt.db.session() as session:
        resp = session.get(Response, response_id)
        if resp is None:
            raise NotFound(f"inbox item {response_id} not found")
        resp.handled_at = db_now(session)
        resp.handled_by = caller.name
        audit.record(session, f"officer:{caller.name}", "inbox.handled",
                     alert_id=resp.alert_id, response_id=response_id)


@router.post("/inbox/{response_id}/handled")
def post_handled(response_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    mark_handled(runtime_of(request), response_id, caller)
    return {"id": response_id, "handled": True}


def audit_rows(rt: Runtime, limit: int = 500) -> list[dict[str, Any]]:
    with rt.db.session() as session:
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                 "alert_id": e.alert_id, "details": e.details}
                for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())
                                         .limit(limit))]


@router.get("/audit", response_model=None)
def get_audit(request: Request, format: str = "json", _: Caller = viewer) -> Any:
    rows = audit_rows(runtime_of(request), limit=10_000)
    if format == "csv":
        text = csv_text(["id", "at", "actor", "action", "alert_id", "details"],
                        ([r["id"], r["at"], r["actor"], r["action"], r["alert_id"] or "",
                          r["details"]] for r in rows))
        return PlainTextResponse(text, media_type="text/csv")
    return rows
