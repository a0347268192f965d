"""The engine's own errors: each says what is wrong and where, for an officer to read.

The CLI turns them into a message and a non-zero exit, the API into a JSON problem.
"""

from __future__ import annotations


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
