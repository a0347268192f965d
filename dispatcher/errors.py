"""The engine's own errors: each says what is wrong and where, for an officer to read.

The CLI turns them into a message and a non-zero exit, the API (and the CLI's `--json`)
into an RFC 9457 problem (`problem`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

#: Base of every problem `type` (RFC 9457): a name to branch on, not a page to fetch.
PROBLEM_BASE = "urn:aln:problem:"
#: The kind of problem for each status, when nothing more precise is known.
KIND_BY_STATUS = {
    400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "refused", 413: "too-large", 422: "invalid-input",
    429: "too-many-requests", 500: "internal", 503: "unavailable",
}


class AlnError(Exception):
    """Base of every error an officer may see; its text is the whole message."""

    #: HTTP status the API answers with.
    status = 400


class NotFound(AlnError):
    status = 404


class InvalidInput(AlnError):
    status = 422


class Refused(AlnError):
    """A request that is well-formed but would do harm (e.g. an alert nobody can receive)."""

    status = 409


class Forbidden(AlnError):
    status = 403


def problem(status: int, detail: str, *, kind: str | None = None,
            errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document: `type`, `title`, `status`, `detail` (and for invalid
    input, `errors`: each field and what is wrong). The API's and the CLI's alike."""
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + (kind or KIND_BY_STATUS.get(status, "error")),
        "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
    }
    if errors:
        doc["errors"] = errors
    return doc


def problem_of(exc: AlnError) -> dict[str, Any]:
    """One of our own errors as a problem."""
    return problem(exc.status, str(exc))
