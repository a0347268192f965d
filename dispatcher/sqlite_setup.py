"""SQLite's process-wide configuration, made before Python's sqlite3 first loads SQLite.

SQLite counts every allocation it makes (`SQLITE_CONFIG_MEMSTATUS`, on by default), each
count behind one mutex shared by the whole process: building a 100,000-recipient alert's
status JSON, whose every value is an allocation, took 1.29 s with the counts and 1.09 s
without (`aln alert status --json`, six pairs alternately). SQLite's list of recommended
compile-time options turns them off (`SQLITE_DEFAULT_MEMSTATUS=0`), as Node.js's and
better-sqlite3's builds do; we read none of what they feed (`sqlite3_memory_used`, the
heap limits, `sqlite3_status`).

Python's sqlite3 offers no `sqlite3_config`, and SQLite takes it only before it first
initializes, which importing `sqlite3` does. So `configure` calls it through ctypes, on
the library Python's own `_sqlite3` links to (loaded, not imported: the module is still
imported as usual later), when the `dispatcher` package is first imported. Where that
cannot be done (sqlite3 already imported, a build that hides the symbol, no sqlite3 at
all), nothing changes but the speed. Like every `sqlite3_config`, it must not race
another thread's first use of SQLite: it runs at import, before the engine starts any.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys

#: sqlite3.h: `#define SQLITE_CONFIG_MEMSTATUS 9  /* boolean */`.
_SQLITE_CONFIG_MEMSTATUS = 9
_SQLITE_OK = 0

#: Whether `configure` turned SQLite's allocation counts off in this process.
MEMSTATUS_OFF = False


def configure() -> bool:
    """Turn SQLite's allocation counts off, if SQLite is not yet loaded; True if done."""
    global MEMSTATUS_OFF
    if MEMSTATUS_OFF:
        return True
    if "_sqlite3" in sys.modules:
        return False  # initialized already: it would answer SQLITE_MISUSE
    try:
        spec = importlib.util.find_spec("_sqlite3")
        if spec is None or not spec.origin:
            return False
        config = ctypes.CDLL(spec.origin).sqlite3_config
    except (OSError, AttributeError, ImportError, ValueError):
        return False
    # `int sqlite3_config(int, ...)`: the fixed argument typed, the variadic one passed
    # as a C int (platforms whose variadic calls differ, Apple's arm64, need both).
    config.argtypes = [ctypes.c_int]
    config.restype = ctypes.c_int
    MEMSTATUS_OFF = config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == _SQLITE_OK
    return MEMSTATUS_OFF
