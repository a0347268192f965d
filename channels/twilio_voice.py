"""Phone calls through the official `twilio` SDK's Calls API: read the alert, ask for a key.

A call is `client.calls.create` with its TwiML inline (`Twiml`): the alert read twice
in the volunteer's language inside a `<Gather numDigits="1">` whose `action` is our
signed gather webhook (`ALN_PUBLIC_URL/webhooks/twilio/voice/gather?ref=<delivery>`),
then the question "press 1 to confirm, 9 for help". When nobody presses a key (a
person who hangs up, a voicemail) Twilio runs the verbs after the Gather: a short
voicemail with the reply code. `MachineDetection=DetectMessageEnd` starts the TwiML
after a voicemail's beep, so the voicemail records the whole message; its outcome comes
back in the status callbacks (`AnsweredBy`). TwiML is built only with the SDK's
`VoiceResponse` (it escapes text): untrusted text never becomes markup.

The HTTP client, the error classification and the retry policy are the SMS channel's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import ChannelError, TransientError
from channels.limits import Limits
from channels.masking import mask_contact
from channels.retry import RetryPolicy, SleepFn
from channels.twilio_sms import RewritingHttpClient, _retry_after, classify

log = logging.getLogger(__name__)

#: Our language codes and the `<Say language>` Twilio's "alice" voice speaks them in
#: (Twilio's TwiML <Say> documentation). Anything else is read in English, and the dry
#: run says so.
SAY_LANGUAGES: dict[str, str] = {
    "ca": "ca-ES", "da": "da-DK", "de": "de-DE", "en": "en-US", "es": "es-MX",
    "fi": "fi-FI", "fr": "fr-FR", "it": "it-IT", "ja": "ja-JP", "ko": "ko-KR",
    "nb": "nb-NO", "nl": "nl-NL", "pl": "pl-PL", "pt": "pt-BR", "ru": "ru-RU",
    "sv": "sv-SE", "zh": "zh-CN",
}
#: What a language without a voice is read in.
FALLBACK_SPOKEN = "en"
VOICE = "alice"
#: Call progress events Twilio reports to the status callback.
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
#: Start the TwiML after a voicemail's beep, so the voicemail holds the whole message.
MACHINE_DETECTION = "DetectMessageEnd"
#: Seconds to wait for the key press once the question was asked.
GATHER_TIMEOUT_SECONDS = 8
#: Words read per minute, to estimate a call's billed minutes.
WORDS_PER_MINUTE = 150


def say_language(language: str | None) -> str | None:
    """Twilio's `<Say language>` for one of our codes ("es", "es-MX"), None without one."""
    if not language:
        return None
    return SAY_LANGUAGES.get(language.split("-")[0].lower())


def spoken_language(language: str | None) -> str:
    """The language a call in `language` is read in: itself when Twilio speaks it."""
    return (language or FALLBACK_SPOKEN).split("-")[0].lower() if say_language(language) \
        else FALLBACK_SPOKEN


def estimated_minutes(text: str, prompt: str = "", *, repeats: int = 2) -> int:
    """Billed minutes (Twilio rounds each call up) for reading `text` `repeats` times."""
    words = len(text.split()) * repeats + len(prompt.split())
    return max(1, -(-words // WORDS_PER_MINUTE))


def call_twiml(message: Message, gather_url: str | None, *, repeats: int = 2) -> str:
    """The call's TwiML: the alert `repeats` times and the question inside a one-digit
    Gather posting to `gather_url`, then the voicemail for when no key was pressed."""
    lang = say_language(message.language) or say_language(FALLBACK_SPOKEN)
    text = message.rendered(message.body) or ""
    response = VoiceResponse()
    if message.prompt and gather_url:
        gather = response.gather(num_digits=1, action=gather_url, method="POST",
                                 timeout=GATHER_TIMEOUT_SECONDS, action_on_empty_result=False)
        for _ in range(repeats):
            gather.say(text, voice=VOICE, language=lang)
        gather.say(message.prompt, voice=VOICE, language=lang)
    else:
        for _ in range(repeats):
            response.say(text, voice=VOICE, language=lang)
    if message.voicemail:
        response.say(message.voicemail, voice=VOICE, language=lang)
    response.hangup()
    return str(response)


def say_twiml(text: str | None, language: str | None) -> str:
    """An answer to a gather webhook: `text` said once, then hang up."""
    response = VoiceResponse()
    if text:
        response.say(text, voice=VOICE,
                     language=say_language(language) or say_language(FALLBACK_SPOKEN))
    response.hangup()
    return str(response)


class TwilioVoice:
    """Calls via Twilio; limits and the retry policy are applied to every request."""

    kind: ClassVar[ChannelKind] = ChannelKind.VOICE
    max_batch: ClassVar[int] = 1
    #: Twilio refuses inline TwiML longer than this (characters).
    twiml_maxlen: ClassVar[int] = 4000

    def __init__(self, config: ChannelsConfig, *, sleep: SleepFn | None = None) -> None:
        if not config.twilio_account_sid or not config.twilio_auth_token:
            raise ValueError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not config.twilio_from_number:
            raise ValueError("calls need TWILIO_FROM_NUMBER (a voice-capable number)")
        self.config = config
        self.policy = RetryPolicy.from_config(config)
        self.limits = Limits(config.concurrency, config.call_rate_per_second)
        self._sleep = sleep
        self._http: RewritingHttpClient | None = None
        self._client: Client | None = None

    def _ensure_client(self) -> Client:
        if self._client is None:
            self._http = RewritingHttpClient(self.config.twilio_api_url,
                                             self.config.timeout_seconds,
                                             max(self.config.concurrency, 1))
            self._client = Client(self.config.twilio_account_sid, self.config.twilio_auth_token,
                                  http_client=self._http)
        return self._client

    async def send(self, message: Message) -> Receipt:
        return await self.policy.call_fast(lambda: self._send_once(message), self._sleep)

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | ChannelError]:
        async def one(m: Message) -> Receipt | ChannelError:
            try:
                return await self.send(m)
            except ChannelError as exc:
                return exc

        return list(await asyncio.gather(*(one(m) for m in messages)))

    def request(self, message: Message) -> dict[str, Any]:
        """The keyword arguments of `calls.create` for one message."""
        ref = f"?ref={message.reference}" if message.reference else ""
        gather = (self.config.voice_gather_url + ref) if self.config.voice_gather_url else None
        twiml = call_twiml(message, gather)
        if len(twiml) > self.twiml_maxlen:
            # A long alert still gets through: read once rather than cut.
            twiml = call_twiml(message, gather, repeats=1)
        kwargs: dict[str, Any] = {
            "to": message.to, "from_": self.config.twilio_from_number, "twiml": twiml,
            "timeout": self.config.call_timeout_seconds,
            "machine_detection": MACHINE_DETECTION,
        }
        if self.config.voice_status_callback_url:
            kwargs["status_callback"] = self.config.voice_status_callback_url + ref
            kwargs["status_callback_event"] = list(STATUS_EVENTS)
            kwargs["status_callback_method"] = "POST"
        return kwargs

    async def _send_once(self, message: Message) -> Receipt:
        client = self._ensure_client()
        masked = mask_contact(message.to)
        kwargs = self.request(message)
        _retry_after.set(None)
        async with self.limits:
            try:
                created = await client.calls.create_async(**kwargs)
            except TwilioRestException as exc:
                raise classify(exc.status, exc.code, str(exc.msg), masked,
                               _retry_after.get()) from None
            except TwilioException as exc:
                status = getattr(exc, "status", None)
                code = getattr(exc, "code", None)
                raise classify(status if isinstance(status, int) else None,
                               code if isinstance(code, int) else None, str(exc)[:300],
                               masked, _retry_after.get()) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransientError(provider="twilio", status=None, code=None,
                                     message=f"{type(exc).__name__}: {exc}"[:300],
                                     recipient=masked) from None
        return Receipt(provider_id=str(created.sid), status=str(created.status or "queued"),
                       segments=1)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
