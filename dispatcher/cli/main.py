"""The `aln` command: every subcommand opens (and migrates) the database on first use."""

from __future__ import annotations

import typer

from dispatcher.cli import (
    alert_cmd,
    cap_cmd,
    channels_cmd,
    db_cmd,
    keys_cmd,
    officer_cmd,
    privacy_cmd,
    report_cmd,
    roster_cmd,
    run_cmd,
    simulator_cmd,
)
from dispatcher.runtime import configure_logging

app = typer.Typer(
    help="ALN alert engine: reach Citizen Liaison Volunteers, take their replies, escalate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(roster_cmd.app, name="roster")
app.add_typer(roster_cmd.zones_app, name="zones")
app.add_typer(alert_cmd.app, name="alert")
app.add_typer(officer_cmd.app, name="officer")
app.add_typer(cap_cmd.app, name="cap")
app.add_typer(channels_cmd.app, name="channels")
app.add_typer(simulator_cmd.app, name="simulator")
app.add_typer(db_cmd.app, name="db")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(privacy_cmd.retention_app, name="retention")
roster_cmd.app.command("erase")(privacy_cmd.erase)

run_cmd.register(app)
app.command("report")(report_cmd.report)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    import logging

    configure_logging(logging.DEBUG if verbose else logging.WARNING)


if __name__ == "__main__":
    app()
