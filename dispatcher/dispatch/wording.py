"""What each message of an alert says: its outbox row's text per channel and language
(a call's spoken language and text, SMS segments), and the fixed wordings (cancel,
stand-down, reminders), EXERCISE first for a drill."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from channels.encoding import sms_segments
from channels.twilio_voice import say_language, spoken_language
from dispatcher.compose.composer import sms_for_zone
from dispatcher.compose.templates import wording
from dispatcher.dispatch.whatsapp import COST_UNITS as WHATSAPP_COST_UNITS
from dispatcher.domain import TEXT_PHONE_CHANNELS, Channel, DeliveryPurpose
from dispatcher.models import Alert, Delivery
from dispatcher.settings import Settings


def new_delivery(alert: Alert, contact: Any, purpose: DeliveryPurpose, lang: str,
                 text: str | None = None, *, zone: str) -> Delivery:
    """The row for one message; an alert's SMS names `zone`, the recipient's own."""
    if contact.channel == Channel.VOICE:
        return _call(alert, contact, purpose, lang, text, zone=zone)
    common = dict(alert_id=alert.id, contact_id=contact.id, channel=contact.channel,
                  purpose=purpose, language=lang)
    if text is not None:
        if contact.channel in TEXT_PHONE_CHANNELS:
            return Delivery(**common, body=text, segments=_cost_units(contact.channel, text))
        return Delivery(**common, subject=text[:120], body=text, html=None)
    bodies = alert.bodies.get(lang) or next(iter(alert.bodies.values()))
    if contact.channel in TEXT_PHONE_CHANNELS:
        # WhatsApp carries the SMS's words (free text, or the template's body variable).
        sms = sms_for_zone(bodies["sms"], zone)
        return Delivery(**common, body=sms, segments=_cost_units(contact.channel, sms))
    return Delivery(**common, subject=bodies["subject"], body=bodies["email_text"],
                    html=bodies["email_html"])


def voice_language(lang: str, available: Sequence[str]) -> str:
    """The language a call is read in: the volunteer's when Twilio speaks it, else English
    (or, without an English text, the first spoken one the alert has)."""
    spoken = spoken_language(lang)
    if spoken == lang and lang in available:
        return lang
    return next((c for c in [spoken, *available] if c in available and say_language(c)), spoken)


def voice_text(bodies: dict[str, dict[str, str]], lang: str, zone: str) -> str:
    """What a call reads in `lang` to a volunteer of `zone` (older alerts: their SMS)."""
    b = bodies.get(lang) or next(iter(bodies.values()))
    return sms_for_zone(b.get("voice") or b["sms"], zone)


def _call(alert: Alert, contact: Any, purpose: DeliveryPurpose, lang: str, text: str | None,
          *, zone: str) -> Delivery:
    """A call's row: `body` is read, `subject` is the voicemail left when nobody answers
    with a key; `language` is the one it is spoken in."""
    spoken = voice_language(lang, list(alert.bodies))
    if text is not None:
        return Delivery(alert_id=alert.id, contact_id=contact.id, channel=Channel.VOICE.value,
                        purpose=purpose, language=spoken_language(lang), body=text)
    voicemail = (alert.bodies.get(spoken) or {}).get("voicemail") or None
    return Delivery(alert_id=alert.id, contact_id=contact.id, channel=Channel.VOICE.value,
                    purpose=purpose, language=spoken, body=voice_text(alert.bodies, spoken, zone),
                    subject=voicemail)


def _cost_units(channel: str, text: str) -> int:
    """What one message bills: SMS segments, or one WhatsApp message."""
    return segments_of(text) if channel == Channel.SMS else WHATSAPP_COST_UNITS


@functools.lru_cache(maxsize=64)
def segments_of(text: str) -> int:
    """Segments of one body, computed once for the thousands of copies of an alert."""
    return sms_segments(text).segments


def fixed_text(settings: Settings, alert: Alert, lang: str, key: str, **values: object) -> str:
    """A fixed-wording message of an alert in one language, EXERCISE first for a drill."""
    text = wording(settings.config_dir, lang, key, code=alert.reply_code, title=alert.title,
                   **values)
    if alert.exercise:
        text = f"{wording(settings.config_dir, lang, 'exercise')}: {text}"
    return text

