"""`aln cap export` and `aln cap import` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from dispatcher.cap import validate_cap
from dispatcher.cli import cap_cmd
from tests.cap.conftest import FIXTURES
from tests.cap.test_cap_import import EXTERNAL_ENTITY

#: Mounted as `aln` mounts it, without importing every other command (and its dependencies).
app = typer.Typer()
app.add_typer(cap_cmd.app, name="cap")


def _alerts(url: str) -> list[tuple[int, str]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT id, state FROM alerts"))]
    finally:
        engine.dispose()


def test_import_then_export_through_the_cli(cli_env: dict[str, str], database_url: str,
                                           tmp_path: Path) -> None:
    runner = CliRunner()
    imported = runner.invoke(app, ["cap", "import", str(FIXTURES / "weather_service_hurricane.xml"),
                                   "--json"], env=cli_env)
    assert imported.exit_code == 0, imported.output
    data = json.loads(imported.stdout)
    assert data["zones"] == ["Oaxaca", "Chiapas", "Querétaro"]
    assert data["unmatched_areas"] == ["Guatemala border", "Oaxca coast"]
    assert _alerts(database_url) == [(data["id"], "draft")]

    out = tmp_path / "alert.xml"
    exported = runner.invoke(app, ["cap", "export", str(data["id"]), "-o", str(out)],
                             env=cli_env)
    assert exported.exit_code == 0, exported.output
    assert validate_cap(out.read_bytes()) == []
    to_stdout = runner.invoke(app, ["cap", "export", str(data["id"])], env=cli_env)
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout_bytes.strip() == out.read_bytes()


def test_import_prints_draft_zones_and_unmatched_areas(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["cap", "import", str(FIXTURES / "weather_service_hurricane.xml")], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "draft alert 1: Hurricane Warning" in result.stdout
    assert "zones: Oaxaca, Chiapas, Querétaro" in result.stdout
    assert "zone 'Oaxca coast' not found (did you mean 'Oaxaca'?)" in result.stdout


def test_hostile_file_is_refused_with_exit_2_and_nothing_stored(
        cli_env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.xml"
    path.write_bytes(EXTERNAL_ENTITY)
    result = CliRunner().invoke(app, ["cap", "import", str(path)], env=cli_env)
    assert result.exit_code == 2
    assert "DOCTYPE" in result.output and "Traceback" not in result.output
    assert _alerts(database_url) == []


def test_export_of_a_missing_alert_says_so(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["cap", "export", "42"], env=cli_env)
    assert result.exit_code == 2
    assert "alert 42 not found" in result.output
