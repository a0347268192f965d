"""With `--json`, a CLI error is the API's RFC 9457 problem on stdout, and exit code 2."""

from __future__ import annotations

import json

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
