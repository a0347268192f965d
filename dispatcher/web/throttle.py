"""Login throttling: who is asking, and how often they have failed.

Failures are counted per (source address, name) and per source address, never per
name alone: a name-only limit lets anyone lock a real officer out by failing five
times. Past the limit, the wait doubles with each further failure (up to an hour).
An attempt is *reserved* before its password is checked, under one lock, so thirty
guesses at once are thirty attempts, not thirty checks before the first failure is
counted. The source is the peer address; `X-Forwarded-For` is believed only from a
proxy named in `ALN_TRUSTED_PROXIES` (default: none), else anyone could be anyone.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from dispatcher.errors import InvalidInput

#: Failed logins allowed per source address and name before the wait starts.
LOGIN_ATTEMPTS = 5
#: Failed logins allowed per source address, whatever the names.
SOURCE_ATTEMPTS = 20
#: The first wait past the limit; it doubles with each further failure.
LOCKOUT_SECONDS = 60.0
#: The longest wait; a key quiet for this long starts again from nothing.
MAX_LOCKOUT_SECONDS = 3600.0
#: Keys kept before old, quiet ones are forgotten.
MAX_KEYS = 100_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Count:
    failures: int = 0
    pending: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """In-memory counts of failed logins per (source, name) and per source."""

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, source_attempts: int = SOURCE_ATTEMPTS,
                 lockout: float = LOCKOUT_SECONDS, max_lockout: float = MAX_LOCKOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.source_attempts = attempts, source_attempts
        self.lockout, self.max_lockout, self.clock = lockout, max_lockout, clock
        self._counts: dict[str, _Count] = {}
        self._lock = threading.Lock()

    def _keys(self, source: str, name: str) -> list[tuple[str, int]]:
        return [(f"pair:{source}\n{name.casefold()}", self.attempts),
                (f"source:{source}", self.source_attempts)]

    def _count(self, key: str, now: float) -> _Count:
        count = self._counts.get(key)
        if count is None or (not count.pending and now - count.last > self.max_lockout):
            if len(self._counts) >= MAX_KEYS:
                self._forget(now)
            count = self._counts[key] = _Count(last=now)
        return count

    def _forget(self, now: float) -> None:
        for key in [k for k, c in self._counts.items()
                    if not c.pending and now - c.last > self.max_lockout]:
            del self._counts[key]

    def reserve(self, source: str, name: str) -> float:
        """0 if this attempt may go ahead (and it is now counted as pending), else the
        seconds to wait. Every reserved attempt must be `settle`d."""
        with self._lock:
            now = self.clock()
            counts = [(self._count(key, now), limit) for key, limit in self._keys(source, name)]
            wait = 0.0
            for count, limit in counts:
                if count.failures + count.pending >= limit and (
                        count.pending or now < count.locked_until):
                    # Past the limit, one attempt at a time, and only once the wait is over.
                    wait = max(wait, count.locked_until - now, 1.0)
            if wait:
                return wait
            for count, _ in counts:
                count.pending += 1
                count.last = now
            return 0.0

    def settle(self, source: str, name: str, *, succeeded: bool) -> None:
        """Record how a reserved attempt ended."""
        with self._lock:
            now = self.clock()
            for key, limit in self._keys(source, name):
                count = self._count(key, now)
                count.pending = max(0, count.pending - 1)
                count.last = now
                if succeeded:
                    if key.startswith("pair:"):
                        count.failures, count.locked_until = 0, 0.0
                    continue
                count.failures += 1
                if count.failures >= limit:
                    backoff = self.lockout * 2 ** (count.failures - limit)
                    count.locked_until = now + min(backoff, self.max_lockout)


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """`ALN_TRUSTED_PROXIES`: comma-separated addresses or networks (10.0.0.0/8)."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise InvalidInput(f"ALN_TRUSTED_PROXIES: '{part[:64]}' is not an IP address or "
                               "network") from None
    return tuple(networks)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(request: Request, proxies: tuple[Network, ...]) -> str:
    """The caller's address: the peer's, or behind a trusted proxy, the nearest address in
    `X-Forwarded-For` that is not one of our proxies (the ones left of it are the
    caller's own claims)."""
    peer = request.client.host if request.client else "?"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address should be: the proxy's peer it is
    return peer
