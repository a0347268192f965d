"""Rate and concurrency limits, applied before every remote call of a channel.

A per-sender messages-per-second limit (Twilio long codes take 1/s in the US,
about 10/s elsewhere, short codes 100/s) and a cap on requests in flight, so a
10,000-recipient alert neither floods the provider nor idles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces calls `1/rate` seconds apart; rate 0 or None means unlimited."""

    def __init__(self, rate: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)


class Limits:
    """Concurrency cap plus rate limit, used as `async with limits:`."""

    def __init__(self, concurrency: int, rate: float | None) -> None:
        self.semaphore = asyncio.Semaphore(max(1, concurrency))
        self.rate = RateLimiter(rate)

    async def __aenter__(self) -> Limits:
        await self.semaphore.acquire()
        if self.rate.interval:  # no rate limit: not even a coroutine to wait on
            try:
                await self.rate.acquire()
            except BaseException:
                self.semaphore.release()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.semaphore.release()
