"""`aln roster erase NAME` and `aln retention apply`: personal data removed, audited."""

from __future__ import annotations

import typer

from dispatcher.cli.common import console, err_console, handle_errors, print_json, runtime
from dispatcher.errors import InvalidInput
from dispatcher.privacy.erasure import erase_volunteer, find_volunteer
from dispatcher.privacy.retention import apply_retention
from dispatcher.roster.posts import ensure_post

retention_app = typer.Typer(help="How long personal data is kept.", no_args_is_help=True)


@handle_errors
def erase(
    name: str = typer.Argument("", help="The volunteer's name, as in the roster."),
    volunteer_id: int | None = typer.Option(None, "--id", help="Erase by id instead (two "
                                            "volunteers with one name)."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove a volunteer's name and contact details from every table and the spool;
    reports keep their figures under a pseudonym. Cannot be undone."""
    if not name and volunteer_id is None:
        raise InvalidInput("name: give the volunteer's name (or --id)")
    with runtime() as rt:
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            vid = volunteer_id if volunteer_id is not None else \
                find_volunteer(session, post, name).id
        if not yes and not as_json:
            typer.confirm(f"Erase volunteer {vid} ({name or 'by id'}) for good?", abort=True)
        result = erase_volunteer(rt, vid)
    if as_json:
        print_json({**result.counts(), "volunteer_id": result.volunteer_id,
                    "pseudonym": result.pseudonym, "compacted": result.compacted,
                    "unsearchable": result.unsearchable})
        return
    console.print(f"erased: now '{result.pseudonym}'; {result.contacts} contact paths, "
                  f"{result.memberships} memberships, {result.responses} replies, "
                  f"{result.inbound} stored requests, {result.spool_files} spooled requests, "
                  f"{result.deliveries_cancelled} unsent messages cancelled", highlight=False)
    _warn(result.audit_rows_quoting, result.unsearchable, result.compacted)


@retention_app.command("apply")
@handle_errors
def apply(
    days: int | None = typer.Option(None, "--days", min=1, help="Instead of "
                                    "ALN_RETENTION_DAYS."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Erase volunteers whose every term ended more than N days ago, and the text of
    inbound messages older than N days (report figures stay)."""
    with runtime() as rt:
        keep = days if days is not None else rt.settings.retention_days
        if not keep:
            raise InvalidInput("ALN_RETENTION_DAYS is 0 (keep everything); give --days")
        result = apply_retention(rt, keep)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"retention {keep} days: {len(result.volunteers)} volunteers erased, "
                  f"{result.inbound} inbound texts removed", highlight=False)
    _warn(result.audit_rows_quoting, result.unsearchable, result.compacted)


def _warn(audit_rows: int, unsearchable: list[str], compacted: bool) -> None:
    if audit_rows:
        err_console.print(f"note: {audit_rows} older audit row(s) quote the erased name or "
                          "a masked number; the audit log is append-only and keeps them",
                          highlight=False)
    for what in unsearchable:
        err_console.print(f"note: {what} could not be searched (no configured key opens it)",
                          highlight=False)
    if not compacted:
        err_console.print("note: another process holds the database open, so old pages "
                          "may remain in its write-ahead log until it is checkpointed",
                          highlight=False)
