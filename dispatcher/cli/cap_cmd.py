"""`aln cap export` and `aln cap import`: alerts as CAP 1.2 XML, CAP messages as drafts."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dispatcher.cap import create_draft_alert, export_cap, import_cap
from dispatcher.cli.common import console, err_console, handle_errors, print_json, runtime
from dispatcher.domain import AlertState
from dispatcher.errors import InvalidInput
from dispatcher.roster.posts import ensure_post, zone_aliases

app = typer.Typer(help="Exchange alerts as CAP 1.2 (Common Alerting Protocol) XML.",
                  no_args_is_help=True)


@app.command("export")
@handle_errors
def export_cmd(
    alert_id: int = typer.Argument(..., help="Alert id."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Print (or write) one alert as a CAP 1.2 message."""
    with runtime() as rt, rt.db.session() as session:
        ensure_post(session, rt.settings, rt.vault)
        xml = export_cap(session, alert_id)
    if output is None:
        sys.stdout.buffer.write(xml + b"\n")
        sys.stdout.flush()
        return
    try:
        output.write_bytes(xml)
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
    err_console.print(f"wrote alert {alert_id} as CAP to {output}")


@app.command("import")
@handle_errors
def import_cmd(
    path: Path = typer.Argument(..., help="CAP 1.2 XML file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Store a CAP message as a draft alert (nothing is sent) and show what matched."""
    try:
        xml = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    with runtime() as rt, rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        draft = import_cap(session, post, xml,
                           aliases=zone_aliases(rt.settings.config_dir, post.key))
        alert = create_draft_alert(session, post, draft)
        alert_id, state = alert.id, alert.state
    if state == AlertState.CANCELLED:
        if as_json:
            print_json({"id": alert_id, "state": state.value,
                        "cancelled_by": draft["cap_identifier"]})
            return
        console.print(f"draft alert {alert_id} cancelled by CAP Cancel {draft['cap_identifier']} "
                      f"from {draft['cap_sender']}")
        return
    if as_json:
        print_json({"id": alert_id, "state": AlertState.DRAFT.value, "title": draft["title"],
                    "kind": draft["kind"], "exercise": draft["exercise"],
                    "zones": draft["zones"], "unmatched_areas": draft["unmatched_areas"]})
        return
    label = "exercise draft" if draft["exercise"] else "draft"
    console.print(f"{label} alert {alert_id}: {draft['title']}")
    console.print(f"zones: {', '.join(draft['zones'])}")
    for hint in draft["unmatched_hints"]:
        console.print(f"unmatched area: {hint}")
