"""`aln simulator`: the provider simulator on its own, in the foreground."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from channels.simulator import create_simulator
from channels.simulator.testing import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from dispatcher.cli.common import console

app = typer.Typer(help="The provider simulator (Twilio and SendGrid on loopback).")
#: The sender number and email the simulator accepts like any other.
SIMULATED_FROM_NUMBER = "+15005550006"
SIMULATED_EMAIL_FROM = "aln@example.org"
#: The WhatsApp sender the simulator takes (a sender of its own, as on Twilio).
SIMULATED_WHATSAPP_FROM = "+15005550007"


def simulator_env(url: str, public_url: str, account_sid: str, auth_token: str,
                  public_key: str) -> dict[str, str]:
    """Every setting a second shell needs to run `aln` against this simulator."""
    return {
        "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": auth_token,
        "TWILIO_FROM_NUMBER": SIMULATED_FROM_NUMBER, "ALN_TWILIO_API_URL": url,
        "TWILIO_WHATSAPP_FROM": SIMULATED_WHATSAPP_FROM,
        "SENDGRID_API_KEY": "SG.simulator", "ALN_EMAIL_FROM": SIMULATED_EMAIL_FROM,
        "ALN_SENDGRID_API_URL": url, "ALN_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
        "ALN_PUBLIC_URL": public_url, "ALN_SMS_RATE_PER_SECOND": "0",
    }


@app.callback(invoke_without_command=True)
def simulator(
    port: int = typer.Option(9000, "--port"),
    public_url: str = typer.Option("http://127.0.0.1:8000", "--public-url",
                                   help="Where `aln serve` listens (callbacks go there)."),
    account_sid: str = typer.Option(DEFAULT_ACCOUNT_SID, "--account-sid"),
    auth_token: str = typer.Option(DEFAULT_AUTH_TOKEN, "--auth-token"),
    latency_ms: float = typer.Option(0.0, "--latency-ms"),
    error_rate: float = typer.Option(0.0, "--error-rate"),
    env_file: Path | None = typer.Option(None, "--env-file",
                                         help="Also write the settings to this .env file."),
) -> None:
    """Serve the simulator until interrupted; prints the settings to point `aln` at it."""
    import uvicorn

    app_ = create_simulator(account_sid=account_sid, auth_token=auth_token,
                            public_url=public_url)
    state = app_.state.sim
    state.faults.update({"latency_ms": latency_ms, "error_rate": error_rate})
    url = f"http://127.0.0.1:{port}"
    lines = [f"{k}={v}" for k, v in simulator_env(url, public_url, account_sid, auth_token,
                                                   state.public_key).items()]
    console.print(f"simulator on {url}; in the shell that runs aln, set (or use "
                  "--env-file):", markup=False, highlight=False)
    for line in lines:
        print(line, flush=True)
    if env_file is not None:
        fd = os.open(env_file, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        console.print(f"written to {env_file}", markup=False, highlight=False)
    uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning", backlog=2048)
