"""A minimal, independent fake of Twilio's and SendGrid's send endpoints (not our simulator).

Each test scripts the answers (status, JSON, headers) in order; every request is
recorded with its headers and body so counts and wire details can be asserted.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.simulator.serving import ServerThread


@dataclass
class Answer:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeProvider:
    url: str = ""
    answers: list[Answer] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    latency: float = 0.0
    in_flight: int = 0
    peak: int = 0

    def twilio_ok(self, sid: str = "SM" + "a" * 32) -> Answer:
        return Answer(201, {"sid": sid, "status": "queued", "num_segments": "1"})


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    lock = threading.Lock()

    async def handle(request: Request) -> Response:
        raw = await request.body()
        with lock:
            fake.in_flight += 1
            fake.peak = max(fake.peak, fake.in_flight)
            fake.requests.append({
                "path": request.url.path, "headers": dict(request.headers), "at": time.time(),
                "form": {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                if "form" in request.headers.get("content-type", "") else None,
                # Every value of a repeated field (a call's StatusCallbackEvent).
                "form_all": parse_qs(raw.decode())
                if "form" in request.headers.get("content-type", "") else None,
                "json": json.loads(raw) if raw and "json" in request.headers.get(
                    "content-type", "") else None})
            answer = fake.answers.pop(0) if fake.answers else (
                fake.twilio_ok() if "Messages" in request.url.path else
                Answer(201, {"sid": "CA" + "c" * 32, "status": "queued"})
                if "Calls" in request.url.path else Answer(202))
        try:
            if fake.latency:
                await asyncio.sleep(fake.latency)
            if answer.body is None:
                return Response(status_code=answer.status,
                                headers={"X-Message-Id": f"fake-{len(fake.requests)}",
                                         **answer.headers})
            return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
        finally:
            with lock:
                fake.in_flight -= 1

    app = Starlette(routes=[
        Route("/2010-04-01/Accounts/{sid}/Messages.json", handle, methods=["POST"]),
        Route("/2010-04-01/Accounts/{sid}/Calls.json", handle, methods=["POST"]),
        Route("/v3/mail/send", handle, methods=["POST"]),
    ])
    with ServerThread(app, backlog=1024, name="fake-provider") as server:
        fake.url = server.url
        yield fake
