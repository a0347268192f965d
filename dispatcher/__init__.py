"""The ALN alert engine."""

from dispatcher import sqlite_setup

# Before anything imports sqlite3 (see the module).
sqlite_setup.configure()
