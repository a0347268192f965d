"""`aln serve`, `aln worker`: the long-running processes."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

import typer

from dispatcher import aio
from dispatcher.cli.common import console, err_console, handle_errors, runtime
from dispatcher.domain import ZoneState
from dispatcher.errors import Refused
from dispatcher.logs import announce
from dispatcher.runtime import configure_logging


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("demo")(demo)


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Webhooks, officer API, dashboard and the worker (outbox and escalations)."""
    import uvicorn

    from dispatcher.web.app import create_app
    from dispatcher.worker import Worker

    _ensure_port_free(host, port)  # before the database is opened, let alone migrated
    configure_logging(logging.INFO)
    with runtime() as rt:
        if "public_url" not in rt.settings.model_fields_set:
            # Unset, the providers call back where this server listens.
            rt.settings.public_url = public_url_for(host, port)
        # Checked before uvicorn starts: its start-up failures are tracebacks.
        Worker(rt).ensure_alone()
        app = create_app(rt)
        announce(f"aln serve on http://{host}:{port} (public URL {rt.settings.public_url})")
        # log_config=None: uvicorn's lines go through our handler (JSON when asked).
        uvicorn.run(app, host=host, port=port, log_level="warning", backlog=2048,
                    log_config=None)


def public_url_for(host: str, port: int) -> str:
    """The URL of `aln serve --host H --port P` (a wildcard address names this host)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{port}"


@handle_errors
def worker(drain: bool = typer.Option(False, "--drain",
                                      help="Finish all that is due now, then exit.")) -> None:
    """Dispatch and escalation without HTTP."""
    from dispatcher.worker import Worker

    configure_logging(logging.INFO)
    with runtime() as rt:
        w = Worker(rt)
        if drain:
            done = aio.run(_drain(w))
            console.print(f"drained: {done} delivery or deadline step(s)")
            return
        try:
            aio.run(w.run())
        except KeyboardInterrupt:
            w.stop()
            err_console.print("aln worker: interrupted, stopped; what was due is finished by "
                              "the next worker")
            raise typer.Exit(EXIT_INTERRUPTED) from None


#: The shell's exit status for a process ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def _ensure_port_free(host: str, port: int) -> None:
    """Refused, naming the address, when something (another `aln serve`) listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Refused(f"cannot listen on {host}:{port}: the address is in use (another "
                              "aln serve?); stop it or choose --port") from None
            raise Refused(f"cannot listen on {host}:{port}: {exc.strerror}") from None


async def _drain(w) -> int:  # type: ignore[no-untyped-def]
    try:
        return await w.drain()
    finally:
        await w.aclose()


@handle_errors
def demo(
    directory: Path = typer.Option(Path(".aln-demo"), "--dir", help="Work directory (wiped)."),
    keep_serving: float = typer.Option(0.0, "--keep-serving",
                                       help="Keep the dashboard up this many seconds."),
) -> None:
    """A whole exercise end to end on the embedded defaults and the provider simulator."""
    from dispatcher.demo import run_demo

    configure_logging(logging.ERROR)
    result = run_demo(directory, console, keep_serving=keep_serving)
    zones = result["status"]["zones"]
    if any(z["state"] == ZoneState.WAITING for z in zones):
        raise typer.Exit(1)
