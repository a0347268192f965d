"""WhatsApp through Twilio's Messages API (the same SDK, client and errors as SMS).

Addresses are `whatsapp:+E164`. Outside the 24-hour customer-service session a
business may only send an approved Content template (`ContentSid` plus
`ContentVariables`, a JSON object of numbered placeholders); free text then fails
with error 63016. So a message goes as free text only when the engine knows a
session is open (`Message.free_text`), and a 63016 answer is never retried as it
was: the template goes instead, once, or the error is permanent for this message
(not for the path: the volunteer's other channels take over).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import PermanentError
from channels.masking import mask_contact
from channels.twilio_sms import TwilioSMS

#: Twilio's "free-form message outside the 24-hour session".
OUTSIDE_SESSION = "63016"
#: The address prefix of a WhatsApp number in Twilio's API and webhooks.
PREFIX = "whatsapp:"


def whatsapp_address(number: str) -> str:
    """'+5215512345678' -> 'whatsapp:+5215512345678' (an address already prefixed stays)."""
    number = number.strip()
    return number if number.startswith(PREFIX) else PREFIX + number


def strip_address(address: str) -> tuple[str, bool]:
    """The bare number of an address, and whether it was a WhatsApp one."""
    if address.startswith(PREFIX):
        return address[len(PREFIX):], True
    return address, False


class TwilioWhatsApp(TwilioSMS):
    """WhatsApp via Twilio: a template outside the session, free text inside it."""

    kind: ClassVar[ChannelKind] = ChannelKind.WHATSAPP
    #: WhatsApp's own limit on a free-form message body.
    body_maxlen: ClassVar[int] = 4096

    @classmethod
    def check_sender(cls, config: ChannelsConfig) -> None:
        if not config.twilio_whatsapp_from:
            raise ValueError("WhatsApp needs TWILIO_WHATSAPP_FROM (the approved sender)")

    @classmethod
    def rate_per_second(cls, config: ChannelsConfig) -> float:
        return config.whatsapp_rate_per_second

    async def _send_once(self, message: Message) -> Receipt:
        number = strip_address(message.to)[0]
        base: dict[str, Any] = {"to": whatsapp_address(message.to),
                                "from_": whatsapp_address(self.config.twilio_whatsapp_from or "")}
        body = (message.rendered(message.body) or "")[:self.body_maxlen]
        if message.free_text and body:
            try:
                return await self._create_message(message, {**base, "body": body}, number)
            except PermanentError as exc:
                if exc.code != OUTSIDE_SESSION or not message.template_sid:
                    raise
                # The session had closed after all: the template, never the text again.
        if not message.template_sid:
            raise PermanentError(
                provider="twilio", status=None, code=OUTSIDE_SESSION,
                recipient=mask_contact(number), recipient_specific=False,
                message="outside the 24-hour WhatsApp session and no Content template is "
                        "configured for this language (config/templates/whatsapp.toml)")
        return await self._create_message(message, {
            **base, "content_sid": message.template_sid,
            "content_variables": json.dumps(dict(message.template_variables),
                                            ensure_ascii=False)}, number)
