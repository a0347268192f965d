"""Turning an officer's text into every message of an alert, per language and channel.

Every SMS starts with EXERCISE for a drill and ends with its reply code ("Reply YES
4821 to confirm."); every email carries the acknowledgement link, written as the
substitution tag `ACK_URL_TAG` so identical emails batch and each recipient's link
is filled in at send time.
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

    def as_dict(self) -> dict[str, str]:
        return {"sms": self.sms, "subject": self.subject, "email_text": self.email_text,
                "email_html": self.email_html}


def compose(
    config_dir: Path, template: Template, *, title: str | None, body: Mapping[str, str] | str,
    zones: Iterable[str], exercise: bool, code: str, help_line: str,
) -> dict[str, dict[str, str]]:
    """Bodies for every language of the template: {language: Bodies.as_dict()}."""
    zone_text = ", ".join(zones)
    out: dict[str, dict[str, str]] = {}
    for lang, texts in template.texts.items():
        text = body if isinstance(body, str) else body.get(lang) or next(iter(body.values()))
        if not text.strip():
            raise InvalidInput("the alert body is empty")
        heading = title or texts.get("title") or template.name
        out[lang] = _bodies(config_dir, lang, texts, heading, text.strip(), zone_text,
                            exercise, code, help_line).as_dict()
        if len(out[lang]["sms"]) > SMS_MAX_CHARS:
            raise InvalidInput(
                f"the {lang} SMS is {len(out[lang]['sms'])} characters; providers refuse more "
                f"than {SMS_MAX_CHARS}: shorten the body")
    return out


def _bodies(
    config_dir: Path, lang: str, texts: Mapping[str, str], title: str, body: str, zones: str,
    exercise: bool, code: str, help_line: str,
) -> Bodies:
    marker = wording(config_dir, lang, "exercise") if exercise else ""
    prefix = f"{marker}: " if marker else ""
    sms_core = texts.get("sms", "{title}: {zones}. {body}").format(title=title, zones=zones,
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
    return Bodies(sms=sms, subject=subject[:SUBJECT_MAX_CHARS], email_text=email_text,
                  email_html=email_html)


def sms_preview(bodies: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, object]]:
    """Encoding and segment count of each language's SMS, for the dry run and the form."""
    out: dict[str, dict[str, object]] = {}
    for lang, b in bodies.items():
        info = sms_segments(b["sms"])
        out[lang] = {"encoding": info.encoding, "segments": info.segments,
                     "characters": len(b["sms"]), "text": b["sms"]}
    return out
