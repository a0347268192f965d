"""The one retry policy of every channel and of the outbox: transient errors only, bounded.

Two rounds, one policy. Inside a send, tenacity retries a transient error with
exponential back-off and jitter, or exactly the wait the provider asked for
(Retry-After, X-RateLimit-Reset), bounded by attempts and by total time. When that
gives up (an outage longer than `max_seconds`), the outbox puts the delivery back
and asks `requeue_after` when to claim it again: back-off from how often it was
claimed, never sooner than the provider asked, and never again after `max_claims`
claims or a permanent error. The SDKs' own retries stay off: a second retry layer
would silently duplicate SMS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_random_exponential,
)

from channels.config import ChannelsConfig
from channels.errors import ChannelError, TransientError

log = logging.getLogger(__name__)

#: Provider requests retried inside a send (scraped at /metrics).
RETRIES = Counter("aln_provider_retries", "Provider requests retried inside a send",
                  ["provider"])
T = TypeVar("T")

SleepFn = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    #: Provider requests per send, and how long one send may keep retrying.
    max_attempts: int = 5
    max_seconds: float = 60.0
    #: Bounds of the jittered exponential wait between two requests of one send.
    min_wait: float = 0.5
    max_wait: float = 30.0
    #: Claims of one delivery by the outbox before it is declared failed.
    max_claims: int = 12
    #: The longest the outbox waits before claiming a delivery again.
    max_requeue_wait: float = 300.0

    @classmethod
    def from_config(cls, config: ChannelsConfig) -> RetryPolicy:
        return cls(config.retry_max_attempts, config.retry_max_seconds, config.retry_min_wait,
                   config.retry_max_wait)

    def requeue_after(self, claims: int, error: ChannelError) -> float | None:
        """Seconds until the outbox claims a delivery again after this send's retries gave
        up, or None to give up on it: a permanent error, or `max_claims` claims spent.

        Doubles with every claim from `min_wait`, up to `max_requeue_wait`; a provider's
        requested wait (Retry-After) is honoured when it is longer.
        """
        if not isinstance(error, TransientError) or claims >= self.max_claims:
            return None
        backoff = min(self.max_requeue_wait, self.min_wait * 2 ** max(0, claims))
        if error.retry_after is not None:
            return max(backoff, min(error.retry_after, self.max_requeue_wait))
        return backoff

    def wait_for(self, state: RetryCallState) -> float:
        """The provider's requested wait when it gave one, else jittered exponential."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return max(0.0, min(exc.retry_after, self.max_seconds))
        backoff = wait_random_exponential(multiplier=self.min_wait, max=self.max_wait)
        return float(backoff(state))

    def retrying(self, sleep: SleepFn | None = None) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=self.wait_for,
            stop=stop_any(stop_after_attempt(self.max_attempts),
                          stop_after_delay(self.max_seconds)),
            before_sleep=_log_retry,
            sleep=sleep or asyncio.sleep,
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]], sleep: SleepFn | None = None) -> T:
        async for attempt in self.retrying(sleep):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def call_fast(self, fn: Callable[[], Awaitable[T]],
                        sleep: SleepFn | None = None) -> T:
        """`call`, without building the retry machinery for the common first success.

        Same policy, same attempt count: the first attempt is made here and tenacity
        takes over only after a transient error (as attempt 2 onwards).
        """
        try:
            return await fn()
        except TransientError as first:
            if self.max_attempts <= 1:
                raise
            failed_once = first

        calls = 0

        async def again() -> T:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise failed_once
            return await fn()

        return await self.call(again, sleep)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    if isinstance(exc, TransientError):
        RETRIES.labels(provider=exc.provider).inc()
        # The error's recipient is already masked: never log a full number or address.
        log.warning("retry %d in %.2fs: %s %s %s for %s", state.attempt_number, wait,
                    exc.provider, exc.status or "", exc.code or "", exc.recipient or "-")
