"""An alert as a CAP 1.2 message: one <info> per language, one <area> per zone.

The output validates against the bundled OASIS schema (see `schema.validate_cap`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from dispatcher.cap.schema import (
    CAP_NS,
    CARRIED_BODY_FIELDS,
    PARAM_BODY_PREFIX,
    PARAM_KIND,
    profile_of,
    q,
)
from dispatcher.compose.composer import ACK_URL_TAG, sms_for_zone
from dispatcher.domain import MsgType
from dispatcher.errors import NotFound
from dispatcher.models import Alert, Post

#: CAP forbids spaces, commas and XML's restricted characters in identifiers and senders.
_NOT_IN_IDENTIFIER = re.compile(r"[\s,<&]+")
#: Characters XML 1.0 cannot carry at all (control characters other than tab and newlines).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: xs:language, which <language> must match.
_LANGUAGE = re.compile(r"^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$")
#: Version 2 and later of an alert carry "-v2", "-v3" ... after the alert's identifier.
_VERSION_SUFFIX = re.compile(r"-v\d+$")


def own_identifier(post: Post, alert_id: int) -> str:
    """The identifier this engine gives an alert of a post."""
    return _clean(f"aln-{post.key}-{alert_id}")


def own_alert_id(post: Post, identifier: str) -> int | None:
    """The alert id in one of our own identifiers for this post (of any version), else None."""
    prefix = own_identifier(post, 0).removesuffix("0")
    number = _VERSION_SUFFIX.sub("", identifier.removeprefix(prefix))
    return int(number) if identifier.startswith(prefix) and number.isdigit() else None


def sender_of(post: Post) -> str:
    return _clean(f"aln-{post.key}")


def identifier_of(post: Post, alert: Alert, version: int = 1) -> str:
    """The CAP identifier of one version of an alert (each version is its own message)."""
    base = _clean(alert.cap_identifier) if alert.cap_identifier else own_identifier(post, alert.id)
    return base if version <= 1 else f"{base}-v{version}"


def cap_time(moment: datetime, timezone: str) -> str:
    """CAP's dateTime: seconds and a numeric offset, in the post's time zone. 'Z' is
    invalid, and CAP 1.2 (3.3.2) writes UTC as '-00:00', never '+00:00'."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    text = moment.astimezone(zone).replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "-00:00" if text.endswith("+00:00") else text


def export_cap(session: Session, alert_id: int) -> bytes:
    """The alert as CAP 1.2 XML (UTF-8 bytes with an XML declaration)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    post = session.get(Post, alert.post_id)
    assert post is not None  # a foreign key guarantees it

    versions = list(alert.versions)
    latest = versions[-1] if versions else None
    root = ET.Element(q("alert"))
    _add(root, "identifier", identifier_of(post, alert, latest.number if latest else 1))
    _add(root, "sender", sender_of(post))
    _add(root, "sent", cap_time(latest.sent_at, post.timezone) if latest else _sent(alert, post))
    _add(root, "status", "Exercise" if alert.exercise else "Actual")
    kind = latest.msg_type if latest else alert.msg_type
    msg_type = MsgType(kind) if kind in set(MsgType) else MsgType.ALERT
    _add(root, "msgType", msg_type.value.capitalize())
    _add(root, "scope", "Public")
    if alert.exercise:
        _add(root, "note", "Exercise: no real emergency.")
    if len(versions) > 1:
        # Every earlier version, oldest first: a CAP consumer can then follow the chain.
        _add(root, "references", " ".join(
            ",".join((sender_of(post), identifier_of(post, alert, v.number),
                      cap_time(v.sent_at, post.timezone))) for v in versions[:-1]))
    elif msg_type != MsgType.ALERT and alert.references_alert_id is not None:
        referenced = session.get(Alert, alert.references_alert_id)
        if referenced is not None:
            _add(root, "references", ",".join(
                (sender_of(post), identifier_of(post, referenced), _sent(referenced, post))))
    elif msg_type != MsgType.ALERT and alert.cap_references:
        # An imported Update or Cancel of a message we never had: its own references.
        _add(root, "references", alert.cap_references)
    zone_names = sorted(az.zone.name for az in alert.zones)
    bodies = alert.bodies or {post.default_language: {}}
    news = latest.body if latest and latest.number > 1 else None
    for lang, body in bodies.items():
        if news is not None and latest is not None:
            said = latest.texts.get(lang) or news.upper()  # a cancel carries no text
            body = {**body, "email_text": f"{said}\n\n{body.get('email_text') or ''}".strip()}
        _add_info(root, alert, post, lang, body, zone_names)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)


def _sent(alert: Alert, post: Post) -> str:
    return cap_time(alert.sent_at or alert.created_at, post.timezone)


def _add_info(root: ET.Element, alert: Alert, post: Post, lang: str, body: dict[str, str],
              zone_names: list[str]) -> None:
    profile = profile_of(alert.kind)
    info = ET.SubElement(root, q("info"))
    if _LANGUAGE.match(lang):
        _add(info, "language", lang)
    _add(info, "category", profile.category)
    # Each language's own words when the alert has them (a template's title, a CAP
    # source's <event> and <headline>); the English vocabulary and the title otherwise.
    _add(info, "event", body.get("event") or profile.event)
    _add(info, "urgency", profile.urgency)
    _add(info, "severity", profile.severity)
    _add(info, "certainty", profile.certainty)
    _add(info, "senderName", post.name)
    _add(info, "headline", body.get("headline") or alert.title)
    description = _public_text(body.get("email_text") or body.get("sms") or "")
    if description:
        _add(info, "description", description)
    if body.get("instruction"):
        _add(info, "instruction", body["instruction"])
    if post.help_line:
        _add(info, "contact", post.help_line)
    _add_parameter(info, PARAM_KIND, alert.kind)
    for field in CARRIED_BODY_FIELDS:
        if body.get(field):
            # Each volunteer's SMS names their zone; a CAP reader gets them all.
            value = sms_for_zone(body[field], ", ".join(zone_names))
            _add_parameter(info, PARAM_BODY_PREFIX + field.upper(), value)
    for name in zone_names:
        area = ET.SubElement(info, q("area"))
        _add(area, "areaDesc", name)


def _public_text(text: str) -> str:
    # Emails carry a per-recipient acknowledgement link as a substitution tag; it means
    # nothing to a CAP reader, so its line is left out.
    return "\n".join(line for line in text.splitlines() if ACK_URL_TAG not in line).strip()


def _add(parent: ET.Element, name: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, q(name))
    child.text = _NOT_XML.sub("", text)
    return child


def _add_parameter(info: ET.Element, name: str, value: str) -> None:
    param = ET.SubElement(info, q("parameter"))
    _add(param, "valueName", name)
    _add(param, "value", value)


def _clean(value: str) -> str:
    return _NOT_IN_IDENTIFIER.sub("-", value.strip()) or "unnamed"
