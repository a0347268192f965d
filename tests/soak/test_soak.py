"""The chaos soak (`make soak`): many kill-and-restart cycles under traffic, on SQLite
and (with ALN_TEST_POSTGRES_URL) PostgreSQL. Excluded from `make test` (pyproject's
norecursedirs); ALN_SOAK_CYCLES sets the cycles per database, ALN_SOAK_SEED replays a
run. Each run prints one JSON line of figures (see tests/reliability/chaos.py)."""

from __future__ import annotations

import os

import pytest

from tests.reliability.chaos import run_chaos

#: Cycles per database unless ALN_SOAK_CYCLES says otherwise (about 6 s each).
DEFAULT_CYCLES = 50


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_kills_and_restarts_under_traffic_lose_nothing(database_url: str) -> None:
    cycles = int(os.environ.get("ALN_SOAK_CYCLES", DEFAULT_CYCLES))
    seed = os.environ.get("ALN_SOAK_SEED")
    report = run_chaos(database_url, cycles, seed=int(seed) if seed else None)
    assert report.cycles == cycles
    assert not report.refused
