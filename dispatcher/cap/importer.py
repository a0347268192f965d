"""A CAP message (ours, or a weather or civil-protection service's) as a draft alert.

Import never sends anything: it yields a draft an officer reviews and sends. The XML
comes from outside, so it is parsed with defusedxml and refused whole at the first
sign of trouble (a DTD, an entity, malformed XML, a root that is not a CAP <alert>).
Areas are matched to the post's zones like roster zones are (case and accents
ignored); unmatched areas are reported, and only an alert matching no zone is refused.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import TypedDict

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.encoding import cut_sms
from dispatcher import audit, lifecycle
from dispatcher.cap.export import own_alert_id
from dispatcher.cap.schema import (
    CAP_NS,
    CAP_STATUSES,
    CARRIED_BODY_FIELDS,
    KIND_OF_CATEGORY,
    PARAM_BODY_PREFIX,
    PARAM_KIND,
    READABLE_NAMESPACES,
)
from dispatcher.compose.composer import NO_REPLY_CODE, SUBJECT_MAX_CHARS
from dispatcher.domain import AlertKind, AlertState
from dispatcher.errors import InvalidInput, Refused
from dispatcher.models import Alert, AlertZone, Post
from dispatcher.roster.posts import find_zone, unknown_zone_message, zones_by_key
from dispatcher.text import fold

#: Larger files are refused before parsing: real CAP messages are a few kilobytes.
MAX_CAP_BYTES = 1024 * 1024
#: Acknowledgement window of an imported draft; the officer may change it before sending.
DRAFT_ACK_WINDOW_SECONDS = 900
#: An imported SMS is cut here (two GSM-7 segments): service texts are written for email.
IMPORTED_SMS_MAX_CHARS = 306
#: CAP's default <language> when an <info> names none.
CAP_DEFAULT_LANGUAGE = "en-US"


class CapDraft(TypedDict):
    """What a CAP message asks for, ready for `create_draft_alert` (or an officer's edits)."""

    title: str
    kind: str
    exercise: bool
    msg_type: str
    #: {language: {"sms", "subject", "email_text", "email_html"}}
    bodies: dict[str, dict[str, str]]
    #: Zone names of the post, as the post spells them.
    zones: list[str]
    #: areaDesc values matching no zone, each with a hint when one is close.
    unmatched_areas: list[str]
    unmatched_hints: list[str]
    cap_identifier: str | None
    cap_sender: str | None
    cap_sent: str | None
    cap_references: str | None
    references_alert_id: int | None


def parse_cap_xml(xml: bytes | str) -> ET.Element:
    """The root <alert> element; InvalidInput for anything hostile, malformed or not CAP."""
    size = len(xml.encode("utf-8") if isinstance(xml, str) else xml)
    if size > MAX_CAP_BYTES:
        raise InvalidInput(f"CAP file refused: {size} bytes, more than {MAX_CAP_BYTES}")
    try:
        root = SafeET.fromstring(xml, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DTDForbidden:
        raise InvalidInput(
            "CAP file refused: it has a DOCTYPE declaration; a DTD can declare entities "
            "(entity expansion, external files), and CAP never needs one") from None
    except EntitiesForbidden as exc:
        raise InvalidInput(f"CAP file refused: it declares the XML entity {exc.name!r}") from None
    except DefusedXmlException as exc:
        raise InvalidInput(f"CAP file refused: {exc}") from None
    except ET.ParseError as exc:
        raise InvalidInput(f"CAP file is not well-formed XML: {exc}") from None
    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    if local != "alert" or ns not in READABLE_NAMESPACES:
        shown = f"<{local}> in namespace {ns!r}" if ns else f"<{local}> (no namespace)"
        raise InvalidInput(
            f"not a CAP 1.2 message: the root element is {shown}, expected <alert> "
            f"in namespace {CAP_NS!r}")
    return root


def import_cap(session: Session, post: Post, xml: bytes | str, *,
               aliases: Mapping[str, str] | None = None) -> CapDraft:
    """Read a CAP message into a draft for `post`; changes nothing in the database.

    `aliases` (folded alias or ISO 3166-2 code -> zone name, from `posts.zone_aliases`)
    lets areas and geocodes such as "Chis" or "MX-CHP" name a zone."""
    root = parse_cap_xml(xml)
    cap = _Reader(root)
    status = cap.required(root, "status")
    if status not in CAP_STATUSES:
        # A status we do not know is not quietly a drill: it could be a real emergency
        # under a vendor's spelling, or a test someone would then take as real.
        raise InvalidInput(f"CAP <status> {status!r} is not one of "
                           f"{', '.join(CAP_STATUSES)}: refused")
    msg_type = cap.required(root, "msgType")
    if msg_type not in ("Alert", "Update", "Cancel"):
        raise InvalidInput(f"CAP msgType {msg_type!r} carries no alert to send "
                           "(expected Alert, Update or Cancel)")
    identifier, sender = cap.text(root, "identifier"), cap.text(root, "sender")
    references = cap.text(root, "references")
    referenced = _referenced_alert(session, post, references)
    infos = cap.all(root, "info")
    if not infos and msg_type == "Cancel":
        # A source's Cancel names no area and says nothing new: it ends what it references.
        if referenced is None:
            raise InvalidInput(f"CAP Cancel {identifier!r} references no message imported "
                               f"here ({references or 'no <references>'})")
        return CapDraft(title="", kind="", exercise=status != "Actual", msg_type="cancel",
                        bodies={}, zones=[], unmatched_areas=[], unmatched_hints=[],
                        cap_identifier=identifier, cap_sender=sender,
                        cap_sent=cap.text(root, "sent"), cap_references=references,
                        references_alert_id=referenced)
    if not infos:
        raise InvalidInput("CAP message has no <info> block: nothing to alert about")

    bodies: dict[str, dict[str, str]] = {}
    headlines: dict[str, str] = {}
    for info in infos:
        lang = _language(cap.text(info, "language") or CAP_DEFAULT_LANGUAGE)
        if lang in bodies:  # several <info> per language: the first one speaks for it
            continue
        params = cap.parameters(info)
        event = cap.text(info, "event") or ""
        headline = cap.text(info, "headline") or event or "CAP alert"
        headlines[lang] = headline
        bodies[lang] = _bodies(headline, event, cap.text(info, "description"),
                               cap.text(info, "instruction"), params)

    first = infos[0]
    title_lang = post.default_language if post.default_language in headlines else "en"
    title = headlines.get(title_lang) or next(iter(headlines.values()))
    zones, unmatched, hints = _match_areas(session, post, cap.areas(infos), aliases or {})
    return CapDraft(
        title=title[:300],
        kind=_kind(cap.parameters(first).get(PARAM_KIND), cap.texts(first, "category")),
        # Only an Actual message becomes a real alert: Exercise, Test, System and Draft
        # must never page volunteers as if a crisis were real.
        exercise=status != "Actual",
        msg_type=msg_type.lower(),
        bodies=bodies,
        zones=zones,
        unmatched_areas=unmatched,
        unmatched_hints=hints,
        cap_identifier=identifier,
        cap_sender=sender,
        cap_sent=cap.text(root, "sent"),
        cap_references=references,
        references_alert_id=referenced,
    )


def create_draft_alert(session: Session, post: Post, draft: CapDraft, *,
                       actor: str = "cli") -> Alert:
    """Store the draft as an Alert in state draft, with its zones; nothing is sent.
    A source's Cancel without <info> instead cancels the draft it references (returned)."""
    identifier = draft.get("cap_identifier")
    sender = draft.get("cap_sender")
    if draft["msg_type"] == "cancel" and not draft["bodies"]:
        return _cancel_draft(session, post, draft, actor)
    # Our own exports carry identifiers we give out; storing one again would make two
    # alerts export under the same identifier.
    own = identifier is not None and own_alert_id(post, identifier) is not None
    if identifier and not own:
        # CAP names a message by sender and identifier: two services may both use "1".
        existing = session.scalar(select(Alert.id).where(
            Alert.post_id == post.id, Alert.cap_identifier == identifier[:200],
            Alert.cap_sender.is_(None) if sender is None
            else Alert.cap_sender == sender[:200]))
        if existing is not None:
            raise Refused(f"CAP message {identifier!r} from {sender!r} was already imported "
                          f"as alert {existing}")
    if not draft["zones"]:
        raise InvalidInput("the draft targets no zone")
    zones = [find_zone(session, post, name) for name in draft["zones"]]
    alert = Alert(
        post_id=post.id, kind=draft["kind"], msg_type=draft["msg_type"],
        exercise=draft["exercise"], title=draft["title"][:300], bodies=draft["bodies"],
        channels=[], reply_code=NO_REPLY_CODE,
        ack_window_seconds=DRAFT_ACK_WINDOW_SECONDS, policy={},
        references_alert_id=draft.get("references_alert_id"), created_by=actor,
        cap_identifier=None if own or not identifier else identifier[:200],
        cap_sender=None if own or not sender else sender[:200],
        cap_references=draft.get("cap_references"),
    )
    session.add(alert)
    session.flush()
    for zone in {z.id: z for z in zones}.values():
        session.add(AlertZone(alert_id=alert.id, zone_id=zone.id))
    audit.record(session, actor, "alert.drafted_from_cap", alert_id=alert.id,
                 cap_identifier=identifier, zones=[z.name for z in zones],
                 unmatched_areas=draft.get("unmatched_areas", []))
    session.flush()
    return alert


def _cancel_draft(session: Session, post: Post, draft: CapDraft, actor: str) -> Alert:
    target = session.get(Alert, draft["references_alert_id"] or 0)
    if target is None or target.post_id != post.id:
        raise InvalidInput("the CAP Cancel references no alert of this post")
    if target.state != AlertState.DRAFT:
        # Sent alerts are cancelled by an officer, who decides what volunteers are told.
        raise Refused(f"the CAP Cancel references alert {target.id}, which is "
                      f"{target.state.value}, not a draft: cancel it with "
                      f"`aln alert cancel {target.id}` if it should end")
    lifecycle.move(target, AlertState.CANCELLED)
    audit.record(session, actor, "alert.draft_cancelled_by_cap", alert_id=target.id,
                 cap_identifier=draft.get("cap_identifier"), cap_sender=draft.get("cap_sender"))
    session.flush()
    return target


class _Reader:
    """Namespace-aware lookups in one CAP document (1.1 and 1.2 share element names)."""

    def __init__(self, root: ET.Element) -> None:
        self.ns = root.tag[1:].partition("}")[0]

    def _q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def all(self, parent: ET.Element, name: str) -> list[ET.Element]:
        return parent.findall(self._q(name))

    def text(self, parent: ET.Element, name: str) -> str | None:
        child = parent.find(self._q(name))
        value = (child.text or "").strip() if child is not None else ""
        return value or None

    def texts(self, parent: ET.Element, name: str) -> list[str]:
        return [(c.text or "").strip() for c in self.all(parent, name)]

    def required(self, parent: ET.Element, name: str) -> str:
        value = self.text(parent, name)
        if value is None:
            raise InvalidInput(f"CAP message has no <{name}>")
        return value

    def parameters(self, info: ET.Element) -> dict[str, str]:
        out: dict[str, str] = {}
        for param in self.all(info, "parameter"):
            name, value = self.text(param, "valueName"), self.text(param, "value")
            if name and value is not None:
                out.setdefault(name, value)
        return out

    def areas(self, infos: list[ET.Element]) -> list[tuple[list[str], list[str]]]:
        """Each <area> of each <info>: its areaDesc names ("A; B" lists, as NWS writes
        them, split) and its <geocode> values."""
        out = []
        for info in infos:
            for area in self.all(info, "area"):
                names = [n.strip() for n in (self.text(area, "areaDesc") or "").split(";")
                         if n.strip()]
                codes = [v for g in self.all(area, "geocode")
                         if (v := self.text(g, "value")) is not None]
                out.append((names, codes))
        return out


def _language(code: str) -> str:
    """Our body key for a CAP language: its primary subtag ('es-MX' -> 'es')."""
    return code.split("-")[0].strip().lower() or "en"


def _kind(carried: str | None, categories: list[str]) -> str:
    if carried in set(AlertKind):
        return str(carried)
    for category in categories:
        if category in KIND_OF_CATEGORY:
            return KIND_OF_CATEGORY[category].value
    return AlertKind.SECURITY.value


def _bodies(headline: str, event: str, description: str | None, instruction: str | None,
            params: dict[str, str]) -> dict[str, str]:
    email_text = "\n\n".join(t for t in (description, instruction) if t) or headline
    sms = f"{headline}: {description}" if description else headline
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in email_text.split("\n\n"))
    bodies = {"sms": sms, "subject": headline, "email_text": email_text,
              "email_html": f"<h1>{html.escape(headline)}</h1>{paragraphs}",
              "headline": headline[:300], "event": event[:300]}
    for field in CARRIED_BODY_FIELDS:  # our own export carries the exact texts
        carried = params.get(PARAM_BODY_PREFIX + field.upper())
        if carried:
            bodies[field] = carried
    # After the carried texts, so an ALN-SMS parameter obeys the same limits.
    bodies["sms"] = cut_sms(bodies["sms"], IMPORTED_SMS_MAX_CHARS)
    bodies["subject"] = bodies["subject"][:SUBJECT_MAX_CHARS]
    return bodies


def _match_areas(session: Session, post: Post, areas: list[tuple[list[str], list[str]]],
                 aliases: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Zones named by the areas: an areaDesc by a zone's name or alias, or each part of a
    comma-separated one ("Chis,Oax"); a <geocode> by a zone's alias or ISO 3166-2 code."""
    zones = zones_by_key(session, post)
    lookup = {key: zone.name for key, zone in zones.items()}
    lookup.update({fold(alias): name for alias, name in aliases.items() if fold(name) in zones})
    matched: dict[str, None] = {}
    unmatched: dict[str, str] = {}
    for names, codes in areas:
        by_code = [lookup[fold(c)] for c in codes if fold(c) in lookup]
        matched.update(dict.fromkeys(by_code))
        for name in names:
            found = _zones_named(name, lookup)
            if found:
                matched.update(dict.fromkeys(found))
            elif not by_code:
                unmatched.setdefault(fold(name), name)
    hints = [unknown_zone_message(n, zones) for n in unmatched.values()]
    if not matched:
        listed = "; ".join(hints) if hints else "the message names no <area>"
        raise InvalidInput(f"none of the CAP message's areas is a zone of {post.name}: {listed}")
    return list(matched), list(unmatched.values()), hints


def _zones_named(name: str, lookup: Mapping[str, str]) -> list[str]:
    if fold(name) in lookup:
        return [lookup[fold(name)]]
    parts = [p.strip() for p in name.split(",") if p.strip()]
    if len(parts) > 1 and all(fold(p) in lookup for p in parts):
        return [lookup[fold(p)] for p in parts]
    return []


def _referenced_alert(session: Session, post: Post, references: str | None) -> int | None:
    """Our alert that a CAP Update or Cancel refers to ("sender,identifier,sent ..."), if any."""
    if not references:
        return None
    for entry in reversed(references.split()):
        parts = entry.split(",")
        if len(parts) != 3:
            continue
        sender, identifier = parts[0], parts[1]
        number = own_alert_id(post, identifier)
        alert = session.get(Alert, number) if number is not None else None
        if alert is not None and alert.post_id == post.id:
            return alert.id
        found = session.scalar(select(Alert.id).where(
            Alert.post_id == post.id, Alert.cap_identifier == identifier,
            Alert.cap_sender == sender).order_by(Alert.id.desc()).limit(1))
        if found is not None:
            return found
    return None
