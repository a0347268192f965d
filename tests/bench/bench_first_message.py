"""Time to first message: from the start of `aln alert send` (after its imports) to the
provider simulator's first request, at 10,000 and 100,000 recipients (15 zones, SMS).

The real command runs in its own process against the simulator (in its own process
too); a small wrapper notes the wall clock once `dispatcher.cli.main` is imported, and
the simulator stamps each request it receives with the same clock. Once the first
request has arrived the command is stopped: the rest of the fan-out is
`bench_fanout.py`'s. Target (issue 19): <= 1 s at both sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from channels.simulator.testing import spawn_simulator
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import make_settings
from tests.engine import cli_env

TARGET_SECONDS = 1.0
SECRET = "bench-secret-key-not-for-production"
#: How long the first request may take before the benchmark gives up on it.
GIVE_UP_SECONDS = 300
#: The command, after its imports: it prints when it starts, then runs as `aln` would.
WRAPPER = textwrap.dedent('''
    import sys, time
    from dispatcher.cli.main import app
    sys.stderr.write(f"ALN_STARTED {time.time()!r}\\n")
    sys.stderr.flush()
    sys.argv = ["aln", *sys.argv[1:]]
    app()
''')


def first_message(n: int, tmp_path: Path) -> dict[str, float]:
    db = f"sqlite:///{tmp_path / f'first{n}.db'}"
    rt = Runtime.open(make_settings(db, secret_key=SECRET))
    bulk_roster(rt, n, zones=15)
    rt.close()
    with spawn_simulator(callbacks=False) as sim:
        env = {**cli_env(db, sim, SECRET),
               "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        log = tmp_path / f"aln{n}.err"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, "alert", "send", "--zone", "all",
                 "--body", "First message benchmark", "--channel", "sms", "--force",
                 "--ack-window", "1h", "--json"],
                stdout=subprocess.DEVNULL, stderr=err, env=env)
            try:
                deadline = time.monotonic() + GIVE_UP_SECONDS
                while not (seen := sim.requests()):
                    assert proc.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, "no request reached the simulator"
                    time.sleep(0.05)
            finally:
                proc.kill()
                proc.wait()
        started = next(float(line.split()[1]) for line in log.read_text().splitlines()
                       if line.startswith("ALN_STARTED "))
    return {"seconds": min(r["at"] for r in seen) - started}


@pytest.mark.parametrize("n", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_first_message(n: int, tmp_path: Path) -> None:
    r = first_message(n, tmp_path)
    emit({"bench": "first_message", "recipients": n, "zones": 15,
          "seconds": round(r["seconds"], 3), "target_seconds": TARGET_SECONDS,
          "command": "aln alert send --zone all --channel sms --force --ack-window 1h --json",
          "database": "sqlite"})
    assert r["seconds"] <= TARGET_SECONDS, f"first message after {r['seconds']:.2f} s"


def test_wrapper_runs_the_installed_command() -> None:
    """The wrapper is `aln` itself, not a copy of it."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, "--help"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(
                             Path(__file__).resolve().parents[2])}, timeout=120)
    assert out.returncode == 0 and "alert" in out.stdout
