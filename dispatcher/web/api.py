"""The officer API (JSON, bearer token): the same work as the CLI, over HTTP."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.csv_cells import csv_text
from dispatcher.dispatch.outbox import preview_sent, send_alert
from dispatcher.dispatch.plan import AlertRequest
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
from dispatcher.web import paging
from dispatcher.web.api_models import (
    AlertPage,
    AlertPreview,
    AlertSent,
    AlertStatus,
    Attached,
    AuditPage,
    Cancelled,
    Gaps,
    Handled,
    InboxPage,
    Report,
    RosterPage,
    Updated,
)
from dispatcher.web.app_state import runtime_of, wake_worker
from dispatcher.web.auth import Caller, api_caller
from dispatcher.web.headers import REPORT_CONTENT_SECURITY_POLICY
from dispatcher.web.inbox_view import mark_handled
from dispatcher.web.limits import MAX_ROW_ID, RowId
from dispatcher.web.paging import DEFAULT_PAGE, MAX_PAGE, Cursor, Limit
from dispatcher.web.problems import responses

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

#: A duration as `parse_duration` reads it (its checks stay: this only documents the form).
ACK_WINDOW_PATTERN = r"^ *([0-9]{1,9} *[hH])? *([0-9]{1,9} *[mM])? *([0-9]{1,9} *[sS]?)? *$"

#: No NUL characters in any text: PostgreSQL cannot store one (it would be a 500).
NO_NUL = r"^[^\x00]*$"

Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS, pattern=NO_NUL)]
Body = Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS, pattern=NO_NUL)]


class AlertIn(BaseModel):
    """An alert to send (or with `dry_run`, to preview); `zones` name the post's zones."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"zones": ["Oaxaca"], "body": "Exercise: reply YES when you read this.",
         "exercise": True, "ack_window": "15m"}]})

    zones: list[Name] = Field(default=[], max_length=MAX_LIST_ITEMS)
    body: Body = ""
    draft_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID,
                                 description="send this draft (from a CAP import)")
    title: Name | None = None
    template: Name | None = None
    exercise: bool = False
    ack_window: str | None = Field(None, max_length=32, pattern=ACK_WINDOW_PATTERN,
                                   description="e.g. 15m, 90s, 1h30m; at most 7 days")
    policy: Name = "default"
    channels: list[Literal["sms", "whatsapp", "voice", "email"]] = Field(
        default=[], max_length=MAX_LIST_ITEMS,
        description="restrict to these paths; a call (voice) listed here goes at once, "
                    "otherwise calls are the policy's later steps")
    force: bool = False
    dry_run: bool = False


class UpdateIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"body": "Exercise update: the meeting point is now the consulate."}]})

    body: Body


def problem_text(exc: ValidationError) -> str:
    """A validation error as one line an officer can act on: each field and what is wrong."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def alert_request(data: AlertIn, actor: str) -> AlertRequest:
    return AlertRequest(zones=data.zones, body=data.body, title=data.title,
                        template=data.template, exercise=data.exercise,
                        ack_window_seconds=parse_duration(data.ack_window)
                        if data.ack_window else None, policy=data.policy,
                        channels=list[str](data.channels), force=data.force, actor=actor,
                        draft_id=data.draft_id)


def api_send_alert(rt: Runtime, data: AlertIn, caller: Caller) -> dict[str, Any]:
    """Plan (and unless a dry run, create) an alert; the worker sends it."""
    req = alert_request(data, f"officer:{caller.name}")
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        result = send_alert(session, rt.settings, post, req, dry_run=data.dry_run)
    if result.alert_id is None:
        assert result.preview is not None
        return {"dry_run": True, **result.preview}
    # A streamed alert's preview is read now, while the worker writes and sends its rows.
    with rt.db.session() as session:
        preview = preview_sent(session, rt.settings,
                               ensure_post(session, rt.settings, rt.vault), result)
    return {"id": result.alert_id, "reply_code": result.reply_code, "preview": preview}


#: Where a sent alert's id leads (OpenAPI links: clients and the fuzzer's stateful
#: phase follow them from POST /api/alerts to the alert's own routes).
ALERT_LINKS = {name: {"operationId": op, "parameters": {"alert_id": "$response.body#/id"}}
               for name, op in (("GetAlert", "getAlert"), ("CancelAlert", "cancelAlert"),
                                ("UpdateAlert", "updateAlert"), ("GetReport", "getReport"))}


@router.post("/alerts", response_model=AlertSent | AlertPreview, operation_id="sendAlert",
             responses={**responses(400, 403, 404, 409, 413), 200: {"links": ALERT_LINKS}})
async def post_alert(data: AlertIn, request: Request, caller: Caller = officer) -> dict[str, Any]:
    """Send an alert (or with `dry_run`, preview it): the same rules as `aln alert send`."""
    result = await run_in_threadpool(api_send_alert, runtime_of(request), data, caller)
    wake_worker(request)
    return result


@router.get("/alerts", response_model=AlertPage, operation_id="listAlerts",
            responses=responses())
def list_alerts(request: Request, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None,
                _: Caller = viewer) -> dict[str, Any]:
    """Alerts, newest first, a page at a time."""
    (before,) = paging.decode(cursor, 1)
    query = select(Alert).order_by(Alert.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Alert.id < before)
    with runtime_of(request).db.session() as session:
        alerts = session.scalars(query).all()
        items = [{"id": a.id, "title": a.title, "kind": a.kind, "msg_type": a.msg_type,
                  "exercise": a.exercise, "state": a.state, "reply_code": a.reply_code,
                  "sent_at": a.sent_at.isoformat() if a.sent_at else None}
                 for a in alerts[:limit]]
    return {"items": items, "next_cursor": paging.next_cursor([(a.id,) for a in alerts], limit)}


@router.get("/alerts/{alert_id}", response_model=AlertStatus, operation_id="getAlert",
            responses=responses(404))
def get_alert(alert_id: RowId, request: Request, _: Caller = viewer) -> dict[str, Any]:
    rt = runtime_of(request)
    # Beside the replies' intake, not behind it; a whole alert in two halves at once.
    with rt.db.reading(twin=True) as session:
        return alert_status(session, alert_id)


@router.post("/alerts/{alert_id}/cancel", response_model=Cancelled, operation_id="cancelAlert",
             responses=responses(403, 404, 409))
def post_cancel(alert_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    rt = runtime_of(request)
    # Run again if it lost a deadlock to the worker (PostgreSQL), never a 500.
    count = rt.db.run(lambda session: cancel_alert(session, rt.settings, alert_id,
                                                   actor=f"officer:{caller.name}"))
    wake_worker(request)
    return {"id": alert_id, "state": AlertState.CANCELLED.value, "messages": count}


@router.post("/alerts/{alert_id}/update", response_model=Updated, operation_id="updateAlert",
             responses=responses(400, 403, 404, 409, 413))
def post_update(alert_id: RowId, data: UpdateIn, request: Request,
                caller: Caller = officer) -> dict[str, Any]:
    rt = runtime_of(request)

    def update(session: Session) -> dict[str, Any]:
        version = update_alert(session, rt.settings, alert_id, data.body,
                               actor=f"officer:{caller.name}")
        return {"id": alert_id, "version": version.number, "messages": version.messages}

    result = rt.db.run(update)
    wake_worker(request)
    return result


@router.post("/replies/{response_id}/attach", response_model=Attached,
             operation_id="attachReply", responses=responses(403, 404, 409))
def post_attach(response_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    """Attach an ambiguous acknowledgement to the alert it was shown on."""
    rt = runtime_of(request)
    outcome = rt.db.run(lambda session: attach_reply(session, rt.settings, response_id,
                                                     actor=f"officer:{caller.name}"))
    wake_worker(request)
    return {"id": response_id, "recipient_id": outcome.recipient_id, "zone": outcome.zone,
            "zone_acknowledged": outcome.zone_acknowledged}


@router.get("/roster", response_model=RosterPage, operation_id="listRoster",
            responses=responses(404))
def get_roster(request: Request, zone: Name | None = None, limit: Limit = DEFAULT_PAGE,
               cursor: Cursor = None, caller: Caller = viewer) -> dict[str, Any]:
    """The roster, newest membership first: contacts masked for viewers; in clear for
    officers, and every such read is in the audit trail (volunteers signed to safeguard
    these numbers; so do we)."""
    rt = runtime_of(request)
    reveal = caller.at_least(Role.OFFICER)
    (before,) = paging.decode(cursor, 1)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        try:
            rows = roster_rows(session, rt.vault, post, zone=zone, reveal=reveal,
                               page=(before, limit + 1))
        except InvalidInput as exc:  # the zone filter names no zone: nothing to list
            raise NotFound(str(exc)) from None
        if reveal:
            audit.record(session, f"officer:{caller.name}", "roster.read",
                         zone=audit.clipped(zone) if zone else None,
                         rows=len(rows[:limit]))
    return {"items": rows[:limit], "next_cursor": paging.next_cursor(
        [(r["membership_id"],) for r in rows], limit)}


@router.get("/roster/gaps", response_model=Gaps, operation_id="rosterGaps",
            responses=responses())
def get_gaps(request: Request, _: Caller = viewer) -> dict[str, Any]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        return find_gaps(session, ensure_post(session, rt.settings, rt.vault)).to_dict()


@router.get("/zones", response_model=list[str], operation_id="listZones",
            responses=responses())
def get_zones(request: Request, _: Caller = viewer) -> list[str]:
    rt = runtime_of(request)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        return list(session.scalars(select(Zone.name).where(Zone.post_id == post.id)
                                    .order_by(Zone.name)))


#: The report's other formats, as the schema lists them.
REPORT_MEDIA = {"text/csv": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}}}


@router.get("/reports/{alert_id}", response_model=Report, operation_id="getReport",
            responses={**responses(404), 200: {"content": REPORT_MEDIA}})
def get_report(alert_id: RowId, request: Request,
               format: Literal["json", "csv", "html"] = "json", _: Caller = viewer) -> Any:
    from dispatcher.reports.csv_export import render_csv
    from dispatcher.reports.figures import build_report

    rt = runtime_of(request)
    with rt.db.session() as session:
        report = build_report(session, alert_id)
    if format == "csv":
        return PlainTextResponse(render_csv(report), media_type="text/csv")
    if format == "html":
        from dispatcher.reports.html import render_report_html

        return HTMLResponse(render_report_html(report), headers={
            "Content-Security-Policy": REPORT_CONTENT_SECURITY_POLICY})
    return report


#: What the inbox shows: texts an officer must read.
INBOX_KINDS = ("field_report", "unparsed", "help")


def inbox_rows(rt: Runtime, include_handled: bool = False, limit: int = MAX_PAGE,
               after: tuple[int | None, ...] = (None, None)) -> list[dict[str, Any]]:
    """Field reports, unreadable replies and HELP (urgent first, newest first); `after`
    is the (urgent, id) of the last row already shown."""
    with rt.db.session() as session:
        query = select(Response).where(Response.kind.in_(INBOX_KINDS))
        if not include_handled:
            query = query.where(Response.handled_at.is_(None))
        if after[0] is not None:
            urgent, last_id = bool(after[0]), after[1]
            same: ColumnElement[bool] = Response.urgent.is_(urgent)
            if last_id is not None:
                same = and_(same, Response.id < last_id)
            query = query.where(or_(Response.urgent.is_(False), same) if urgent else same)
        rows = session.scalars(query.order_by(Response.urgent.desc(), Response.id.desc())
                               .limit(limit)).all()
        return [{"id": r.id, "kind": r.kind, "urgent": r.urgent, "text": r.text,
                 "sender": r.sender_masked, "alert_id": r.alert_id, "zone_id": r.zone_id,
                 "at": r.created_at.isoformat(), "handled_at": r.handled_at.isoformat()
                 if r.handled_at else None} for r in rows]


@router.get("/inbox", response_model=InboxPage, operation_id="listInbox",
            responses=responses())
def get_inbox(request: Request, all: bool = False, limit: Limit = DEFAULT_PAGE,
              cursor: Cursor = None, _: Caller = viewer) -> dict[str, Any]:
    """The inbox: urgent (HELP) first, then newest first; `all` includes handled items."""
    rows = inbox_rows(runtime_of(request), include_handled=all, limit=limit + 1,
                      after=paging.decode(cursor, 2))
    return {"items": rows[:limit], "next_cursor": paging.next_cursor(
        [(int(r["urgent"]), r["id"]) for r in rows], limit)}


@router.post("/inbox/{response_id}/handled", response_model=Handled,
             operation_id="markHandled", responses=responses(403, 404, 409))
def post_handled(response_id: RowId, request: Request, caller: Caller = officer) -> dict[str, Any]:
    """The officer dealt with the item: it and the sender's earlier waiting messages, as
    the dashboard's Handled does (one rule: `inbox_view.mark_handled`); 409 when another
    officer already handled it."""
    with runtime_of(request).db.session() as session:
        mark_handled(session, response_id, caller.name)
    return {"id": response_id, "handled": True}


#: Most audit rows in one CSV export (a page of JSON holds at most MAX_PAGE).
MAX_AUDIT_CSV_ROWS = 10_000


def audit_rows(rt: Runtime, limit: int = 500,
               before_id: int | None = None) -> list[dict[str, Any]]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    with rt.db.session() as session:
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                 "alert_id": e.alert_id, "details": e.details}
                for e in session.scalars(query)]


@router.get("/audit", response_model=AuditPage, operation_id="listAudit",
            responses={**responses(), 200: {"content": {"text/csv": {
                "schema": {"type": "string"}}}}})
def get_audit(request: Request, format: Literal["json", "csv"] = "json",
              limit: Limit | None = None, cursor: Cursor = None,
              _: Caller = viewer) -> Any:
    """The audit trail, newest first; `format=csv` exports it (the dashboard's link): the
    newest 10,000 rows unless `limit` is given, the next cursor in the
    `X-Next-Cursor` header."""
    size = limit or (DEFAULT_PAGE if format == "json" else MAX_AUDIT_CSV_ROWS)
    (before,) = paging.decode(cursor, 1)
    rows = audit_rows(runtime_of(request), limit=size + 1, before_id=before)
    after = paging.next_cursor([(r["id"],) for r in rows], size)
    rows = rows[:size]
    if format == "csv":
        text = csv_text(["id", "at", "actor", "action", "alert_id", "details"],
                        ([r["id"], r["at"], r["actor"], r["action"], r["alert_id"] or "",
                          r["details"]] for r in rows))
        headers = {"X-Next-Cursor": after} if after else None
        return PlainTextResponse(text, media_type="text/csv", headers=headers)
    return {"items": rows, "next_cursor": after}
