"""The FastAPI application: built from a Runtime, with the worker running beside it."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from dispatcher import aio, heap
from dispatcher.domain import Role
from dispatcher.health import check_ready
from dispatcher.metrics import CONTENT_TYPE_LATEST, RequestMetrics
from dispatcher.metrics import render as render_metrics
from dispatcher.replies.intake import Intake
from dispatcher.runtime import Runtime
from dispatcher.web import ack, api, board, dashboard, problems, webhooks
from dispatcher.web.auth import Caller, api_caller
from dispatcher.web.board_hub import BoardHub
from dispatcher.web.dashboard import LoginRequired
from dispatcher.web.headers import SecurityHeaders
from dispatcher.web.limits import BodyLimit
from dispatcher.web.throttle import LoginThrottle, parse_trusted_proxies

log = logging.getLogger(__name__)
#: The dashboard's scripts and styles (the CSP allows no inline ones).
STATIC_DIR = Path(__file__).parent / "static"


def create_app(rt: Runtime, *, run_worker: bool = True) -> FastAPI:
    """The app; with `run_worker`, the outbox and deadlines are worked in the same process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if run_worker:
            from dispatcher.worker import Worker

            worker = Worker(rt)
            # Refused here, at start-up, rather than in the worker's thread: `aln serve`
            # must not run silently without its worker (SQLite allows one per file).
            await asyncio.to_thread(worker.register)
            app.state.worker = worker
            task = asyncio.create_task(_run_worker(worker))
        heap.settle_heap()
        yield
        await app.state.boards.close()
        await asyncio.to_thread(app.state.intake.stop)
        if task is not None:
            app.state.worker.stop()
            await task

    # The schema and docs are for officers only: served under /api with a token.
    app = FastAPI(title="ALN alert engine", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.rt = rt
    app.state.worker = None
    app.state.intake = Intake(rt)
    app.state.boards = BoardHub(rt)

    problems.install(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        waiting = len(app.state.intake.spool.files())
        state = await asyncio.to_thread(check_ready, rt, waiting)
        return JSONResponse({"status": "ok" if state.ready else "unavailable",
                             "reason": state.reason}, status_code=200 if state.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        token = rt.settings.metrics_token
        if token and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()):
            return Response("metrics need ALN_METRICS_TOKEN as a bearer token\n",
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await asyncio.to_thread(render_metrics, rt)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, _exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(_: Caller = Depends(api_caller(Role.VIEWER))) -> dict[str, Any]:
        return problems.problem_media(app.openapi())

    app.state.login_throttle = LoginThrottle()
    app.state.trusted_proxies = parse_trusted_proxies(rt.settings.trusted_proxies)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(webhooks.router)
    app.include_router(ack.router)
    app.include_router(api.router)
    app.include_router(dashboard.router)
    app.include_router(board.router)
    app.add_middleware(RequestMetrics)
    return app


async def _run_worker(worker) -> None:  # type: ignore[no-untyped-def]
    # The worker runs in its own thread and event loop: its database work must never
    # stall the webhooks, which answer Twilio within its 15 s limit.
    await asyncio.to_thread(lambda: aio.run(worker.run()))
