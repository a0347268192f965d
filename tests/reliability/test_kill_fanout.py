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
from sqlalchemy import select

from channels.simulator.testing import run_simulator
from dispatcher.domain import DeadlineKind
from dispatcher.models import Deadline
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


#: A streamed alert (`dispatch.fill`): large enough that its first wave takes chunks.
STREAMED = 6000


@pytest.mark.slow
def test_sigkill_while_a_streamed_alert_is_written_then_drain_asks_everyone_once(
        tmp_path: Path) -> None:
    """Killed at its first message, while the rest of the first wave is still being
    written: the worker takes the fill over, and every volunteer is asked once."""
    secret = "kill-test-secret"
    db_url = f"sqlite:///{tmp_path / 'aln.db'}"
    with run_simulator(latency_ms=5, callbacks=False) as sim:
        rt = Runtime.open(make_settings(db_url, secret_key=secret))
        phones = bulk_roster(rt, STREAMED, zones=1)
        rt.close()
        env = cli_env(db_url, sim, secret, ALN_SEND_CONCURRENCY="50", ALN_LEASE_SECONDS="60",
                      ALN_STREAM_ABOVE="100")
        sender = subprocess.Popen(
            [ALN, "alert", "send", "--zone", "Chiapas", "--body", "Kill test",
             "--channel", "sms", "--json"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            wait_until(lambda: sms_requests(sim) or sender.poll() is not None,
                       timeout=60, interval=0.005, what="the first message")
        finally:
            sender.send_signal(signal.SIGKILL)
            sender.wait(timeout=10)
        at_kill = fill_states(db_url, secret)
        drained = subprocess.run([ALN, "worker", "--drain"], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert drained.returncode == 0, drained.stderr
        received = Counter(r["to"] for r in sms_requests(sim))
    assert set(received) == set(phones), "somebody was never sent the alert"
    assert sum(n - 1 for n in received.values()) <= 2 * 50
    states, _ = outbox_outcome(db_url, secret)
    assert states == {"accepted": STREAMED}, states
    assert fill_states(db_url, secret) == Counter({"done": 1})
    print(json.dumps({"fill_at_kill": dict(at_kill), "duplicates":
                      sum(n - 1 for n in received.values())}))


def fill_states(db_url: str, secret: str) -> Counter[str]:
    rt = Runtime.open(make_settings(db_url, secret_key=secret))
    try:
        with rt.db.session() as session:
            return Counter(str(s) for s in session.scalars(
                select(Deadline.state).where(Deadline.kind == DeadlineKind.FILL)))
    finally:
        rt.close()
