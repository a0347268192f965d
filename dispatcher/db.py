"""Engine, sessions and migrate-on-first-use for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, Select, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from dispatcher.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: How long SQLite waits for a competing writer before reporting "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's sync level: FULL makes each commit durable against power loss in WAL mode.
SQLITE_SYNCHRONOUS = "FULL"
#: PostgreSQL settings a commit's durability depends on, with the values that keep it.
#: `synchronous_commit` may be anything but `off` (`local`, `remote_write`, `on`,
#: `remote_apply` all flush the local WAL before a commit returns).
PG_DURABILITY = {"fsync": ("on",), "full_page_writes": ("on",),
                 "synchronous_commit": ("local", "remote_write", "on", "remote_apply")}
#: PostgreSQL advisory lock id held while migrating, so concurrent workers migrate once.
MIGRATION_LOCK_ID = 4_821_000
#: Mode of the SQLite file and its WAL and shared-memory files: they hold the roster.
PRIVATE_FILE_MODE = 0o600
#: The execution option of `Database.reading`'s connections.
READING = "aln_reading"
#: The files SQLite keeps beside the database in WAL mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
#: `Session.info` key of `Database.reading(twin=True)`'s second connection.
TWIN = "aln_twin"
#: A statement that starts a SQLite transaction's read, and so fixes its snapshot (it
#: reads the database header; `SELECT 1` reads nothing, and fixes nothing).
_SQLITE_START_READ = "PRAGMA schema_version"


def make_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (SQLite gives its WAL and SHM the
    database file's mode when it creates them), and tighten files an older version left
    readable by others."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
    for file in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o777 != PRIVATE_FILE_MODE:
                os.chmod(file, PRIVATE_FILE_MODE)


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            # FULL: in WAL mode every commit syncs the WAL before it returns, so what
            # answered a webhook, recorded a hand-off or fired an escalation survives a
            # power cut (NORMAL may roll back the last commits). Batched writes keep
            # the cost small (README, "Reliability").
            cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cur.close()
            # Let SQLAlchemy's "begin" below issue the BEGIN, not the driver.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # A deferred transaction that reads, then writes after another process committed
            # fails with SQLITE_BUSY_SNAPSHOT; taking the write lock up front makes writers
            # queue on busy_timeout instead, so no write is ever lost to "database is locked".
            # `Database.reading` only reads: its deferred BEGIN takes a snapshot, no lock,
            # and its connection refuses writes until it goes back to the pool.
            reading = bool(conn.get_execution_options().get(READING))
            if reading and not conn.connection.info.get(READING):
                conn.exec_driver_sql("PRAGMA query_only=1")
                conn.connection.info[READING] = True
            conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "checkin")
        def _writable_again(dbapi_conn, record):  # type: ignore[no-untyped-def]
            # Back in the pool, a reader's connection may write again: whoever takes it
            # next may not BEGIN through the listener above (`raw_connection`'s VACUUM).
            if dbapi_conn is not None and record.info.pop(READING, False):
                dbapi_conn.execute("PRAGMA query_only=0")

        return engine
    url = database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def needs_migration(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    # A read: every command's start asks, and need not queue behind SQLite's writer.
    with engine.connect().execution_options(**{READING: True}) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current != head


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; cheap when it already is."""
    if not needs_migration(engine):
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                if needs_migration(engine):
                    command.upgrade(alembic_config(engine), "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                conn.commit()
    else:
        command.upgrade(alembic_config(engine), "head")
    log.info("database migrated to the newest schema")


def durability_problems(engine: Engine) -> list[str]:
    """Settings under which a committed row may not survive a power cut; empty when none."""
    if engine.dialect.name != "postgresql":
        raw = engine.raw_connection()  # no BEGIN IMMEDIATE: reading must not queue
        try:
            cur = raw.cursor()
            level = cur.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            raw.close()
        # 2 = FULL, 3 = EXTRA
        return [] if level in (2, 3) else [f"SQLite synchronous={level} (FULL is needed)"]
    problems = []
    with engine.connect() as conn:
        for name, good in PG_DURABILITY.items():
            value = conn.exec_driver_sql(f"SHOW {name}").scalar()
            if value not in good:
                problems.append(f"PostgreSQL {name}={value} ({' or '.join(good)} is needed)")
    return problems


#: SQLite result codes (primary, the low byte) meaning the database cannot be written.
_SQLITE_CANNOT_WRITE = {13: "the disk is full", 8: "the database is read-only",
                        10: "a disk I/O error"}
#: PostgreSQL SQLSTATEs with the same meaning (class 53: insufficient resources).
_PG_CANNOT_WRITE = {"53100": "the database server's disk is full",
                    "25006": "the database is read-only (a standby?)",
                    "53200": "the database server is out of memory"}


def storage_problem(exc: BaseException) -> str | None:
    """Why the database cannot be written, when `exc` says so (full disk, read-only);
    None for any other error. Both drivers' errors are recognised by code, not text."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_CANNOT_WRITE:
            return _SQLITE_CANNOT_WRITE[code & 0xFF]
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in _PG_CANNOT_WRITE:
            return _PG_CANNOT_WRITE[sqlstate]
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


T = TypeVar("T")
#: SQLSTATEs after which PostgreSQL has rolled the transaction back and asks for a retry:
#: deadlock_detected, serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
#: How many times in all `Database.run` tries a transaction that keeps losing conflicts.
CONFLICT_ATTEMPTS = 4


class Database:
    """One engine and its session factory; created once per process and passed around."""

    def __init__(self, settings: Settings, *, migrate_now: bool = True) -> None:
        self.settings = settings
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            make_private(path)
        self.engine = make_engine(settings.database_url)
        if migrate_now:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reading_engine = self.engine.execution_options(**{READING: True})
        self._readers = sessionmaker(self._reading_engine, expire_on_commit=False)
        for problem in durability_problems(self.engine):
            log.warning("commits may not survive a power cut: %s", problem)
        # SQLite has one writer at a time. Threads of this process queue on this lock
        # instead of SQLite's busy handler, which sleeps in growing steps and would turn
        # a burst of webhooks into seconds of latency. Other processes still wait on
        # busy_timeout.
        self._sqlite_lock = threading.RLock() if self.is_sqlite else None
        self._gate: Any = None  # `_sqlite_gate`

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        lock = self._sqlite_lock or contextlib.nullcontext()
        with lock, self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self, *, twin: bool = False) -> Iterator[Session]:
        """A session that only reads, and reads one committed state (`read_one_snapshot`)
        without waiting for writers or holding them up: on SQLite a deferred transaction
        (a snapshot of the WAL) outside the writers' lock, so a status or the next zone
        of a fill is read beside the replies' intake or another fill's writes; on
        PostgreSQL a read-only transaction (REPEATABLE READ: never rolled back for a
        conflict). Writing in it is an error (SQLite: "attempt to write a readonly
        database"; PostgreSQL: read-only transaction), and it is always rolled back.

        `twin`: on SQLite, `session.info[TWIN]` is a second connection reading the same
        snapshot, or None when none could be had without waiting (a read split in two,
        as a whole alert's status is: `recipient_json`). Setting it up holds the write
        lock for as long as two reads take to start (another process's writer meanwhile
        waits on its busy handler, a millisecond or so). PostgreSQL hands a
        transaction's snapshot to another connection whenever asked, and needs none."""
        with self._readers() as session:
            read_one_snapshot(session, read_only=True)
            with self._sqlite_twin(session) if twin and self.is_sqlite else nullcontext():
                try:
                    yield session
                finally:
                    session.rollback()

    @contextmanager
    def _sqlite_twin(self, session: Session) -> Iterator[None]:
        """`reading`'s twin on SQLite, which cannot hand a snapshot to another connection:
        but two transactions that start their reads while no write can commit read the
        same one (`_read_together`). Without a twin (no connection to spare, a writer at
        work, the twin failing to start) the read is done in one: never held up, never
        refused for a connection it did not need."""
        twin = self._start_twin(session) if spare_connections(self.engine) else None
        session.info[TWIN] = twin
        try:
            yield
        finally:
            del session.info[TWIN]
            if twin is not None:
                twin.close()  # its transaction rolled back, and back to the pool

    def _start_twin(self, session: Session) -> Connection | None:
        """A connection reading the session's snapshot, or None (then none is held)."""
        twin = None
        try:
            twin = self._reading_engine.connect()
            twin.begin()
            if self._read_together(session, twin):
                return twin
        except (DBAPIError, SATimeoutError):
            log.warning("no twin connection to read beside this one; reading in one",
                        exc_info=True)
        if twin is not None:
            twin.close()
        return None

    def _read_together(self, session: Session, twin: Connection) -> bool:
        """Start the session's and the twin's reads (so fix their snapshots) while the
        write lock is held: this process's writers' lock, then SQLite's, taken by the
        gate, a connection of its own that never waits for it. False, and no read started,
        when a writer holds either."""
        assert self._sqlite_lock is not None
        if not self._sqlite_lock.acquire(blocking=False):
            return False
        try:
            gate = self._sqlite_gate()
            try:
                gate.execute("BEGIN IMMEDIATE")
            except self.engine.dialect.loaded_dbapi.OperationalError:  # another process
                return False                                            # is writing
            try:
                session.connection().exec_driver_sql(_SQLITE_START_READ)
                twin.exec_driver_sql(_SQLITE_START_READ)
                return True
            finally:
                gate.execute("ROLLBACK")
        finally:
            self._sqlite_lock.release()

    def _sqlite_gate(self) -> Any:
        """`_read_together`'s connection, opened on first use outside the pool, with no
        busy timeout; used only under this process's writers' lock, so by one at a time."""
        if self._gate is None:
            raw = self.engine.raw_connection()
            gate = raw.driver_connection
            raw.detach()  # never lent by the pool again; `dispose` closes it
            gate.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            self._gate = gate
        return self._gate

    def run(self, work: Callable[[Session], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
        """`work` in one transaction, run again (up to `attempts` times in all) when
        PostgreSQL rolled it back as a deadlock's or a serialization conflict's victim:
        the documented cure, and safe because nothing of the failed run was kept."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as session:
                    return work(session)
            except DBAPIError as exc:
                if attempt == attempts or \
                        getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES:
                    raise
                log.info("transaction lost a conflict (%s); running it again",
                         getattr(exc.orig, "sqlstate", None))
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        self.engine.dispose()


def read_one_snapshot(session: Session, *, read_only: bool = False) -> None:
    """The session's transaction reads the database as of one moment from its first
    statement on, when it has run none yet: a read of several statements (an alert's
    status: its recipients, then its zones) then never mixes states before and after a
    commit, a state that never existed. PostgreSQL's READ COMMITTED takes a new snapshot
    per statement, so its transaction is made REPEATABLE READ (a read then never fails);
    SQLite's transactions always read one snapshot. `read_only`: PostgreSQL's transaction
    refuses writes too (in the same statement: one round trip less)."""
    connection_reads_one_snapshot(session.connection(), read_only=read_only)


def connection_reads_one_snapshot(db: Connection, *, read_only: bool = False) -> None:
    """`read_one_snapshot` for a connection's transaction (one not in a session)."""
    if db.dialect.name == "sqlite":
        return
    info = db.connection.driver_connection.info  # type: ignore[union-attr]
    if info.transaction_status == TransactionStatus.IDLE:
        db.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
                           + (", READ ONLY" if read_only else ""))
    elif read_only:
        db.exec_driver_sql("SET TRANSACTION READ ONLY")


_PG_NOW = select(func.clock_timestamp())


def db_now(session: Session) -> datetime:
    """The database's clock (UTC): it, not a worker's clock, decides what is due.

    PostgreSQL's clock is the server's, shared by workers on several machines. A SQLite
    file is only ever used on the machine it lives on, and SQLite's "now" is that machine's
    clock read by SQLite's C code: read here in Python it is the same clock without a round
    trip, and one that a test can move (time-machine cannot move SQLite's C code).
    """
    if session.get_bind().dialect.name == "sqlite":
        return datetime.now(UTC)
    value: datetime = session.execute(_PG_NOW).scalar_one()
    return value.astimezone(UTC)


def db_today(session: Session, timezone: str) -> date:
    """Today by the database clock, in the post's time zone: a term that ends on the 14th
    ends at midnight in Mexico City, not in UTC or on a worker's own clock."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; using UTC for today's date", timezone)
        zone = ZoneInfo("UTC")
    return db_now(session).astimezone(zone).date()


def spare_connections(engine: Engine, wanted: int = 1) -> bool:
    """The pool has this many connections to lend without waiting: statuses read at once in
    `aln serve` must not each hold one connection while waiting for another."""
    pool = engine.pool
    return not isinstance(pool, QueuePool) or pool.checkedout() + wanted <= pool.size()


def fetch_plain(db: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of a statement whose parameters are all numbers and text, as the driver
    gives them (plain tuples, no SQLAlchemy type's conversion), in the connection's
    transaction: SQLAlchemy's result rows (100,000 `Row`s built, then read again) cost a
    whole alert's status ~0.4 s more CPU time, and a 100,000-volunteer alert's targeting
    ~0.1 s. Unflushed changes of a session are not seen: flush first."""
    compiled = statement.compile(dialect=db.dialect,
                                 compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if not all(type(value) in (int, str) for value in params.values()):
        # Only values SQLAlchemy passes on unconverted: a time, say, is written as SQLite
        # text by SQLAlchemy's type, and the driver would write it otherwise.
        raise TypeError("fetch_plain takes only numbers and text as parameters")
    sql = str(compiled)
    values = (tuple(params[name] for name in compiled.positiontup or ())
              if compiled.positional else params)
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql, values)
        return list(cursor.fetchall())
    except db.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would raise it: callers (the CLI's storage errors, `Database.run`'s
        # retries) know DBAPIError, not each driver's own.
        raise DBAPIError.instance(sql, values, exc, db.dialect.loaded_dbapi.Error,
                                  dialect=db.dialect) from exc
    finally:
        cursor.close()
