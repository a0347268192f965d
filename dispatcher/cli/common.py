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

from dispatcher import logs
from dispatcher.errors import AlnError, problem_of
from dispatcher.runtime import Runtime

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Our errors become a plain message and exit code 2, never a traceback; a command run
    with `--json` prints the error as an RFC 9457 problem on stdout instead (the same
    document the API answers), so a script reads one JSON document either way."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AlnError as exc:
            if kwargs.get("as_json") is True:
                print_json(problem_of(exc))
            elif logs.is_json():
                logging.getLogger("aln").error("%s", exc)
            else:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper


@contextmanager
def runtime() -> Iterator[Runtime]:
    rt = Runtime.open()
    try:
        yield rt
    finally:
        rt.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
