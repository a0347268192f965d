"""Report speed: an alert with 100,000 deliveries (60,000 volunteers in two tiers, SMS and
email), with the acknowledgements, HELP replies and escalated and unreached zones a real
one has (`tests.bench.fixtures.bulk_alert`), on SQLite and on PostgreSQL.

Target: `build_report` in <= 2 s, and so `aln report` in each format: the figures and then
the text the command writes (`report_text`), in-process (the command's start-up, its
imports, is not counted).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.report_cmd import FORMATS, report_text
from dispatcher.reports.figures import build_report
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_alert, bulk_roster, emit
from tests.conftest import make_settings

#: Five sixths of them are asked (the second tier where the first did not answer), each
#: on two channels: 100,000 deliveries.
VOLUNTEERS = 60_000
DELIVERIES = 100_000
TARGET_SECONDS = 2.0


def run(url: str) -> dict[str, Any]:
    rt = Runtime.open(make_settings(url))
    bulk_roster(rt, VOLUNTEERS, zones=15, email=True, tiers=2)
    alert_id = bulk_alert(rt)
    with rt.db.session() as s:
        start = time.perf_counter()
        report = build_report(s, alert_id)
        seconds = time.perf_counter() - start
    rt.close()
    result: dict[str, Any] = {
        "deliveries": report["summary"]["deliveries"],
        "volunteers": report["summary"]["recipients"], "seconds": round(seconds, 3)}
    for fmt in FORMATS:
        start = time.perf_counter()
        report_text(report, fmt)
        result[f"{fmt}_seconds"] = round(seconds + time.perf_counter() - start, 3)
    return result


def check(database: str, result: dict[str, Any]) -> None:
    emit({"bench": "report", "database": database, **result,
          "target_seconds": TARGET_SECONDS})
    assert result["deliveries"] >= DELIVERIES
    missed = {key: value for key, value in result.items()
              if key.endswith("seconds") and value > TARGET_SECONDS}
    assert not missed, f"over {TARGET_SECONDS} s on {database}: {missed}"


def test_report_speed(tmp_path: Path) -> None:
    check("sqlite", run(f"sqlite:///{tmp_path / 'bench.db'}"))


@pytest.mark.postgres
def test_report_speed_postgres(postgres_url: str) -> None:
    check("postgresql", run(postgres_url))
