"""WhatsApp's rules on our side: the 24-hour session and the Content templates.

A session is open while the volunteer's last WhatsApp message to us is less than
24 hours old by the database clock (their replies are kept as `Response` rows with
channel `whatsapp`). Outside it only an approved template may go: one per language
in `config/templates/whatsapp.toml`, its numbered variables filled from the alert.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from channels.twilio_whatsapp import OUTSIDE_SESSION
from dispatcher.compose.templates import FALLBACK_LANGUAGE
from dispatcher.domain import Channel
from dispatcher.errors import InvalidInput
from dispatcher.models import Alert, Delivery, Recipient, Response

#: WhatsApp's customer-service window, opened by each message the volunteer sends us.
SESSION = timedelta(hours=24)
#: What a template's variable may be filled with.
FIELDS = ("title", "body", "code")
#: Volunteer ids asked about per query.
SESSION_QUERY_CHUNK = 500
#: A WhatsApp message is billed per message, whatever its length.
COST_UNITS = 1


@dataclass(frozen=True)
class ContentTemplate:
    """One approved template: its SID and what fills each numbered placeholder."""

    language: str
    content_sid: str
    variables: dict[str, str]

    def fill(self, *, title: str, body: str, code: str) -> dict[str, str]:
        values = {"title": title, "body": body, "code": code}
        return {slot: values[name] for slot, name in self.variables.items()}


def templates(config_dir: Path) -> dict[str, ContentTemplate]:
    """The configured templates by language (none when the file is absent)."""
    path = config_dir / "templates" / "whatsapp.toml"
    if not path.exists():
        return {}
    return _load(path, path.stat().st_mtime)


@lru_cache(maxsize=8)
def _load(path: Path, _mtime: float) -> dict[str, ContentTemplate]:
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    out = {}
    for lang, table in data.items():
        where = f"{path.name} [{lang}]"
        sid = table.get("content_sid") if isinstance(table, dict) else None
        if not isinstance(sid, str) or not sid.startswith("HX"):
            raise InvalidInput(f"{where}: content_sid must be a Content SID (HX...)")
        variables = table.get("variables", {})
        if not isinstance(variables, dict) or not all(
                str(k).isdigit() and v in FIELDS for k, v in variables.items()):
            raise InvalidInput(f"{where}: variables map numbers to one of "
                               f"{', '.join(FIELDS)}")
        out[lang] = ContentTemplate(lang, sid, {str(k): v for k, v in variables.items()})
    return out


def template_for(config_dir: Path, language: str) -> ContentTemplate | None:
    """The language's template, else English's, else none."""
    table = templates(config_dir)
    return table.get(language) or table.get(language.split("-")[0]) \
        or table.get(FALLBACK_LANGUAGE)


def open_sessions(session: Session, volunteer_ids: Iterable[int], now: datetime) -> set[int]:
    """Volunteers (of those given) who wrote to us on WhatsApp in the last 24 hours, unless
    WhatsApp refused free text to them (63016) since: the provider knows the session better
    than our copy of their messages does."""
    ids = sorted(set(volunteer_ids))
    out: set[int] = set()
    # In chunks: a roster of 100,000 WhatsApp users would pass SQLite's variable limit.
    for start in range(0, len(ids), SESSION_QUERY_CHUNK):
        chunk = ids[start:start + SESSION_QUERY_CHUNK]
        wrote = {v: at for v, at in session.execute(
            select(Response.volunteer_id, func.max(Response.created_at)).where(
                Response.channel == Channel.WHATSAPP.value, Response.volunteer_id.in_(chunk),
                Response.created_at > now - SESSION).group_by(Response.volunteer_id))
            if v is not None and at is not None}
        if not wrote:
            continue
        refused = {v: at for v, at in session.execute(
            select(Recipient.volunteer_id, func.max(Delivery.failed_at))
            .join(Recipient, Recipient.id == Delivery.recipient_id).where(
                Delivery.channel == Channel.WHATSAPP.value,
                Delivery.error_code == OUTSIDE_SESSION, Recipient.volunteer_id.in_(list(wrote)),
                Delivery.failed_at > now - SESSION).group_by(Recipient.volunteer_id))
            if at is not None}
        out.update(v for v, last in wrote.items() if v not in refused or refused[v] < last)
    return out


@dataclass(frozen=True)
class WhatsAppSend:
    """How one WhatsApp delivery goes: free text inside a session, else the template."""

    free_text: bool
    template_sid: str | None
    variables: dict[str, str]


def plan_sends(session: Session, config_dir: Path, delivery_ids: Iterable[int],
               now: datetime) -> dict[int, WhatsAppSend]:
    """For deliveries about to be sent: session open?, and the template that goes if not."""
    rows = session.execute(
        select(Delivery.id, Delivery.language, Delivery.body, Recipient.volunteer_id,
               Alert.title, Alert.reply_code)
        .join(Recipient, Recipient.id == Delivery.recipient_id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(Delivery.id.in_(list(delivery_ids)))).all()
    talking = open_sessions(session, (r.volunteer_id for r in rows), now)
    out = {}
    for did, lang, body, vid, title, code in rows:
        tpl = template_for(config_dir, lang)
        out[did] = WhatsAppSend(
            free_text=vid in talking, template_sid=tpl.content_sid if tpl else None,
            variables=tpl.fill(title=title, body=body, code=code) if tpl else {})
    return out
