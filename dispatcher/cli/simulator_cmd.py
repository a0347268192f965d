"""`aln simulator`: the provider simulator on its own, in the foreground."""

from __future__ import annotations

import typer

from channels.simulator import create_simulator
from channels.simulator.testing import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from dispatcher.cli.common import console

app = typer.Typer(help="The provider simulator (Twilio and SendGrid on loopback).")


@app.callback(invoke_without_command=True)
def simulator(
    port: int = typer.Option(9000, "--port"),
    public_url: str = typer.Option("http://127.0.0.1:8000", "--public-url",
                                   help="Where `aln serve` listens (callbacks go there)."),
    account_sid: str = typer.Option(DEFAULT_ACCOUNT_SID, "--account-sid"),
    auth_token: str = typer.Option(DEFAULT_AUTH_TOKEN, "--auth-token"),
    latency_ms: float = typer.Option(0.0, "--latency-ms"),
    error_rate: float = typer.Option(0.0, "--error-rate"),
) -> None:
    """Serve the simulator until interrupted; prints the settings to point `aln` at it."""
    import uvicorn

    app_ = create_simulator(account_sid=account_sid, auth_token=auth_token,
                            public_url=public_url)
    state = app_.state.sim
    state.faults.update({"latency_ms": latency_ms, "error_rate": error_rate})
    url = f"http://127.0.0.1:{port}"
    console.print(f"simulator on {url}\n"
                  f"  ALN_TWILIO_API_URL={url} ALN_SENDGRID_API_URL={url}\n"
                  f"  TWILIO_ACCOUNT_SID={account_sid} TWILIO_AUTH_TOKEN={auth_token}\n"
                  f"  ALN_SENDGRID_WEBHOOK_PUBLIC_KEY={state.public_key}")
    uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning", backlog=2048)
