"""Untrusted text (replies, names, zones, errors quoting them) is never Rich markup."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dispatcher.cli import common
from dispatcher.cli.alert_cmd import status_table
from dispatcher.cli.main import app
from tests.dispatch.test_cli_alert import env_for
from tests.engine import Engine

VICTOR = "+529515101001"  # Oaxaca primary
MARKUP_REPLY = "YES {code} [/x]"


def aln(engine: Engine, *args: str) -> Any:
    # Wide enough that no table cell wraps (see the autouse fixture for the console's own).
    return CliRunner().invoke(app, list(args), env={**env_for(engine), "COLUMNS": "300"})


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's console keeps a width taken from COLUMNS when it was imported (pytest-xdist's
    # workers set COLUMNS=80), so the environment alone cannot widen it.
    monkeypatch.setattr(common.console, "width", 300)


def _acknowledge_with_markup(engine: Engine) -> tuple[int, str]:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = MARKUP_REPLY.format(code=engine.code(alert_id))
    engine.sim.inbound(VICTOR, reply)
    engine.wait_zone(alert_id, "Oaxaca", "acknowledged")
    return alert_id, reply


def test_a_reply_with_rich_markup_is_shown_verbatim_by_alert_status(engine: Engine) -> None:
    alert_id, reply = _acknowledge_with_markup(engine)
    shown = aln(engine, "alert", "status", str(alert_id))
    assert shown.exit_code == 0, shown.output
    assert reply in shown.output
    watched = aln(engine, "alert", "status", str(alert_id), "--watch")
    assert watched.exit_code == 0, watched.output
    assert reply in watched.output


def test_the_status_table_is_safe_on_any_console(engine: Engine) -> None:
    # The demo draws this table in a Live display, on whatever console it is given.
    alert_id, reply = _acknowledge_with_markup(engine)
    data = engine.status(alert_id)
    data["title"] = "[bold]Road blocks[/] [/x]"
    out = io.StringIO()
    Console(file=out, width=200, markup=True).print(status_table(data))
    assert reply in out.getvalue() and "[bold]Road blocks[/] [/x]" in out.getvalue()


def test_an_error_quoting_markup_is_one_line_not_a_traceback(engine: Engine) -> None:
    result = aln(engine, "alert", "send", "--zone", "[/x]", "--body", "x")
    assert result.exit_code == 2, result.output
    assert "zone '[/x]' not found" in result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)


def test_the_dry_run_shows_each_sms_language_in_brackets(engine: Engine) -> None:
    # Oaxaca's volunteers read Spanish, Puebla's primary English: both languages are used.
    result = aln(engine, "alert", "send", "--zone", "Oaxaca", "--zone", "Puebla", "--body",
                 "x", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "SMS [en]: " in result.output and "SMS [es]: " in result.output
    assert "SMS [ru]: " not in result.output  # only the languages the plan uses
