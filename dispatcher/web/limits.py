"""Bounds on what one HTTP request may carry: body size, row ids in paths.

Every request body is capped, before any handler reads it: a declared Content-Length
over the cap is refused unread, and a body sent without one (chunked) is counted as it
streams and refused as soon as it passes the cap. Ids in paths are bounded so that a
huge number is a 404/422, never a database overflow (500).
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import HTTPException, Path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.errors import problem
from dispatcher.web.problems import PROBLEM_MEDIA_TYPE

#: Largest request body the app reads; Twilio, SendGrid and the officer API stay far below.
MAX_REQUEST_BYTES = 1_000_000
#: Largest row id accepted in a path (database integers are 32-bit signed).
MAX_ROW_ID = 2**31 - 1

#: A row id in a path: 1..2^31-1, else 422 before any query runs.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` (413), read or declared."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            length = int(declared) if declared.isdigit() and len(declared) < 20 else None
            if length is None:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _answer(send, 413, str(_too_large(self.max_bytes).detail))
                return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing unchanged and
                    # becomes the 413 answer.
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, capped, send)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps(problem(status, detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
