"""`aln alert send|status|list|cancel|update`: the crisis officer's main act."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import typer
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from dispatcher import aio
from dispatcher.cli.common import (
    console,
    err_console,
    handle_errors,
    print_json,
    runtime,
    styled,
)
from dispatcher.dispatch.fill import Filling
from dispatcher.dispatch.outbox import preview_sent, send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.sender import Sender
from dispatcher.dispatch.versions import cancel_alert, update_alert
from dispatcher.domain import FINISHED_ALERT_STATES
from dispatcher.errors import InvalidInput
from dispatcher.escalation.policy import parse_duration
from dispatcher.models import Alert, Delivery
from dispatcher.replies.attach import attach_reply
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.status import alert_status, write_alert_status
from dispatcher.worker import make_channels, worker_name

app = typer.Typer(help="Send alerts and follow them.", no_args_is_help=True)

STATE_STYLE = {"acknowledged": "green", "unreached": "bold red", "waiting": "yellow",
               "failed": "red", "escalated": "magenta", "notified": "cyan",
               "cancelled": "dim", "pending": "white"}


@app.command("send")
@handle_errors
def send(
    zone: list[str] = typer.Option([], "--zone", help="Zone name (repeat), or 'all'."),
    body: str = typer.Option("", "--body", help="What happened and what to do."),
    title: str | None = typer.Option(None, "--title"),
    template: str | None = typer.Option(None, "--template",
                                        help="security, demonstration, health, weather, "
                                             "administrative (default security)."),
    exercise: bool = typer.Option(False, "--exercise", help="A drill: every message says so."),
    ack_window: str | None = typer.Option(None, "--ack-window", help="e.g. 15m, 90s."),
    policy: str = typer.Option("default", "--policy", help="Escalation policy in config/."),
    channel: list[str] = typer.Option([], "--channel",
                                      help="Restrict to sms, whatsapp, voice or email "
                                      "(calls are made only when asked for or by the policy)."),
    force: bool = typer.Option(False, "--force", help="Send even if a zone has nobody."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show recipients; send nothing."),
    draft: int | None = typer.Option(None, "--draft",
                                     help="Send this draft (from aln cap import)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send an alert to zones: rows first, then the fan-out with a progress bar."""
    if draft is None and not zone:
        raise InvalidInput("name at least one zone (--zone Chiapas, or --zone all)")
    if draft is None and not body.strip():
        raise InvalidInput("the alert body is empty (--body \"...\")")
    req = AlertRequest(zones=zone, body=body, title=title, template=template,
                       exercise=exercise, ack_window_seconds=parse_duration(ack_window)
                       if ack_window else None, policy=policy, channels=channel, force=force,
                       draft_id=draft)
    name = worker_name()
    with runtime() as rt:
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            result = send_alert(session, rt.settings, post, req, dry_run=dry_run, filler=name)
        if result.alert_id is None:
            assert result.preview is not None
            _print_preview(result.preview, as_json)
            return
        alert_id = result.alert_id
        sent = _fan_out(rt, alert_id, name, result.fills,
                        show_progress=not as_json and console.is_terminal)
        with rt.db.session() as session:
            status = alert_status(session, alert_id)
            preview = None if as_json else preview_sent(
                session, rt.settings, ensure_post(session, rt.settings, rt.vault), result)
    if as_json:
        print_json({"id": alert_id, "reply_code": status["reply_code"], "sent": sent,
                    "zones": status["zones"], "recipients": status["recipients"]})
        return
    console.print(styled((f"Alert {alert_id}", "bold"),
                         f" sent (reply code {status['reply_code']}): "
                         f"{sent} message(s) to {len(status['recipients'])} volunteer(s) in "
                         f"{len(status['zones'])} zone(s)."))
    assert preview is not None
    _print_skipped(preview)
    console.print(f"Follow it with: aln alert status {alert_id} --watch")


def _fan_out(rt: Runtime, alert_id: int | None, name: str | None = None,
             fills: Sequence[int] = (), *, show_progress: bool) -> int:
    """Send the alert's deliveries; a streamed alert's fills are written beside, by this
    process (`name` claimed them), and their rows sent as they commit."""
    async def run(progress_cb: Any) -> int:
        channels = make_channels(rt)
        me = name or worker_name()
        filling = Filling(rt.db, rt.settings, fills, me)
        try:
            sender = Sender(rt.db, rt.settings, rt.vault, channels, me)
            return await sender.send_due(alert_id=alert_id, progress=progress_cb,
                                         more=filling.more)
        finally:
            await filling.wait()
            for ch in channels.values():
                await ch.aclose()

    if not show_progress:
        return aio.run(run(None))
    # Counted only for the bar: without one, the first message does not wait for it. A
    # streamed alert's rows are still being written: the bar counts without a total.
    with rt.db.session() as session:
        total = None if fills else session.scalar(
            select(func.count()).select_from(Delivery)
            .where(Delivery.alert_id == alert_id)) or 0
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("sending", total=total)
        return aio.run(run(lambda n: progress.advance(task, n)))


def _print_preview(preview: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(preview)
        return
    table = Table("Zone", "Tier", "Volunteer", "Channels", "Language", "Skipped",
                  title="Dry run: nothing was sent")
    for z in preview["zones"]:
        if not z["recipients"]:
            table.add_row(z["zone"], "-", styled(("nobody reachable", "red")), "", "", "")
        for r in z["recipients"]:
            skipped = "; ".join(f"{s['channel']}: {s['reason']}" for s in r["skipped"])
            language = r["language"]
            if r.get("call"):
                call = r["call"]
                language += f" (call: {call['say_language']}" + (
                    f", {call['fallback']})" if call["fallback"] else ")")
            table.add_row(z["zone"], r["tier"], r["name"], ", ".join(r["channels"]) or "-",
                          language, skipped)
    console.print(table)
    _print_steps(preview)
    for lang, info in preview["sms_encoding"].items():
        console.print(f"SMS [{lang}]: {info['encoding']}, {info['segments']} segment(s), "
                      f"{info['characters']} characters")
    if preview.get("calls"):
        console.print(f"{preview['calls']} call(s), about {preview['call_minutes']} minute(s) "
                      "billed (each call read twice, rounded up to the minute).")
    console.print(f"{preview['sms']} SMS, {preview.get('whatsapp', 0)} WhatsApp message(s) "
                  f"({preview.get('whatsapp_cost_units', 0)} cost unit(s)) and "
                  f"{preview['emails']} email(s); about "
                  f"{preview['estimated_seconds']} s at the configured SMS rate; "
                  f"acknowledgement window {preview['ack_window_seconds']} s; "
                  + (f"reply code {preview['reply_code']}." if preview["reply_code"]
                     else "the reply code is given when the alert is sent."))
    for z in preview["zones"]:
        for gap in z.get("gaps", []):
            console.print(f"gap: {gap}", markup=False, highlight=False)
    if preview.get("refused"):
        err_console.print(preview["refused"], markup=False, highlight=False)


def _after(seconds: int) -> str:
    return "at once" if not seconds else (f"after {seconds // 60} min" if seconds % 60 == 0
                                          else f"after {seconds} s")


def _print_steps(preview: dict[str, Any]) -> None:
    """Each tier's steps, the steps a volunteer would miss, and each WhatsApp message."""
    steps = preview.get("steps") or []
    if len(steps) > 1:
        console.print("Each tier: " + "; then ".join(
            f"{', '.join(s['channels'])} {_after(s['after_seconds'])}" for s in steps)
            + f"; the next tier after {preview['ack_window_seconds']} s of silence.")
    for z in preview["zones"]:
        for r in z["recipients"]:
            for step in r.get("steps", []):
                for miss in step["skipped"]:
                    console.print(f"  step {_after(step['after_seconds'])}: {r['name']} "
                                  f"skipped on {miss['channel']} ({miss['reason']})",
                                  markup=False, highlight=False)
            wa = r.get("whatsapp")
            if wa:
                how = (f"template {wa['content_sid']}" if wa["content_sid"] else wa["form"])
                console.print(f"  WhatsApp to {r['name']} [{wa['language']}]: {how}, "
                              f"{wa['cost_units']} cost unit(s)", markup=False,
                              highlight=False)


def _print_skipped(preview: dict[str, Any]) -> None:
    for z in preview["zones"]:
        for r in z["recipients"]:
            for s in r["skipped"]:
                err_console.print(f"skipped {r['name']} ({z['zone']}) on {s['channel']}: "
                                  f"{s['reason']}")
        if not z["reachable"]:
            err_console.print(styled((f"{z['zone']}: nobody reachable; the duty officer is told",
                                      "red")))


@app.command("status")
@handle_errors
def status(
    alert_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    watch: bool = typer.Option(False, "--watch", help="Live table until the alert closes."),
) -> None:
    """Zones and volunteers of an alert: who acknowledged, who was escalated past."""
    with runtime() as rt:
        # Read without the writers' lock: a status read of a large alert (a second) or a
        # watch (every second) never holds up the replies' intake on SQLite.
        # A whole alert's recipients are read in two halves at once (`twin`).
        if as_json and not watch:
            with rt.db.reading(twin=True) as session:
                if sys.stdout.isatty():
                    print_json(alert_status(session, alert_id))
                else:  # a script reads it: the recipients as the database wrote them
                    write_alert_status(session, alert_id, sys.stdout)
            return
        if not watch:
            with rt.db.reading(twin=True) as session:
                console.print(status_table(alert_status(session, alert_id)))
            return
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                with rt.db.reading() as session:
                    data = alert_status(session, alert_id)
                live.update(status_table(data))
                if data["state"] in FINISHED_ALERT_STATES:
                    break
                time.sleep(1)


def status_table(data: dict[str, Any]) -> Table:
    kind = "EXERCISE " if data["exercise"] else ""
    table = Table("Zone", "State", "Tier", "Volunteer", "Channels", "Reply", "Acknowledged",
                  title=styled(f"{kind}alert {data['id']} ({data['reply_code']}): "
                               f"{data['title']} [{data['state']}]"))
    for z in data["zones"]:
        zstyle = STATE_STYLE.get(z["state"], "white")
        people = [r for r in data["recipients"] if r["zone"] == z["zone"]]
        if not people:
            table.add_row(styled(z["zone"]), styled((z["state"], zstyle)), "", "-", "", "", "")
        for i, r in enumerate(people):
            rstyle = STATE_STYLE.get(r["state"], "white")
            chans = ", ".join(f"{d['channel']}:{d['state']}" for d in r["deliveries"]
                              if d["purpose"] in ("alert", "failover", "unreached"))
            reply = r["reply"]["text"][:30] if r["reply"] else ""
            table.add_row(styled(z["zone"] if i == 0 else ""),
                          styled((z["state"], zstyle)) if i == 0 else "", r["tier"],
                          styled((f"{r['name']} ({r['state']})", rstyle)), chans,
                          styled(reply), (r["acknowledged_at"] or "")[11:19])
    return table


@app.command("list")
@handle_errors
def list_alerts(as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent alerts, newest first."""
    with runtime() as rt, rt.db.session() as session:
        rows = [{"id": a.id, "title": a.title, "kind": a.kind, "msg_type": a.msg_type,
                 "exercise": a.exercise, "state": a.state, "reply_code": a.reply_code,
                 "sent_at": a.sent_at.isoformat() if a.sent_at else None}
                for a in session.scalars(select(Alert).order_by(Alert.id.desc()).limit(50))]
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "Sent", "Kind", "Title", "State", "Code")
    for r in rows:
        table.add_row(str(r["id"]), str(r["sent_at"] or "")[:19], str(r["kind"]),
                      ("EXERCISE " if r["exercise"] else "") + str(r["title"]),
                      str(r["state"]), str(r["reply_code"]))
    console.print(table)


@app.command("cancel")
@handle_errors
def cancel(alert_id: int = typer.Argument(...)) -> None:
    """Stop escalation and tell everyone who received the alert that it is cancelled."""
    with runtime() as rt:
        with rt.db.session() as session:
            count = cancel_alert(session, rt.settings, alert_id, actor="cli")
        _fan_out(rt, alert_id, show_progress=False)
    console.print(f"alert {alert_id} cancelled; {count} cancellation message(s) sent")


@app.command("update")
@handle_errors
def update(alert_id: int = typer.Argument(...),
           body: str = typer.Option(..., "--body")) -> None:
    """Send the alert's next version (same reply code, zones and escalation) to everyone it
    reached so far; volunteers asked later get the alert and then this update."""
    with runtime() as rt:
        with rt.db.session() as session:
            number = update_alert(session, rt.settings, alert_id, body, actor="cli").number
        sent = _fan_out(rt, alert_id, show_progress=False)
    console.print(f"alert {alert_id} updated (version {number}): {sent} message(s) sent")


@app.command("attach")
@handle_errors
def attach(reply_id: int = typer.Argument(..., help="The reply's id, from aln alert status.")
           ) -> None:
    """Attach a bare YES that several alerts were waiting for to the alert it answers."""
    with runtime() as rt:
        with rt.db.session() as session:
            outcome = attach_reply(session, rt.settings, reply_id, actor="cli")
        _fan_out(rt, None, show_progress=False)
    covered = " (zone covered)" if outcome.zone_acknowledged else ""
    console.print(f"reply {reply_id} attached: {outcome.zone}{covered}")
