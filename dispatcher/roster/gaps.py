"""Where the network has holes: the gaps to fix before a real crisis."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatcher.db import db_today
from dispatcher.models import Membership, Post, Volunteer, Zone

#: A term ending within this many days is reported as ending soon.
TERM_ENDING_SOON_DAYS = 30


@dataclass
class Gaps:
    zones_without_primary: list[str] = field(default_factory=list)
    zones_without_alternate: list[str] = field(default_factory=list)
    terms_ended: list[dict[str, Any]] = field(default_factory=list)
    terms_ending_soon: list[dict[str, Any]] = field(default_factory=list)
    no_usable_contact: list[dict[str, Any]] = field(default_factory=list)
    opted_out: list[dict[str, Any]] = field(default_factory=list)
    dead_paths: list[dict[str, Any]] = field(default_factory=list)
    #: Volunteers reachable on one channel only: one outage or opt-out from silence.
    single_channel: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.to_dict().values())


class Term(Protocol):
    """A membership's term: the ORM row, or targeting's plain copy of it."""

    @property
    def term_start(self) -> date: ...

    @property
    def term_end(self) -> date: ...


def is_active(m: Term, today: date) -> bool:
    return m.term_start <= today <= m.term_end


def find_gaps(session: Session, post: Post, today: date | None = None) -> Gaps:
    today = today or db_today(session, post.timezone)
    gaps = Gaps()
    zones = session.scalars(
        select(Zone)
        .where(Zone.post_id == post.id)
        .order_by(Zone.name)
        .options(
            selectinload(Zone.memberships)
            .selectinload(Membership.volunteer)
            .selectinload(Volunteer.contacts)
        )
    ).all()
    for zone in zones:
        active = [m for m in zone.memberships if is_active(m, today)]
        if not any(m.tier == 0 for m in active):
            gaps.zones_without_primary.append(zone.name)
        if not any(m.tier > 0 for m in active):
            gaps.zones_without_alternate.append(zone.name)
        for m in sorted(zone.memberships, key=lambda m: (m.tier, m.volunteer.name)):
            who = {
                "name": m.volunteer.name,
                "zone": zone.name,
                "rank": m.rank,
                "term_end": m.term_end.isoformat(),
            }
            if m.term_end < today:
                gaps.terms_ended.append(who)
            elif m.term_end <= today + timedelta(days=TERM_ENDING_SOON_DAYS):
                gaps.terms_ending_soon.append(who)
    volunteers = session.scalars(
        select(Volunteer)
        .where(Volunteer.post_id == post.id, Volunteer.kind == "clv")
        .order_by(Volunteer.name)
        .options(selectinload(Volunteer.contacts))
    ).all()
    for vol in volunteers:
        usable = [c for c in vol.contacts if not c.opted_out and not c.dead_reason]
        if not usable:
            gaps.no_usable_contact.append(
                {
                    "name": vol.name,
                    "paths": [
                        {
                            "channel": c.channel,
                            "contact": c.masked,
                            "why": "opted out" if c.opted_out else c.dead_reason,
                        }
                        for c in vol.contacts
                    ],
                }
            )
        live = sorted({c.channel for c in usable})
        if len(live) == 1:
            gaps.single_channel.append({"name": vol.name, "channel": live[0]})
        for c in vol.contacts:
            if c.opted_out:
                gaps.opted_out.append({"name": vol.name, "channel": c.channel, "contact": c.masked})
            if c.dead_reason:
                gaps.dead_paths.append(
                    {
                        "name": vol.name,
                        "channel": c.channel,
                        "contact": c.masked,
                        "why": c.dead_reason,
                    }
                )
    return gaps
