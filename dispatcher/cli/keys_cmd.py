"""`aln keys rotate|check`: move every stored secret to the current `ALN_SECRET_KEY`."""

from __future__ import annotations

import sys

import typer

from dispatcher.cli.common import (
    console,
    err_console,
    handle_errors,
    print_json,
    runtime,
    styled,
)
from dispatcher.privacy.rotation import BATCH_SIZE, RotationReport, rotate

app = typer.Typer(help="Encryption keys: rotate, check.", no_args_is_help=True)


@app.command("rotate")
@handle_errors
def rotate_cmd(
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", min=1,
                                   help="Rows rewritten per transaction."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-encrypt and re-hash every contact, stored webhook and spooled request under
    ALN_SECRET_KEY, reading with ALN_PREVIOUS_SECRET_KEYS. Safe to stop and rerun."""
    with runtime() as rt:
        if not rt.vault.previous:
            err_console.print("note: ALN_PREVIOUS_SECRET_KEYS is empty: only rows already "
                              "under ALN_SECRET_KEY can be read", highlight=False)
        report = rotate(rt, batch_size=batch_size, progress=None if as_json else _progress)
        max_age_days = rt.settings.ack_link_max_age_seconds / 86400
    _finish(report, as_json, done=(
        f"every stored secret is under ALN_SECRET_KEY. Keep ALN_PREVIOUS_SECRET_KEYS for "
        f"{max_age_days:g} more days (ALN_ACK_LINK_MAX_AGE) so acknowledgement links "
        "already sent keep working; then remove it."))


@app.command("check")
@handle_errors
def check_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Count what is under the current key, what still needs `aln keys rotate`, and name
    what no configured key can read. Changes nothing."""
    with runtime() as rt:
        report = rotate(rt, check_only=True)
    _finish(report, as_json, done="every stored secret is under ALN_SECRET_KEY.",
            pending="to rewrite under ALN_SECRET_KEY")


def _progress(kind: str, seen: int) -> None:
    # One line per committed batch: an operator (or a test) sees how far it got.
    sys.stdout.write(f"{kind}: {seen} looked at\n")
    sys.stdout.flush()


def _finish(report: RotationReport, as_json: bool, *, done: str,
            pending: str = "rewritten") -> None:
    if as_json:
        print_json(report.as_dict())
    else:
        for kind in ("contacts", "inbound", "spool"):
            tally = getattr(report, kind)
            console.print(f"{kind}: {tally.rewritten} {pending}, {tally.current} already "
                          f"current, {len(tally.unreadable)} unreadable", highlight=False)
    if report.unreadable:
        for line in report.unreadable:
            err_console.print(styled(("unreadable:", "bold red"), f" {line}"))
        err_console.print(styled(("error:", "bold red"),
                                 f" {len(report.unreadable)} stored secret(s) cannot be read "
                                 "with the configured keys (listed above); add the key they "
                                 "were written with to ALN_PREVIOUS_SECRET_KEYS and rerun"))
        raise typer.Exit(2)
    if not as_json and (pending == "rewritten" or not (
            report.contacts.rewritten or report.inbound.rewritten or report.spool.rewritten)):
        console.print(done, highlight=False)
