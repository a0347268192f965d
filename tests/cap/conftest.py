"""Helpers for the CAP tests: alerts stored directly, and the CAP example files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy.orm import Session

from dispatcher.models import Alert, AlertZone, Post
from dispatcher.roster.posts import find_zone

FIXTURES = Path(__file__).with_name("fixtures")
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}

BODIES: dict[str, dict[str, str]] = {
    "es": {"sms": "SIMULACRO: Alerta de seguridad: Chiapas. Bloqueos en la carretera 190. "
                  "Responda SÍ 4821.",
           "subject": "SIMULACRO: Bloqueos (Chiapas, Oaxaca)",
           "email_text": "SIMULACRO\nBloqueos\n\nEvento: bloqueos en la carretera 190 & <más>",
           "email_html": "<p>Bloqueos</p>"},
    "en": {"sms": "EXERCISE: Security alert: Chiapas. Road blocks on highway 190. Reply YES 4821.",
           "subject": "EXERCISE: Road blocks (Chiapas, Oaxaca)",
           "email_text": "EXERCISE\nRoad blocks\n\nEvent: road blocks on highway 190",
           "email_html": "<p>Road blocks</p>"},
}


def make_alert(session: Session, post: Post, *, zones: tuple[str, ...] = ("Chiapas", "Oaxaca"),
               **fields: Any) -> Alert:
    values: dict[str, Any] = dict(
        post_id=post.id, kind="security", msg_type="alert", exercise=True,
        title="Road blocks on highway 190", bodies=BODIES, reply_code="4821",
        ack_window_seconds=900, policy={}, state="active",
        created_at=datetime(2026, 3, 1, 15, 0, 0, 123456, tzinfo=UTC),
        sent_at=datetime(2026, 3, 1, 16, 30, 5, 987654, tzinfo=UTC),
    )
    values.update(fields)
    alert = Alert(**values)
    session.add(alert)
    session.flush()
    for name in zones:
        session.add(AlertZone(alert_id=alert.id, zone_id=find_zone(session, post, name).id))
    session.flush()
    session.refresh(alert)
    return alert


def parse(xml: bytes) -> Any:
    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))


def texts(doc: Any, path: str) -> list[str]:
    return [e.text for e in doc.xpath(path, namespaces=NS)]
