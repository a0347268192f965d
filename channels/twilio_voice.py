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

The HTTP client, the limits, the retry policy and the error classification are shared
with SMS (`channels.twilio_sms.TwilioChannel`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from twilio.twiml.voice_response import VoiceResponse

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.retry import SleepFn
from channels.twilio_sms import TwilioChannel

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
    if language and say_language(language):
        return language.split("-")[0].lower()
    return FALLBACK_SPOKEN


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


class TwilioVoice(TwilioChannel):
    """Calls via Twilio; limits and the retry policy are applied to every request."""

    kind: ClassVar[ChannelKind] = ChannelKind.VOICE
    #: Twilio refuses inline TwiML longer than this (characters).
    twiml_maxlen: ClassVar[int] = 4000

    def __init__(self, config: ChannelsConfig, *, sleep: SleepFn | None = None) -> None:
        super().__init__(config, config.call_rate_per_second, sleep=sleep)
        if not config.twilio_from_number:
            raise ValueError("calls need TWILIO_FROM_NUMBER (a voice-capable number)")

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
        kwargs = self.request(message)
        created = await self._create(lambda: client.calls.create_async(**kwargs), message.to)
        return Receipt(provider_id=str(created.sid), status=str(created.status or "queued"),
                       segments=1)
