"""Shared fixtures: a real SQLite file per test, or a fresh schema in the local PostgreSQL."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

from hypothesis import settings as hypothesis_settings  # noqa: E402

from dispatcher.runtime import Runtime  # noqa: E402
from dispatcher.settings import Settings  # noqa: E402

# No per-example deadline: time is measured by the benchmarks, never by a test (under a
# loaded machine, hypothesis's 200 ms deadline failed a pure in-memory lifecycle test).
hypothesis_settings.register_profile("aln", deadline=None)
# In CI, property tests explore the same examples every run: a red build is reproducible.
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("aln"),
                                     derandomize=True, database=None)
hypothesis_settings.load_profile(
    "ci" if os.environ.get("CI", "").lower() == "true" else "aln")

#: The whole engine on loopback (simulator + aln serve), for integration tests.
pytest_plugins = ["tests.engine"]

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"
#: The sample roster: import it with `dispatcher.roster.sample.import_sample_roster`, which
#: moves its terms to the clock's today (a raw import ages out as the calendar moves).
SAMPLE_ROSTER = CONFIG_DIR / "rosters" / "mexico-city.csv"
POSTGRES_ENV = "ALN_TEST_POSTGRES_URL"


#: Run the suite with the clock moved this many days ahead (`make test-future`): dates in
#: the sample data and the code must not be time bombs.
CLOCK_SHIFT_ENV = "ALN_TEST_CLOCK_SHIFT_DAYS"


def clock_shift_days() -> int:
    raw = os.environ.get(CLOCK_SHIFT_ENV, "").strip()
    try:
        return int(raw or 0)
    except ValueError:
        raise pytest.UsageError(
            f"{CLOCK_SHIFT_ENV}={raw!r} is not a whole number of days") from None


def pytest_configure(config: pytest.Config) -> None:
    """With ALN_TEST_CLOCK_SHIFT_DAYS, every Python clock of this process runs that many days
    ahead for the whole session (and keeps ticking). SQLite's clock is Python's (see
    `dispatcher.db.db_now`), so it moves too; PostgreSQL's is the server's and does not,
    so the PostgreSQL tests skip. Subprocesses (`aln` started by a test) keep the real clock."""
    days = clock_shift_days()
    if days:
        import time_machine

        traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


def postgres_url_or_skip() -> str:
    if clock_shift_days():
        pytest.skip(f"{CLOCK_SHIFT_ENV} is set: PostgreSQL's clock is the server's and cannot "
                    "be moved with the test clock")
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{POSTGRES_ENV} is not set, and PostgreSQL tests must run in CI")
    pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1/test)")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty schema in the test PostgreSQL, dropped afterwards."""
    base = postgres_url_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_psycopg(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    # Its sessions carry the schema's name, so the teardown can tell whether any outlived
    # the test (a thread still reading: dropping the schema under it can deadlock).
    # (The options come last: a test may add its own to them.)
    yield f"{base}{sep}application_name={schema}&options=-csearch_path%3D{schema}"
    try:
        leaked = _sessions_outliving(admin, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    assert not leaked, f"sessions of the test still open after it: {leaked}"


#: How long the teardown waits for a test's PostgreSQL sessions to end once it is over.
SESSIONS_END_SECONDS = 10.0


def _sessions_outliving(admin: Engine, schema: str) -> list[str]:
    """The test's sessions (by application name) still open after the deadline, each as
    its state and last statement; those are then ended, so the schema can be dropped."""
    # An idle session is a pooled connection: disposing its engine ends it, and it holds
    # no lock. Only one running a statement or in a transaction is a leak.
    find = text("SELECT pid, state, left(query, 200) AS query FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid() "
                "AND (state = 'active' OR state LIKE 'idle in transaction%')")
    deadline = time.monotonic() + SESSIONS_END_SECONDS
    with admin.connect() as conn:
        while (busy := conn.execute(find, {"name": schema}).all()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        for r in busy:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": r.pid})
        conn.commit()
    return [f"{r.state}: {r.query}" for r in busy]


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and again on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aln.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aln.db'}"


#: Provider settings that make both channels "configured" without reaching anything.
UNREACHABLE_PROVIDERS: dict[str, object] = dict(
    twilio_account_sid="AC" + "0" * 32, twilio_auth_token="t",
    twilio_from_number="+15005550006", twilio_api_url="http://127.0.0.1:9",
    sendgrid_api_key="SG.x", email_from="aln@example.org",
    sendgrid_api_url="http://127.0.0.1:9")


def rt_with_roster(database_url: str) -> Runtime:
    """A runtime on a fresh database holding the sample post and roster."""
    runtime = Runtime.open(make_settings(database_url, **UNREACHABLE_PROVIDERS))
    from dispatcher.roster.posts import ensure_post
    from dispatcher.roster.sample import import_sample_roster

    with runtime.db.session() as session:
        post = ensure_post(session, runtime.settings, runtime.vault)
        import_sample_roster(session, runtime.vault, post, SAMPLE_ROSTER)
    return runtime


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": "test-secret-key-not-for-production",
        "config_dir": CONFIG_DIR,
        "post": "mexico-city",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.open(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for driving the `aln` CLI against this test's database."""
    return {
        "ALN_DATABASE_URL": database_url,
        "ALN_SECRET_KEY": "test-secret-key-not-for-production",
        "ALN_CONFIG_DIR": str(CONFIG_DIR),
        "ALN_POST": "mexico-city",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile` with the longest files handed out first (tests/scheduling.py)."""
    if config.getoption("dist") != "loadfile":
        return None
    from tests.scheduling import LongestFirst

    return LongestFirst(config, log)
