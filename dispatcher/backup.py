"""Backups an operator can trust: a consistent online copy of the SQLite database, and a
restore that will not overwrite a database in use by mistake.

SQLite's online backup API copies the database page by page under a read transaction,
so the copy is the database as of one commit even while `aln serve` writes (WAL lets
the writer go on). On PostgreSQL the server's own tools do this job (pg_dump); the
command says how instead of pretending.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatcher.claims import HEARTBEAT_STALE_SECONDS, process_is_gone
from dispatcher.errors import InvalidInput, Refused
from dispatcher.models import sqlite_utc
from dispatcher.settings import Settings

#: Pages copied per step: small steps let a busy writer in between them.
PAGES_PER_STEP = 1024


@dataclass(frozen=True)
class Copied:
    path: Path
    bytes: int
    alerts: int


def backup(settings: Settings, target: Path, *, force: bool = False) -> Copied:
    """Copy the live SQLite database to `target` (mode 0600), consistent as of one commit."""
    source = _sqlite_file(settings)
    if target.exists() and not force:
        raise Refused(f"{target} exists; choose another name or pass --force to replace it")
    if target.resolve() == source.resolve():
        raise InvalidInput("the backup cannot be the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    _create_private(partial)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        alerts = dst.execute("SELECT count(*) FROM alerts").fetchone()[0]
    finally:
        dst.close()
        src.close()
    os.replace(partial, target)
    os.chmod(target, 0o600)
    return Copied(target, target.stat().st_size, int(alerts))


def restore(settings: Settings, source: Path, *, force: bool = False) -> Copied:
    """Replace the configured SQLite database with the backup at `source`."""
    target = _sqlite_file(settings, must_exist=False)
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file")
    _check_backup(source)
    if target.exists() and target.stat().st_size > 0:
        live = _live_worker(target)
        if live and not force:
            raise Refused(f"the database {target} is in use by {live}; stop it first "
                          "(or pass --force if you are sure it is gone)")
        if not force:
            raise Refused(f"{target} already holds a database; pass --force to replace it "
                          "with the backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        _create_private(target)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        dst.execute("PRAGMA journal_mode=WAL")
        alerts = dst.execute("SELECT count(*) FROM alerts").fetchone()[0]
    finally:
        dst.close()
        src.close()
    for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        if path.exists():
            os.chmod(path, 0o600)
    return Copied(target, target.stat().st_size, int(alerts))


def postgres_advice(settings: Settings) -> str:
    return ("PostgreSQL keeps its own backups: take one with "
            "`pg_dump --format=custom --file aln.dump \"$ALN_DATABASE_URL\"` (consistent while "
            "aln serve runs) and restore into an empty database with "
            "`pg_restore --dbname \"$ALN_DATABASE_URL\" aln.dump`; or use continuous "
            "archiving (WAL) for point-in-time recovery.")


def _sqlite_file(settings: Settings, *, must_exist: bool = True) -> Path:
    path = settings.sqlite_path()
    if path is None:
        raise Refused(postgres_advice(settings))
    if must_exist and not path.is_file():
        raise InvalidInput(f"no database at {path}")
    return path


def _check_backup(path: Path) -> None:
    """The file is an intact SQLite database of this engine, or the restore stops here."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path} is not a SQLite database ({exc})") from None
    if ok != "ok":
        raise InvalidInput(f"{path} is damaged: {ok}")
    if not {"alembic_version", "alerts", "contacts"} <= tables:
        raise InvalidInput(f"{path} is not a backup of this engine's database")


def _live_worker(path: Path) -> str | None:
    """Who holds a fresh worker lease on the database at `path`, if anyone."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT name, host, pid, heartbeat_at FROM worker_leases"
                                ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    # The clock `db_now` reads on SQLite (the file is on this machine).
    now = datetime.now(UTC)
    for _name, host, pid, beat in rows:
        last = sqlite_utc(str(beat)).replace(tzinfo=UTC)
        fresh = now - last < timedelta(seconds=HEARTBEAT_STALE_SECONDS)
        # The worker guard's rule: a fresh lease counts unless its process is gone.
        if fresh and not process_is_gone(host, int(pid), alive_at=last):
            where = "this host" if host == socket.gethostname() else host
            return f"a worker (pid {pid} on {where})"
    return None


def _create_private(path: Path) -> None:
    """An empty file only its owner can read: a backup holds everyone's contacts."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.close(fd)
