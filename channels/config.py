"""Every channel knob in one frozen object, built from the engine's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChannelsConfig:
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    #: The WhatsApp sender (`+E164` or `whatsapp:+E164`); unset, no WhatsApp channel.
    twilio_whatsapp_from: str | None = None
    status_callback_url: str | None = None
    #: A call's signed webhooks: the key pressed, and the call's progress.
    voice_gather_url: str | None = None
    voice_status_callback_url: str | None = None
    #: Seconds a call rings before it counts as not answered (Twilio's `Timeout`).
    call_timeout_seconds: int = 30
    sms_validity_seconds: int | None = 3600
    sendgrid_api_key: str | None = None
    sendgrid_api_url: str = "https://api.sendgrid.com"
    email_from: str | None = None
    timeout_seconds: float = 10.0
    retry_max_attempts: int = 5
    retry_max_seconds: float = 60.0
    retry_min_wait: float = 0.5
    retry_max_wait: float = 30.0
    concurrency: int = 100
    sms_rate_per_second: float = 10.0
    email_rate_per_second: float = 100.0
    #: Calls started per second (Twilio's default for an account is 1 CPS).
    call_rate_per_second: float = 1.0
    whatsapp_rate_per_second: float = 20.0

    @classmethod
    def from_settings(cls, s: Any) -> ChannelsConfig:
        """From the engine's settings object (attributes named as in DESIGN.md)."""
        public = getattr(s, "public_url", None)
        defaults = cls()

        def get(name: str, default: Any) -> Any:
            value = getattr(s, name, None)
            return default if value is None else value

        return cls(
            twilio_account_sid=get("twilio_account_sid", None),
            twilio_auth_token=get("twilio_auth_token", None),
            twilio_from_number=get("twilio_from_number", None),
            twilio_messaging_service_sid=get("twilio_messaging_service_sid", None),
            twilio_api_url=get("twilio_api_url", defaults.twilio_api_url),
            twilio_whatsapp_from=get("twilio_whatsapp_from", None),
            status_callback_url=(public.rstrip("/") + "/webhooks/twilio/status"
                                 if public else None),
            voice_gather_url=(public.rstrip("/") + "/webhooks/twilio/voice/gather"
                              if public else None),
            voice_status_callback_url=(public.rstrip("/") + "/webhooks/twilio/voice/status"
                                       if public else None),
            call_timeout_seconds=get("call_timeout_seconds", defaults.call_timeout_seconds),
            call_rate_per_second=get("call_rate_per_second", defaults.call_rate_per_second),
            sms_validity_seconds=get("sms_validity_seconds", defaults.sms_validity_seconds),
            sendgrid_api_key=get("sendgrid_api_key", None),
            sendgrid_api_url=get("sendgrid_api_url", defaults.sendgrid_api_url),
            email_from=get("email_from", None),
            timeout_seconds=get("provider_timeout_seconds", defaults.timeout_seconds),
            retry_max_attempts=get("retry_max_attempts", defaults.retry_max_attempts),
            retry_max_seconds=get("retry_max_seconds", defaults.retry_max_seconds),
            retry_min_wait=get("retry_min_wait", defaults.retry_min_wait),
            retry_max_wait=get("retry_max_wait", defaults.retry_max_wait),
            concurrency=get("send_concurrency", defaults.concurrency),
            sms_rate_per_second=get("sms_rate_per_second", defaults.sms_rate_per_second),
            email_rate_per_second=get("email_rate_per_second", defaults.email_rate_per_second),
            whatsapp_rate_per_second=get("whatsapp_rate_per_second",
                                         defaults.whatsapp_rate_per_second),
        )
