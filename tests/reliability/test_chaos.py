"""The short chaos run in `make test`: a few kill-and-restart cycles under traffic
(the soak, `make soak`, runs many more). See tests/reliability/chaos.py."""

from __future__ import annotations

import pytest

from tests.reliability.chaos import run_chaos

#: Cycles in the short run: enough for kills of both kinds, well under a minute.
CYCLES = 4


@pytest.mark.slow
def test_kills_and_restarts_under_traffic_lose_nothing(database_url: str) -> None:
    report = run_chaos(database_url, CYCLES)
    assert report.cycles == CYCLES
    assert not report.refused
