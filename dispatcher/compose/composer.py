"""Turning an officer's text into every message of an alert, per language and channel.

Every SMS starts with EXERCISE for a drill and ends with its reply code ("Reply YES
4821 to confirm."); every email carries the acknowledgement link, written as the
substitution tag `ACK_URL_TAG` so identical emails batch and each recipient's link
is filled in at send time.

An SMS names one zone, the volunteer's own: the stored SMS holds `ZONE_TAG`, filled
per recipient when the delivery row is written (`sms_for_zone`). Naming every targeted
zone made an alert to 200 zones too long to send, and an alert to Mexico's 32 states
UCS-2 for everyone (Michoacán, Querétaro). The email and the board list every zone.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from channels.encoding import sms_segments
from dispatcher.compose.templates import Template, wording
from dispatcher.errors import InvalidInput

#: Replaced per recipient by the signed acknowledgement URL.
ACK_URL_TAG = "-ack_url-"
#: Replaced, in each SMS, by the name of the recipient's own zone.
ZONE_TAG = "-aln_zone-"
#: Twilio refuses longer bodies (21617).
SMS_MAX_CHARS = 1600
#: Longer email subjects are cut (mail clients show far less).
SUBJECT_MAX_CHARS = 250
REPLY_CODE_DIGITS = 4
#: What a draft holds until it is sent: codes are allocated at sending, so drafts never
#: use up the codes of alerts that take replies.
NO_REPLY_CODE = ""
#: Every reply code: four digits, never starting with 0 (some phones drop it).
REPLY_CODES = tuple(str(n) for n in range(10 ** (REPLY_CODE_DIGITS - 1), 10 ** REPLY_CODE_DIGITS))


@dataclass(frozen=True)
class Bodies:
    """All the text of one alert in one language."""

    sms: str
    subject: str
    email_text: str
    email_html: str
    #: The alert's title in this language, and the kind of event it is (CAP's
    #: <headline> and <event> of this language's <info>).
    headline: str = ""
    event: str = ""
    #: What a call reads (the SMS without its "Reply YES" line; holds `ZONE_TAG`), and
    #: the voicemail it leaves when nobody presses a key (with the reply code).
    voice: str = ""
    voicemail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"sms": self.sms, "subject": self.subject, "email_text": self.email_text,
                "email_html": self.email_html, "headline": self.headline,
                "event": self.event, "voice": self.voice, "voicemail": self.voicemail}


def compose(
    config_dir: Path, template: Template, *, title: str | None, body: Mapping[str, str] | str,
    zones: Iterable[str], exercise: bool, code: str, help_line: str,
) -> dict[str, dict[str, str]]:
    """Bodies for every language of the template: {language: Bodies.as_dict()}."""
    names = list(zones) or [""]
    zone_text = ", ".join(names)
    out: dict[str, dict[str, str]] = {}
    for lang, texts in template.texts.items():
        text = body if isinstance(body, str) else body.get(lang) or next(iter(body.values()))
        if not text.strip():
            raise InvalidInput("the alert body is empty")
        heading = title or texts.get("title") or template.name
        out[lang] = _bodies(config_dir, lang, texts, heading, text.strip(), zone_text,
                            exercise, code, help_line).as_dict()
        zone, sms = max(((z, sms_for_zone(out[lang]["sms"], z)) for z in names),
                        key=lambda pair: len(pair[1]))
        if len(sms) > SMS_MAX_CHARS:
            raise InvalidInput(
                f"the {lang} SMS is {len(sms)} characters (to {zone}); providers refuse more "
                f"than {SMS_MAX_CHARS}: shorten the body")
    return out


def sms_for_zone(sms: str, zone: str) -> str:
    """An alert's stored SMS as sent to a volunteer of `zone`."""
    return sms.replace(ZONE_TAG, zone)


def _bodies(
    config_dir: Path, lang: str, texts: Mapping[str, str], title: str, body: str, zones: str,
    exercise: bool, code: str, help_line: str,
) -> Bodies:
    marker = wording(config_dir, lang, "exercise") if exercise else ""
    prefix = f"{marker}: " if marker else ""
    sms_core = texts.get("sms", "{title}: {zones}. {body}").format(title=title, zones=ZONE_TAG,
                                                                   body=body)
    sms = f"{prefix}{sms_core} {wording(config_dir, lang, 'sms_reply', code=code)}"
    labels = {k: wording(config_dir, lang, k) for k in ("location", "event", "actions",
                                                        "assistance")}
    sections = [
        (labels["location"], zones),
        (labels["event"], body),
        (labels["actions"], texts.get("actions", "")),
        (labels["assistance"], help_line),
    ]
    ack_line = wording(config_dir, lang, "email_ack", ack_url=ACK_URL_TAG)
    lines = [marker] if marker else []
    lines += [title, ""] + [f"{label}: {value}" for label, value in sections if value]
    lines += ["", ack_line, wording(config_dir, lang, "sms_reply", code=code)]
    if marker:
        lines.append(marker)
    email_text = "\n".join(lines)
    esc = html.escape
    banner = (f'<p style="background:#b00020;color:#fff;font-weight:bold;padding:6px">'
              f"{esc(marker)}</p>") if marker else ""
    rows = "".join(f"<p><strong>{esc(label)}:</strong> {esc(value)}</p>"
                   for label, value in sections if value)
    ack_link = wording(config_dir, lang, "email_ack", ack_url="").rstrip(": ")
    email_html = (
        f'<!doctype html><html lang="{esc(lang)}"><body>{banner}<h1>{esc(title)}</h1>{rows}'
        f'<p><a href="{ACK_URL_TAG}">{esc(ack_link)}</a></p>'
        f"<p>{esc(wording(config_dir, lang, 'sms_reply', code=code))}</p>{banner}</body></html>"
    )
    subject = f"{prefix}{title} ({zones})" if zones else f"{prefix}{title}"
    voicemail = f"{prefix}{wording(config_dir, lang, 'voice_voicemail', code=code)}"
    return Bodies(sms=sms, subject=subject[:SUBJECT_MAX_CHARS], email_text=email_text,
                  email_html=email_html, headline=title, event=texts.get("title", ""),
                  voice=f"{prefix}{sms_core}", voicemail=voicemail)


def sms_preview(bodies: Mapping[str, Mapping[str, str]],
                zones: Iterable[str] = ()) -> dict[str, dict[str, object]]:
    """Encoding and segment count of each language's SMS, for the dry run and the form:
    the costliest of the zones' SMS (UCS-2 if any zone's is), and which zone that is."""
    names = list(zones) or [""]
    out: dict[str, dict[str, object]] = {}
    for lang, b in bodies.items():
        filled = [(z, sms_for_zone(b["sms"], z)) for z in names]
        measured = [(sms_segments(text), z, text) for z, text in filled]
        info, zone, text = max(measured, key=lambda m: (m[0].segments, m[0].units))
        ucs2 = any(m[0].encoding == "UCS-2" for m in measured)
        out[lang] = {"encoding": "UCS-2" if ucs2 else info.encoding,
                     "segments": info.segments, "characters": len(text), "text": text,
                     "zone": zone}
    return out
