"""Loopback servers hold their port from the moment they are made (CI once lost a test
to a port that a client connection took between choosing it and serving on it)."""

from __future__ import annotations

import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from channels.simulator.serving import ServerThread, _ephemeral_low, bound_socket, free_port


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("up"))])


def test_ports_are_chosen_below_the_range_outgoing_connections_take_theirs_from() -> None:
    low = _ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports), (ports, low)
    assert len(ports) > 1, "ports are drawn at random, not the same one each time"


def test_a_server_thread_holds_its_port_before_it_starts() -> None:
    server = ServerThread(_app())
    with socket.socket() as other, socket.socket() as reusing:
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", server.port))
        # Linux lets two SO_REUSEADDR sockets share a port neither listens on yet.
        reusing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError):
            reusing.bind(("127.0.0.1", server.port))
    with server:
        assert httpx.get(server.url, timeout=5).text == "up"


def test_a_server_serves_on_the_socket_it_was_given_and_restarts_on_its_port() -> None:
    sock = bound_socket()
    port = int(sock.getsockname()[1])
    with ServerThread(_app(), sock=sock) as server:
        assert server.port == port
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "up"
    assert sock.fileno() == -1, "the server closes the socket it took over"
    with ServerThread(_app(), port=port) as again:
        assert httpx.get(again.url, timeout=5).text == "up"


def test_a_server_that_cannot_start_says_why() -> None:
    async def refuse(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        raise RuntimeError("lifespan refused")

    with pytest.raises(RuntimeError, match="failed to start: SystemExit"):
        ServerThread(refuse).start()


def test_a_restart_binds_the_port_while_the_last_connections_linger() -> None:
    """CI once failed a restart with EADDRINUSE: the first server's connections outlive
    it (TIME_WAIT, a client's keep-alive) and the port must bind again all the same."""
    with httpx.Client() as client:
        with ServerThread(_app()) as server:
            port = server.port
            for _ in range(3):
                assert client.get(server.url, timeout=5).text == "up"
        with ServerThread(_app(), port=port) as again:
            assert client.get(again.url, timeout=5).text == "up"
