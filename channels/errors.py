"""The channel error tree: callers branch on transient versus permanent, never on SDK types.

    ChannelError
    ├── TransientError   try again: 429, 5xx, time-outs, refused connections
    └── PermanentError   this recipient will not get it on this channel (or bad credentials)
"""

from __future__ import annotations


class ChannelError(Exception):
    """A provider did not take a message; carries the provider's status and code."""

    def __init__(self, *, provider: str, status: int | None, code: str | int | None,
                 message: str, recipient: str = "") -> None:
        self.provider = provider
        self.status = status
        self.code = str(code) if code is not None else None
        self.message = message
        self.recipient = recipient
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" for {self.recipient}" if self.recipient else ""
        code = f" code {self.code}" if self.code else ""
        status = f" HTTP {self.status}" if self.status else ""
        return f"{self.provider}{status}{code}{where}: {self.message}"


class TransientError(ChannelError):
    """Worth retrying; `retry_after` is the wait the provider asked for, if it said."""

    def __init__(self, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)  # type: ignore[arg-type]


class PermanentError(ChannelError):
    """Retrying cannot help. `recipient_specific` is False when the fault is ours
    (credentials, configuration): the contact path itself is not dead."""

    def __init__(self, *, recipient_specific: bool = True, **kwargs: object) -> None:
        self.recipient_specific = recipient_specific
        super().__init__(**kwargs)  # type: ignore[arg-type]


#: Twilio's "attempt to send to unsubscribed recipient": the number texted STOP (or the
#: like) and Twilio blocks it until it texts START, UNSTOP or YES.
TWILIO_UNSUBSCRIBED = "21610"

#: Twilio codes an officer may meet, with what they mean.
TWILIO_CODES = {
    "20003": "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    "20429": "too many requests: Twilio asked us to slow down",
    "21211": "invalid 'To' phone number",
    "21606": "the 'From' number cannot send SMS",
    "21610": "the recipient replied STOP and is opted out",
    "21611": "the sender's queue is full: too many messages queued",
    "21614": "the 'To' number is not a mobile number",
    "21617": "the message body is too long",
    "21658": "the message body is too long",
    "30001": "queue overflow: the message expired in the sender's queue",
    "30003": "unreachable handset (switched off or out of coverage)",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error from the carrier",
    "63016": "WhatsApp free text outside the 24-hour session: a template is needed",
}


def describe_code(provider: str, code: str | int | None) -> str:
    """A human meaning for a provider code, for the CLI and the reports."""
    if code is None:
        return "no code given"
    if provider == "twilio":
        return TWILIO_CODES.get(str(code), "see the provider's error dictionary")
    return {"400": "bad request", "401": "bad API key", "403": "forbidden (API key scope)",
            "413": "payload too large", "429": "rate limited"}.get(
                str(code), "see the provider's documentation")
