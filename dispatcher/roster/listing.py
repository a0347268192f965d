"""The roster as officers read it: one row per volunteer and zone, contacts in clear."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatcher.crypto import UNREADABLE_HINT, Unreadable, Vault
from dispatcher.db import db_today
from dispatcher.models import Contact, Membership, Post, Volunteer, Zone
from dispatcher.roster.gaps import is_active
from dispatcher.roster.posts import find_zone


def roster_rows(
    session: Session,
    vault: Vault,
    post: Post,
    *,
    zone: str | None = None,
    reveal: bool = True,
    today: date | None = None,
    page: tuple[int | None, int] | None = None,
) -> list[dict[str, Any]]:
    """Rows for an authenticated officer; `reveal=False` shows masked contacts only.

    By zone, tier and name; or with `page=(before, limit)`, newest membership first: at
    most `limit` rows whose membership id is below `before` (the API's pages)."""
    today = today or db_today(session, post.timezone)
    query = (
        select(Membership)
        .join(Zone)
        .join(Volunteer)
        .where(Zone.post_id == post.id)
        .order_by(Zone.name, Membership.tier, Volunteer.name)
        .options(
            selectinload(Membership.volunteer).selectinload(Volunteer.contacts),
            selectinload(Membership.zone),
        )
    )
    if zone:
        query = query.where(Membership.zone_id == find_zone(session, post, zone).id)
    if page is not None:
        before, limit = page
        query = query.order_by(None).order_by(Membership.id.desc()).limit(limit)
        if before is not None:
            query = query.where(Membership.id < before)
    rows = []
    for m in session.scalars(query):
        vol = m.volunteer
        contacts = {c.channel: c for c in vol.contacts}
        row: dict[str, Any] = {
            "membership_id": m.id,
            "volunteer_id": vol.id,
            "name": vol.name,
            "zone": m.zone.name,
            "rank": m.rank,
            "tier": m.tier,
            "languages": vol.language_list,
            "term_start": m.term_start.isoformat(),
            "term_end": m.term_end.isoformat(),
            "active": is_active(m, today),
            "preferred_channel": vol.preferred_channel,
        }
        for channel, key in (("sms", "phone"), ("email", "email")):
            c = contacts.get(channel)
            if c is None:
                row[key] = None
            else:
                row[key] = _reveal(vault, c) if reveal else c.masked
                row[f"{key}_opted_out"] = c.opted_out
        rows.append(row)
    return rows


def _reveal(vault: Vault, contact: Contact) -> str:
    try:
        return vault.decrypt(contact.value_enc)
    except Unreadable:
        raise Unreadable(f"contact {contact.id} ({contact.channel} {contact.masked}, "
                         f"volunteer {contact.volunteer_id}) {UNREADABLE_HINT}") from None
