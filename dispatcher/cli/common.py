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
from sqlalchemy.exc import DBAPIError

from dispatcher import logs
from dispatcher.db import storage_problem
from dispatcher.errors import AlnError
from dispatcher.runtime import Runtime

console = Console()
err_console = Console(stderr=True)

#: What an officer does after a write failed for want of space (or a writable database).
STORAGE_ADVICE = ("Nothing was marked sent that was not; what was not recorded stays in "
                  "the outbox. Free space (or make the database writable), then run "
                  "`aln worker --drain` to finish; a message whose hand-off was not "
                  "recorded is sent again and flagged possibly duplicated.")

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Our errors become a plain message and exit code 2, never a traceback; a database
    that cannot be written (full disk, read-only) says so, with exit code 3."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AlnError as exc:
            _say_error(str(exc))
            raise typer.Exit(2) from None
        except DBAPIError as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            _say_error(f"the database cannot be written: {problem}. {STORAGE_ADVICE}")
            raise typer.Exit(3) from None

    return wrapper


def _say_error(message: str) -> None:
    if logs.is_json():
        logging.getLogger("aln").error("%s", message)
    else:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)


@contextmanager
def runtime() -> Iterator[Runtime]:
    rt = Runtime.open()
    try:
        yield rt
    finally:
        rt.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
