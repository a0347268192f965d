"""Errors as RFC 9457 problem details: one shape for every API route and the CLI's `--json`.

A problem is `{"type", "title", "status", "detail"}` served as `application/problem+json`;
validation problems add `errors` (each field and what is wrong with it). `type` is a
stable URI naming the kind of problem, for a client to branch on; `detail` is the
sentence an officer reads. `responses()` declares them in the OpenAPI schema, so that
every status a route can answer is listed there with its body.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher.errors import AlnError, problem, problem_of

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One thing wrong with a request: where (`loc`) and what (`msg`)."""

    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="stable URI naming the kind of problem, e.g. "
                                  "urn:aln:problem:not-found")
    title: str = Field(description="the status's reason phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what is wrong, for an officer to read")
    errors: list[FieldError] | None = Field(
        default=None, description="for invalid input: each field and what is wrong")


def problem_response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(doc, status_code=doc["status"], headers=headers,
                        media_type=PROBLEM_MEDIA_TYPE)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problems a route can answer (401 and 422 always: every
    API route needs a token and validates its input)."""
    wanted = sorted({401, 422, *statuses})
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase,
                     "content": {PROBLEM_MEDIA_TYPE: {}}} for status in wanted}


def problem_media(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every problem response under `application/problem+json` only
    (FastAPI puts a response's model under `application/json`). Idempotent."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for response in op.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_MEDIA_TYPE in content and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return schema


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, looking inside included routers (FastAPI wraps them; our routers carry
    their prefix in their own paths and are included without one)."""
    for route in routes:
        inner = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None)
        if inner is not None and not hasattr(route, "methods"):
            yield from _leaf_routes(inner)
        else:
            yield route


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's own 405 names only those
    of the first route whose path matched (GET /api/alerts and POST /api/alerts are two)."""
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _detail_text(detail: Any) -> str:
    return detail if isinstance(detail, str) else str(detail)


def install(app: FastAPI) -> None:
    """Answer every error as a problem: our own, HTTP ones (401, 403, 404, 405, 413) and
    invalid input (422, with each field named)."""

    @app.exception_handler(AlnError)
    async def _aln_error(_request: Request, exc: AlnError) -> JSONResponse:
        return problem_response(problem_of(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        detail = _detail_text(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not served at {request.url.path}; " \
                     f"allowed: {headers['Allow']}"
        return problem_response(problem(exc.status_code, detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(loc=[p if isinstance(p, int) else str(p) for p in e["loc"]],
                             msg=e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in errors)
        return problem_response(problem(422, detail or "invalid input",
                                        errors=[e.model_dump() for e in errors]))
