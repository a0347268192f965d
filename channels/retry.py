"""The one retry policy of every channel (tenacity): transient errors only, bounded.

Exponential back-off with jitter, or exactly the wait the provider asked for
(Retry-After, X-RateLimit-Reset); bounded by attempts and by total time. The SDKs'
own retries stay off: a second retry layer would silently duplicate SMS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_random_exponential,
)

from channels.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")

SleepFn = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_seconds: float = 60.0
    min_wait: float = 0.5
    max_wait: float = 30.0

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
        # The error's recipient is already masked: never log a full number or address.
        log.warning("retry %d in %.2fs: %s %s %s for %s", state.attempt_number, wait,
                    exc.provider, exc.status or "", exc.code or "", exc.recipient or "-")
