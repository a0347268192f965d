"""SQLite's allocation counts are off in every process that imports the engine first
(`dispatcher.sqlite_setup`): they cost a large alert's status a sixth of its time."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _configurable() -> bool:
    """Python's `_sqlite3` is a shared object through which SQLite's C API is reached (not
    so where it is built in, or its symbols hidden: the engine then leaves SQLite alone)."""
    spec = importlib.util.find_spec("_sqlite3")
    try:
        return spec is not None and hasattr(ctypes.CDLL(spec.origin or ""), "sqlite3_config")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _configurable(),
                                reason="this Python's SQLite is not reachable through ctypes")

#: Opens a database, writes to it, and prints whether the engine turned the counts off and
#: how much memory SQLite says it holds (0 when it keeps no counts).
PROBE = """
import ctypes, sys
{first}
import _sqlite3
connection = sqlite3.connect(":memory:")
connection.execute("CREATE TABLE t (x)")
connection.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
used.restype = ctypes.c_int64
print(dispatcher.sqlite_setup.MEMSTATUS_OFF, used())
"""


def probe(first: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first)],
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    off, used = done.stdout.split()
    return off, int(used)


def test_the_engine_turns_sqlites_allocation_counts_off_before_sqlite_loads() -> None:
    # As `aln` starts: its entry point is in the package.
    assert probe("import dispatcher.cli.main, dispatcher, sqlite3") == ("True", 0)


def test_sqlite_loaded_before_the_engine_is_left_as_it_is() -> None:
    off, used = probe("import sqlite3, dispatcher")
    assert off == "False" and used > 0
