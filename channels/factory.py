"""The configured channels, built inside the event loop that will use them."""

from __future__ import annotations

from channels.base import Channel, ChannelKind
from channels.config import ChannelsConfig
from channels.retry import SleepFn
from channels.sendgrid_email import SendGridEmail
from channels.twilio_sms import TwilioSMS
from channels.twilio_voice import TwilioVoice
from channels.twilio_whatsapp import TwilioWhatsApp


def build_channels(config: ChannelsConfig,
                   sleep: SleepFn | None = None) -> dict[ChannelKind, Channel]:
    """Only channels whose credentials are set."""
    out: dict[ChannelKind, Channel] = {}
    if config.twilio_account_sid and config.twilio_auth_token and (
            config.twilio_from_number or config.twilio_messaging_service_sid):
        out[ChannelKind.SMS] = TwilioSMS(config, sleep=sleep)
    if config.twilio_account_sid and config.twilio_auth_token and config.twilio_from_number:
        # Calls come from a number (a Messaging Service cannot call).
        out[ChannelKind.VOICE] = TwilioVoice(config, sleep=sleep)
    if config.twilio_account_sid and config.twilio_auth_token and config.twilio_whatsapp_from:
        out[ChannelKind.WHATSAPP] = TwilioWhatsApp(config, sleep=sleep)
    if config.sendgrid_api_key and config.email_from:
        out[ChannelKind.EMAIL] = SendGridEmail(config, sleep=sleep)
    return out
