"""Running the simulator and steering it: in this process (a thread) or another one.

The handle speaks only the simulator's `/_sim/` HTTP API, so it works the same
against a simulator started here and one started with `aln simulator`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from channels.simulator.app import create_simulator
from channels.simulator.serving import ServerThread, free_port

#: Default credentials the simulator accepts (and signs callbacks with).
DEFAULT_ACCOUNT_SID = "AC" + "5" * 32
DEFAULT_AUTH_TOKEN = "simulator-auth-token"


class SimulatorHandle:
    """Steer a running simulator at `url` through its control API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=30)
        keys = self._http.get("/_sim/keys").json()
        self.account_sid: str = keys["account_sid"]
        self.auth_token: str = keys["auth_token"]
        self.sendgrid_public_key: str = keys["sendgrid_public_key"]

    @property
    def twilio_api_url(self) -> str:
        return self.url

    @property
    def sendgrid_api_url(self) -> str:
        return self.url

    def requests(self) -> list[dict[str, Any]]:
        return self._http.get("/_sim/requests").json()  # type: ignore[no-any-return]

    def failures(self) -> list[str]:
        return self._http.get("/_sim/failures").json()  # type: ignore[no-any-return]

    def set_faults(self, **faults: Any) -> None:
        """latency_ms, latency_min/max (s), error_rate, burst_429, retry_after,
        outage_seconds, invalid_numbers, opted_out_numbers, landline_numbers,
        undelivered_numbers, failed_numbers, bounce_emails, callbacks."""
        payload = {k: sorted(v) if isinstance(v, set | list | tuple) else v
                   for k, v in faults.items()}
        self._http.post("/_sim/faults", json=payload).raise_for_status()

    def script(self, number: str, reply: str | None, delay: float = 0.0,
               once: bool = True) -> None:
        """The volunteer at `number` answers `reply` ("{code}" = the alert's code)."""
        self._http.post("/_sim/scripts", json={number: {"reply": reply, "delay": delay,
                                                        "once": once}}).raise_for_status()

    def call_behaviour(self, number: str, behaviour: str) -> None:
        """How `number` takes a call: press1, press9, silent, no-answer, busy, voicemail,
        failed (`channels.simulator.app.CALL_BEHAVIOURS`)."""
        self._http.post("/_sim/calls", json={number: behaviour}).raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        """Every call placed: sid, to, behaviour, twiml, statuses, gather (the key
        pressed and the engine's answer)."""
        return self._http.get("/_sim/calls").json()  # type: ignore[no-any-return]

    def inbound(self, from_number: str, body: str) -> None:
        """`from_number` texts `body` to the engine now (signed like Twilio)."""
        self._http.post("/_sim/inbound", json={"from": from_number, "body": body}
                        ).raise_for_status()

    def set_public_url(self, url: str) -> None:
        self._http.post("/_sim/public_url", json={"public_url": url}).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_sim/reset").raise_for_status()

    def close(self) -> None:
        self._http.close()


@contextmanager
def run_simulator(public_url: str = "http://127.0.0.1:9",
                  account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
                  port: int = 0, **faults: Any) -> Iterator[SimulatorHandle]:
    """Serve the simulator on a loopback port in a thread for the duration of the block."""
    app = create_simulator(account_sid=account_sid, auth_token=auth_token,
                           public_url=public_url)
    # A deep backlog: a fan-out opens hundreds of connections at once (PROVIDERS.md).
    with ServerThread(app, port=port, backlog=2048, name="aln-simulator") as server, \
            _handle(server.url, faults) as handle:
        yield handle


@contextmanager
def spawn_simulator(public_url: str = "http://127.0.0.1:9", port: int = 0,
                    **faults: Any) -> Iterator[SimulatorHandle]:
    """The simulator in its own process, like a real provider: benchmarks use this so
    the provider's CPU is not our process's (the GIL would make both look slower)."""
    import subprocess
    import sys

    port = port or free_port()
    code = ("import uvicorn; from channels.simulator import create_simulator; "
            f"uvicorn.run(create_simulator(account_sid={DEFAULT_ACCOUNT_SID!r}, "
            f"auth_token={DEFAULT_AUTH_TOKEN!r}, public_url={public_url!r}), host='127.0.0.1', "
            f"port={port}, backlog=2048, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/_sim/keys", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the provider simulator process did not start") from None
            time.sleep(0.05)
    try:
        with _handle(url, faults) as handle:
            yield handle
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def _handle(url: str, faults: dict[str, Any]) -> Iterator[SimulatorHandle]:
    handle = SimulatorHandle(url)
    try:
        if faults:
            handle.set_faults(**faults)
        yield handle
    finally:
        handle.close()
