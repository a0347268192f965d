"""Fixtures of the model tests: one provider simulator per module, a world per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.simulator.testing import SimulatorHandle, run_simulator
from tests.model.harness import World, build_template


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with run_simulator() as handle:
        yield handle


@pytest.fixture
def world(sim: SimulatorHandle, tmp_path: Path) -> Iterator[World]:
    """The engine on a fresh SQLite copy of the template, status callbacks off."""
    sim.reset()
    sim.set_faults(callbacks=False)
    url = f"sqlite:///{tmp_path / 'aln.db'}"
    build_template(url, sim)
    w = World(url, sim)
    yield w
    w.close()
