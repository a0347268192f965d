"""The collector pause of bulk building, across threads."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

from dispatcher.heap import collector_paused

ROOT = Path(__file__).resolve().parents[1]


def test_overlapping_pauses_in_two_threads_leave_the_collector_on_only_when_both_end() -> None:
    assert gc.isenabled()
    first_in, second_in, first_may_leave = (threading.Event() for _ in range(3))
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(10)
        seen.append(gc.isenabled())  # the second is still inside
        first_may_leave.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with collector_paused():
        second_in.set()
        assert first_may_leave.wait(10)
        thread.join(10)
        assert seen == [False], "the first block out must not turn the collector on"
        assert not gc.isenabled()
    assert gc.isenabled(), "the last block out turns it back on"


def test_a_collector_turned_off_before_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def _fresh_process(script: str) -> subprocess.CompletedProcess[str]:
    """`script` run in a new interpreter (the collector and imports are process-wide)."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_settling_the_heap_freezes_it_without_a_full_collection() -> None:
    """A full collection of a loaded process took 0.25-0.45 s in front of every fan-out's
    first message; settling collects only the young generations, then freezes."""
    script = (
        "import gc\n"
        "import dispatcher.cli.main\n"
        "from dispatcher.heap import settle_heap\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(info['generation'])\n"
        "                    if phase == 'start' else None)\n"
        "settle_heap()\n"
        "settle_heap()\n"
        "print(sorted(set(seen)), gc.get_freeze_count() > 0)\n")
    out = _fresh_process(script)
    generations, frozen = out.stdout.split("]")
    assert "2" not in generations, f"a full collection ran: {out.stdout}"
    assert frozen.strip() == "True", "the loaded heap was not frozen"


def test_the_twilio_resources_a_send_uses_are_loaded_with_the_cli() -> None:
    """Twilio's client loads its resources on first use: 0.1-0.2 s between a fan-out's
    start and its first request, unless they come with the command's imports."""
    script = (
        "import sys\n"
        "import dispatcher.cli.main\n"
        "before = set(sys.modules)\n"
        "from twilio.rest import Client\n"
        "client = Client('AC' + '0' * 32, 'token')\n"
        "client.messages, client.calls\n"
        "print(sorted(set(sys.modules) - before))\n")
    out = _fresh_process(script)
    assert out.stdout.strip() == "[]", f"loaded at the first send: {out.stdout[:500]}"
