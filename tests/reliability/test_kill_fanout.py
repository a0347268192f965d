"""SIGKILL a fan-out at several points, then drain with a worker: nobody is lost.

`aln alert send` runs as a real process against the simulator (50 ms latency, 10
sends at a time). It is killed once the simulator has seen a chosen number of
messages; `aln worker --drain` then finishes. Every volunteer must have received
the alert at least once; extra copies are bounded by the sends in flight (requests
at the provider plus answers not yet written) and are all flagged "possibly
duplicated".
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from channels.simulator.testing import run_simulator
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster
from tests.conftest import make_settings
from tests.engine import cli_env, sms_requests
from tests.helpers import wait_until
from tests.reliability.processes import outbox_outcome

RECIPIENTS = 400
CONCURRENCY = 10
ALN = str(Path(sys.executable).parent / "aln")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 97, 233, 331])
def test_sigkill_mid_fanout_then_drain_loses_nobody(tmp_path: Path, kill_after: int) -> None:
    secret = "kill-test-secret"
    db_url = f"sqlite:///{tmp_path / 'aln.db'}"
    with run_simulator(latency_ms=50, callbacks=False) as sim:
        settings = make_settings(db_url, secret_key=secret)
        rt = Runtime.open(settings)
        phones = bulk_roster(rt, RECIPIENTS, zones=1)
        rt.close()
        env = cli_env(db_url, sim, secret, ALN_SEND_CONCURRENCY=str(CONCURRENCY),
                      ALN_LEASE_SECONDS="60")
        sender = subprocess.Popen(
            [ALN, "alert", "send", "--zone", "Chiapas", "--body", "Kill test",
             "--channel", "sms", "--json"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            wait_until(lambda: len(sms_requests(sim)) >= kill_after or sender.poll() is not None,
                       timeout=60, interval=0.01, what=f"{kill_after} messages sent")
        finally:
            sender.send_signal(signal.SIGKILL)
            sender.wait(timeout=10)
        before = len(sms_requests(sim))
        assert before < RECIPIENTS, "the fan-out finished before it could be killed"
        drained = subprocess.run([ALN, "worker", "--drain"], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert drained.returncode == 0, drained.stderr
        received = Counter(r["to"] for r in sms_requests(sim))
    assert set(received) == set(phones), "somebody was never sent the alert"
    extra = {phone: n - 1 for phone, n in received.items() if n > 1}
    # In flight at the kill: requests awaiting the provider (CONCURRENCY) plus answers
    # awaiting their batched write (at most one more round of them).
    assert sum(extra.values()) <= 2 * CONCURRENCY
    states, flagged = outbox_outcome(db_url, secret)
    assert states == {"accepted": RECIPIENTS}, states
    assert set(extra) <= flagged
    print(json.dumps({"kill_after": kill_after, "sent_before_kill": before,
                      "duplicates": sum(extra.values()), "flagged": len(flagged)}))
