"""Running our coroutines: on uvloop when it is installed (it is, with uvicorn[standard]).

uvloop roughly halves the event loop's own CPU per message in a large fan-out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from dispatcher.heap import settle_heap

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    settle_heap()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
    return uvloop.run(coro)
