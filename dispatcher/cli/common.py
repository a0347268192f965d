"""Shared plumbing for CLI commands: opening the runtime, printing, turning errors into exits."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy.exc import DBAPIError

from dispatcher import logs
from dispatcher.db import storage_problem
from dispatcher.errors import AlnError, problem, problem_of
from dispatcher.runtime import Runtime

# Untrusted text (a volunteer's reply "YES 7313 [/x]", a name, a zone, a CAP headline, an
# error quoting any of them) is never Rich markup: these consoles read no markup at all,
# in print, table cells and titles alike, so no caller has to remember to escape. Our
# own styling is built with `styled` (Text objects), never with markup strings.
console = Console(markup=False, highlight=False)
# soft_wrap: an error stays one line however narrow the terminal (or a pipe) is.
err_console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain strings and (text, style) pairs; no part is read as markup."""
    return Text.assemble(*parts)

#: What an officer does after a write failed for want of space (or a writable database).
STORAGE_ADVICE = ("Nothing was marked sent that was not; what was not recorded stays in "
                  "the outbox. Free space (or make the database writable), then run "
                  "`aln worker --drain` to finish; a message whose hand-off was not "
                  "recorded is sent again and flagged possibly duplicated.")

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Our errors become a plain message and exit code 2, never a traceback; a database
    that cannot be written (full disk, read-only) says so, with exit code 3. A command run
    with `--json` prints either as an RFC 9457 problem on stdout instead (the document the
    API answers), so a script reads one JSON document either way."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AlnError as exc:
            if kwargs.get("as_json") is True:
                print_json(problem_of(exc))
            else:
                _say_error(str(exc))
            raise typer.Exit(2) from None
        except DBAPIError as exc:
            reason = storage_problem(exc)
            if reason is None:
                raise
            message = f"the database cannot be written: {reason}. {STORAGE_ADVICE}"
            if kwargs.get("as_json") is True:
                print_json(problem(503, message))
            else:
                _say_error(message)
            raise typer.Exit(3) from None

    return wrapper


def _say_error(message: str) -> None:
    if logs.is_json():
        logging.getLogger("aln").error("%s", message)
    else:
        err_console.print(styled(("error:", "bold red"), f" {message}"))


@contextmanager
def runtime() -> Iterator[Runtime]:
    rt = Runtime.open()
    try:
        yield rt
    finally:
        rt.close()


def print_json(data: Any) -> None:
    """Indented for a person at a terminal; compact for a pipe or a file, where a script
    reads it: Python's JSON encoder is written in C only for compact output, and an
    alert to 100,000 volunteers took 20 s to print indented."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")
