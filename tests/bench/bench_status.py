"""Status speed: `aln alert status ID --json` of an alert to 100,000 volunteers.

The alert is one a real crisis leaves (`tests.bench.fixtures.bulk_alert`): zones
acknowledged, escalated and unreached, acknowledgements, HELP and other replies.
The command runs in its own process with its output to a pipe (as a script reads
it), timed from its start after the imports to its exit. Target: <= 1 s, on SQLite
and on PostgreSQL (when ALN_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_alert, bulk_roster, emit
from tests.conftest import CONFIG_DIR, make_settings

RECIPIENTS = 100_000
TARGET_SECONDS = 1.0

#: The command in its own process: the time from after its imports to its end, on stderr.
COMMAND = textwrap.dedent('''
    import sys, time
    from dispatcher.cli.main import app
    t0 = time.perf_counter()
    try:
        app(["alert", "status", sys.argv[1], "--json"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    sys.stdout.flush()
    print(time.perf_counter() - t0, file=sys.stderr)
''')


def test_status_100000(database_url: str, tmp_path: Path) -> None:
    rt = Runtime.open(make_settings(database_url))
    bulk_roster(rt, RECIPIENTS, zones=15, tiers=2)
    alert_id = bulk_alert(rt)
    rt.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "ALN_DATABASE_URL": database_url,
           "ALN_SECRET_KEY": "test-secret-key-not-for-production",
           "ALN_CONFIG_DIR": str(CONFIG_DIR), "ALN_POST": "mexico-city"}
    out_path = tmp_path / "status.json"
    with out_path.open("w") as out:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", COMMAND, str(alert_id)], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=600, env=env)
        process_seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = float(done.stderr.strip().splitlines()[-1])
    status = json.loads(out_path.read_text())
    emit({"bench": "status", "database": database_url.split(":", 1)[0].split("+")[0],
          "recipients": len(status["recipients"]), "seconds": round(seconds, 3),
          "process_seconds": round(process_seconds, 3),
          "json_mb": round(out_path.stat().st_size / 1e6, 1),
          "help": status["summary"]["help"], "target_seconds": TARGET_SECONDS})
    assert len(status["recipients"]) == RECIPIENTS
    assert seconds <= TARGET_SECONDS
