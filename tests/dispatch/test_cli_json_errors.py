"""With `--json`, a CLI error is the API's RFC 9457 problem on stdout, and exit code 2."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import typer
from sqlalchemy.exc import OperationalError

from dispatcher.cli.common import handle_errors
from tests.dispatch.test_cli_alert import aln
from tests.engine import Engine


def test_a_json_command_prints_its_error_as_a_problem(engine: Engine) -> None:
    result = aln(engine, "alert", "send", "--zone", "Oaxca", "--body", "x", "--json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["type"] == "urn:aln:problem:invalid-input" and doc["status"] == 422
    assert doc["title"] == "Unprocessable Entity" and "did you mean 'Oaxaca'" in doc["detail"]
    missing = aln(engine, "alert", "status", "999", "--json")
    assert missing.exit_code == 2
    assert json.loads(missing.stdout) == {
        "type": "urn:aln:problem:not-found", "title": "Not Found", "status": 404,
        "detail": "alert 999 not found"}


def test_without_json_an_error_stays_one_line_on_stderr(engine: Engine) -> None:
    result = aln(engine, "alert", "status", "999")
    assert result.exit_code == 2 and result.stdout == ""
    assert "alert 999 not found" in result.stderr


def test_a_json_command_on_a_full_disk_prints_a_503_problem(capsys: Any) -> None:
    """The storage failure main's CLI reports in one line (exit 3) is a problem with --json;
    the error is the one SQLite raises on a full disk (SQLITE_FULL, 13)."""
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13

    @handle_errors
    def command(as_json: bool = False) -> None:
        raise OperationalError("INSERT INTO deliveries ...", {}, full)

    with pytest.raises(typer.Exit) as stopped:
        command(as_json=True)
    assert stopped.value.exit_code == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == 503 and doc["type"] == "urn:aln:problem:unavailable"
    assert doc["detail"].startswith("the database cannot be written: the disk is full")
