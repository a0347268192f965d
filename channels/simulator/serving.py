"""Serving an ASGI app on a loopback port in a background thread: the engine's app in
the demo and the tests, the provider simulator, the tests' fake providers.

Ports are chosen below the kernel's ephemeral range. An outgoing connection takes
its local port from that range, so on a busy machine (parallel tests, a fan-out's
hundreds of connections) a port picked with `bind(0)` and released can be taken by
a client socket before the server binds it, and the server dies with EADDRINUSE.
A `ServerThread` binds its socket when it is made and hands that socket to uvicorn,
so nothing can take the port between choosing it and serving on it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

#: How long to wait for a server to accept connections.
STARTUP_TIMEOUT_SECONDS = 20.0

#: Where Linux keeps the ephemeral range; elsewhere the IANA range is assumed.
_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_IANA_EPHEMERAL_LOW = 49152
#: How many ports below the ephemeral range to choose among.
_WINDOW = 10_000
_random = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        return int(_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _IANA_EPHEMERAL_LOW


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to `host`:`port`, or with port 0 to a free port below the
    ephemeral range. Only a named port is bound with SO_REUSEADDR (a restart binds a port
    whose old connections are in TIME_WAIT): Linux lets two SO_REUSEADDR sockets bind
    one port while neither listens, so a chosen one binds without it and is its own."""
    if port:
        return _bind(host, port, reuse=True)
    low = _ephemeral_low()
    if low - _WINDOW >= 1024:
        for _ in range(100):
            try:
                return _bind(host, _random.randrange(low - _WINDOW, low), reuse=False)
            except OSError:
                continue
    return _bind(host, 0, reuse=False)


def _bind(host: str, port: int, *, reuse: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A loopback port free now, for a server another process will bind (`aln serve
    --port`). Prefer `bound_socket` where the server is in this process."""
    with bound_socket() as sock:
        return int(sock.getsockname()[1])


class ServerThread:
    """`with ServerThread(app, port) as server:` serves until the block ends.

    `sock`, if given, is a bound socket the server takes over (and closes when it
    stops); otherwise one is bound to `port` (or a free port) at once."""

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1",
                 sock: socket.socket | None = None, backlog: int = 2048,
                 name: str = "aln-serve") -> None:
        self.socket = sock if sock is not None else bound_socket(host, port or 0)
        # Listening at once holds the port against any other bind (a bound socket that
        # does not listen yields to SO_REUSEADDR ones); SO_REUSEADDR, which the accepted
        # connections inherit, lets a restart bind the port while old ones linger.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.listen(backlog)
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                backlog=backlog, lifespan="on")
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException as exc:  # SystemExit from uvicorn included: start() reports it
            self.error = exc
        finally:
            self.socket.close()

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} failed to start: "
                                   f"{self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
