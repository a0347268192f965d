"""The one retry policy: inside a send (tenacity) and between claims of the outbox."""

from __future__ import annotations

import asyncio
import logging

import pytest
import tenacity.wait
from hypothesis import given
from hypothesis import strategies as st

from channels.config import ChannelsConfig
from channels.errors import PermanentError, TransientError
from channels.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, max_seconds=60, min_wait=0.5, max_wait=30, max_claims=6,
                     max_requeue_wait=300)


def transient(retry_after: float | None = None) -> TransientError:
    return TransientError(provider="twilio", status=503, code=None, message="down",
                          retry_after=retry_after)


def send_with(policy: RetryPolicy, errors: list[Exception], fast: bool = True,
              sleep: object = None) -> tuple[str, int, list[float]]:
    """Run one send whose requests raise `errors` in turn, then succeed: (result, requests,
    waits). More requests than `errors` holds plus 20 is a runaway: a permanent error."""
    calls, waits = 0, []

    async def request() -> str:
        nonlocal calls
        calls += 1
        if calls > len(errors) + 20:
            raise permanent()
        if calls <= len(errors):
            raise errors[calls - 1]
        return "ok"

    async def record(seconds: float) -> None:
        waits.append(seconds)

    run = policy.call_fast if fast else policy.call
    result = asyncio.run(run(request, sleep or record))  # type: ignore[arg-type]
    return result, calls, waits


def permanent() -> PermanentError:
    return PermanentError(provider="twilio", status=400, code=21211, message="invalid")


def test_a_permanent_error_is_never_requeued() -> None:
    assert POLICY.requeue_after(1, permanent()) is None


def test_the_outbox_backs_off_by_doubling_from_the_claim_count() -> None:
    assert [POLICY.requeue_after(n, transient()) for n in range(7)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, None]


def test_the_outbox_gives_up_after_max_claims() -> None:
    assert POLICY.requeue_after(5, transient()) == 16.0
    assert POLICY.requeue_after(6, transient()) is None
    assert POLICY.requeue_after(7, transient()) is None


def test_the_requeue_wait_is_capped() -> None:
    policy = RetryPolicy(min_wait=10, max_claims=100, max_requeue_wait=60)
    assert policy.requeue_after(10, transient()) == 60
    assert policy.requeue_after(3, transient(retry_after=1000)) == 60


def test_the_providers_requested_wait_is_honoured_when_longer() -> None:
    assert POLICY.requeue_after(1, transient(retry_after=42)) == 42
    assert POLICY.requeue_after(4, transient(retry_after=1)) == 8.0  # never sooner


@given(st.integers(min_value=0, max_value=50), st.none() | st.floats(0, 10_000))
def test_a_requeue_wait_is_bounded_and_never_shorter_than_asked(
        claims: int, retry_after: float | None) -> None:
    wait = POLICY.requeue_after(claims, transient(retry_after))
    if claims >= POLICY.max_claims:
        assert wait is None
        return
    assert wait is not None and 0 < wait <= POLICY.max_requeue_wait
    if retry_after is not None:
        assert wait >= min(retry_after, POLICY.max_requeue_wait)


def test_the_policy_is_built_from_the_channel_settings() -> None:
    config = ChannelsConfig(retry_max_attempts=7, retry_max_seconds=9, retry_min_wait=0.25,
                            retry_max_wait=3)
    policy = RetryPolicy.from_config(config)
    assert (policy.max_attempts, policy.max_seconds, policy.min_wait, policy.max_wait) == (
        7, 9, 0.25, 3)


def test_a_send_retries_transient_errors_up_to_the_attempt_budget() -> None:
    calls, waits = 0, []

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise transient()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(TransientError):
        asyncio.run(POLICY.call_fast(flaky, sleep))
    assert calls == 3 and len(waits) == 2
    assert all(0 <= w <= POLICY.max_wait for w in waits)


def test_a_send_waits_exactly_what_the_provider_asked() -> None:
    calls, waits = 0, []

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise transient(retry_after=2.5)
        return "ok"

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    assert asyncio.run(POLICY.call(limited, sleep)) == "ok"
    assert waits == [2.5]


def test_a_permanent_error_in_a_send_is_one_request() -> None:
    calls = 0

    async def bad() -> str:
        nonlocal calls
        calls += 1
        raise permanent()

    with pytest.raises(PermanentError):
        asyncio.run(POLICY.call_fast(bad))
    assert calls == 1


def test_a_send_waits_between_its_first_and_second_request() -> None:
    assert send_with(POLICY, [transient(retry_after=1.5)]) == ("ok", 2, [1.5])


def test_a_budget_of_two_attempts_makes_two_requests() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert send_with(policy, [transient(retry_after=0)]) == ("ok", 2, [0.0])
    with pytest.raises(TransientError):
        send_with(policy, [transient(retry_after=0)] * 2)


def test_a_send_stops_retrying_when_its_time_is_up() -> None:
    policy = RetryPolicy(max_attempts=1000, max_seconds=0.2)
    with pytest.raises(TransientError):  # about 4 requests fit in 0.2 s, not 10
        send_with(policy, [transient(retry_after=0.05)] * 10, sleep=asyncio.sleep)


def test_a_send_retries_until_the_attempt_budget_even_with_time_left() -> None:
    with pytest.raises(TransientError):
        send_with(POLICY, [transient(retry_after=0)] * 5)


def test_a_permanent_error_after_a_transient_one_ends_the_send() -> None:
    for fast in (True, False):
        with pytest.raises(PermanentError):
            send_with(POLICY, [transient(retry_after=0), permanent(), transient()], fast)


def test_a_provider_asking_for_no_wait_is_retried_at_once_and_a_long_ask_is_capped() -> None:
    assert send_with(POLICY, [transient(retry_after=0)], fast=False)[2] == [0.0]
    policy = RetryPolicy(max_attempts=3, max_seconds=5)
    assert send_with(policy, [transient(retry_after=500)])[2] == [5.0]


def test_the_jittered_wait_doubles_from_min_wait_up_to_max_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda low, high: high)
    policy = RetryPolicy(max_attempts=6, min_wait=0.5, max_wait=2)
    assert send_with(policy, [transient()] * 5)[2] == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_every_retry_is_logged_with_the_provider_its_answer_and_the_masked_recipient(
        caplog: pytest.LogCaptureFixture) -> None:
    named = TransientError(provider="twilio", status=429, code=20429, message="slow down",
                           recipient="+52*****0101", retry_after=2.5)
    bare = TransientError(provider="sendgrid", status=None, code=None, message="timeout",
                          retry_after=1)
    with caplog.at_level(logging.WARNING, logger="channels.retry"):
        send_with(POLICY, [named, bare])
    assert [r.getMessage() for r in caplog.records] == [
        "retry 1 in 2.50s: twilio 429 20429 for +52*****0101",
        "retry 2 in 1.00s: sendgrid   for -",
    ]
