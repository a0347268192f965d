"""The `aln` command: every subcommand opens (and migrates) the database on first use."""

from __future__ import annotations

import importlib

import typer

from dispatcher.cli import report_cmd, roster_cmd, run_cmd
from dispatcher.runtime import configure_logging

app = typer.Typer(
    help="ALN alert engine: reach Citizen Liaison Volunteers, take their replies, escalate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(roster_cmd.app, name="roster")
app.add_typer(roster_cmd.zones_app, name="zones")

#: Sub-applications mounted when their module exists (built issue by issue).
_OPTIONAL = {
    "channels": "dispatcher.cli.channels_cmd",
    "simulator": "dispatcher.cli.simulator_cmd",
    "alert": "dispatcher.cli.alert_cmd",
    "cap": "dispatcher.cli.cap_cmd",
    "officer": "dispatcher.cli.officer_cmd",
}
for _name, _module in _OPTIONAL.items():
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    if isinstance(getattr(_mod, "app", None), typer.Typer):
        app.add_typer(_mod.app, name=_name)

run_cmd.register(app)
app.command("report")(report_cmd.report)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    import logging

    configure_logging(logging.DEBUG if verbose else logging.WARNING)


if __name__ == "__main__":
    app()
