"""What SQLite's `synchronous=FULL` costs per commit, next to the `NORMAL` it replaced.

The webhook and fan-out benchmarks run minutes apart and swing with whatever else the
machine is doing; this one alternates the two settings commit by commit on one disk,
so both see the same conditions. Each commit is the size of an intake batch at the
acknowledgement benchmark's rate (about ten webhooks: stored requests, responses and
audit events) or of a fan-out's results. One JSON line per setting.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dispatcher.db import make_engine

#: Commits per setting.
COMMITS = 2_000
#: Rows written per commit, and bytes per row (an encrypted raw webhook is about this).
ROWS, ROW_BYTES = 30, 600


def test_cost_of_synchronous_full(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'durability.db'}")  # FULL, as in production
    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    payload = [(os.urandom(ROW_BYTES),) for _ in range(ROWS)]
    times: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    for i in range(2 * COMMITS):
        mode = "FULL" if i % 2 else "NORMAL"
        cur.execute(f"PRAGMA synchronous={mode}")
        start = time.perf_counter()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany("INSERT INTO t (data) VALUES (?)", payload)
        cur.execute("COMMIT")
        times[mode].append((time.perf_counter() - start) * 1000)
    raw.close()
    engine.dispose()
    for mode, ms in times.items():
        ms.sort()
        print(json.dumps({"bench": "sqlite_commit", "synchronous": mode, "commits": COMMITS,
                          "rows_per_commit": ROWS, "p50_ms": round(ms[len(ms) // 2], 3),
                          "p99_ms": round(ms[int(len(ms) * 0.99)], 3),
                          "max_ms": round(ms[-1], 3),
                          "mean_ms": round(sum(ms) / len(ms), 3)}))
