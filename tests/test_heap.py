"""The collector pause of bulk building, across threads."""

from __future__ import annotations

import gc
import threading

from dispatcher.heap import collector_paused


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
