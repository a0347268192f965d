"""`aln channels test`: one real message through the configured providers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from channels.base import ChannelKind, Message
from channels.config import ChannelsConfig
from channels.errors import ChannelError, PermanentError, describe_code
from channels.factory import build_channels
from channels.masking import mask_contact
from dispatcher import aio
from dispatcher.cli.common import console, err_console
from dispatcher.dispatch.whatsapp import template_for
from dispatcher.roster.contacts import normalise_email, normalise_phone
from dispatcher.settings import get_settings

app = typer.Typer(help="Check the providers.", no_args_is_help=True)

NEEDS = {ChannelKind.SMS: "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER "
                          "(or TWILIO_MESSAGING_SERVICE_SID)",
         ChannelKind.EMAIL: "SENDGRID_API_KEY and ALN_EMAIL_FROM",
         ChannelKind.VOICE: "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER "
                            "(a voice-capable number)",
         ChannelKind.WHATSAPP: "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_WHATSAPP_FROM "
                               "(an approved WhatsApp sender)"}
#: What every test message says.
TEST_TEXT = "ALN test message: no action needed."


@app.command("test")
def test(sms: str | None = typer.Option(None, "--sms", help="Phone number to text."),
         email: str | None = typer.Option(None, "--email", help="Address to email."),
         voice: str | None = typer.Option(None, "--voice", help="Phone number to call."),
         whatsapp: str | None = typer.Option(
             None, "--whatsapp", help="WhatsApp number: gets the English Content template "
             "(config/templates/whatsapp.toml), as an alert outside a session would.")
         ) -> None:
    """Send one test message per path; exit 0 only if every provider accepted it."""
    if not sms and not email and not voice and not whatsapp:
        err_console.print("give --sms NUMBER, --email ADDRESS, --voice NUMBER and/or "
                          "--whatsapp NUMBER")
        raise typer.Exit(2)
    settings = get_settings()
    targets: list[tuple[ChannelKind, str]] = []
    try:
        if sms:
            targets.append((ChannelKind.SMS, normalise_phone(sms, "US")))
        if email:
            targets.append((ChannelKind.EMAIL, normalise_email(email)))
        if voice:
            targets.append((ChannelKind.VOICE, normalise_phone(voice, "US")))
        if whatsapp:
            targets.append((ChannelKind.WHATSAPP, normalise_phone(whatsapp, "US")))
    except ValueError as exc:
        err_console.print(f"error: {exc}")
        raise typer.Exit(2) from None

    async def run() -> bool:
        channels = build_channels(ChannelsConfig.from_settings(settings))
        ok = True
        try:
            for kind, to in targets:
                channel = channels.get(kind)
                if channel is None:
                    err_console.print(f"{kind}: not configured: set {NEEDS[kind]}")
                    ok = False
                    continue
                msg = Message(channel=kind, to=to, body=TEST_TEXT, subject="ALN test message",
                              reference="channels-test", language="en")
                if kind == ChannelKind.WHATSAPP:
                    msg = whatsapp_test(settings.config_dir, msg)
                try:
                    receipt = await channel.send(msg)
                except ChannelError as exc:
                    ok = False
                    kind_text = "refused" if isinstance(exc, PermanentError) else "failed"
                    err_console.print(f"{kind} to {mask_contact(to)} {kind_text}: {exc.describe()}"
                                      f" ({describe_code(exc.provider, exc.code)})")
                    continue
                console.print(f"{kind} to {mask_contact(to)} accepted: {receipt.provider_id} "
                              f"({receipt.status})")
        finally:
            for ch in channels.values():
                await ch.aclose()
        return ok

    if not aio.run(run()):
        raise typer.Exit(1)


def whatsapp_test(config_dir: Path, msg: Message) -> Message:
    """The test as a first WhatsApp message to someone goes: the English Content template
    (free text outside a 24-hour session is refused by WhatsApp), the test text in it."""
    template = template_for(config_dir, "en")
    if template is None:
        return msg  # free text: the provider's refusal names what is missing
    return replace(msg, free_text=False, template_sid=template.content_sid,
                   template_variables=template.fill(title="ALN test message", body=TEST_TEXT,
                                                    code="0000"))
