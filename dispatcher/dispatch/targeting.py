"""Who an alert reaches: a zone's tier, on which channels, and who is skipped and why."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatcher.domain import DUTY_OFFICER_TIER, MESSAGE_CHANNELS
from dispatcher.models import Membership, Post, Volunteer, Zone
from dispatcher.roster.gaps import is_active
from dispatcher.roster.posts import duty_officers


@dataclass(frozen=True)
class Skip:
    channel: str
    reason: str


@dataclass(frozen=True)
class Person:
    """What targeting keeps of a volunteer: small, so 100,000 of them fit in memory."""

    id: int
    name: str
    language_list: list[str]


@dataclass(frozen=True)
class PathRef:
    """A usable contact path: its row id and channel (never the number itself)."""

    id: int
    channel: str


@dataclass
class Target:
    """One volunteer to contact for one zone at one tier, and the paths to use."""

    volunteer: Person
    zone_id: int
    tier: int
    contacts: list[PathRef]
    skipped: list[Skip] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return bool(self.contacts)


def person(volunteer: Volunteer) -> Person:
    return Person(volunteer.id, volunteer.name, volunteer.language_list)


def usable_contacts(
    volunteer: Volunteer, channels: Sequence[str] | None
) -> tuple[list[PathRef], list[Skip]]:
    """Paths we may use now; an opted-out or dead path is skipped with its reason. Without
    a list, every path but a call (a call comes only from a policy step)."""
    wanted = set(channels or [c.value for c in MESSAGE_CHANNELS])
    use, skip = [], []
    for contact in volunteer.contacts:
        if contact.channel not in wanted:
            continue
        if contact.opted_out:
            skip.append(Skip(contact.channel, "opted out"))
        elif contact.dead_reason:
            skip.append(Skip(contact.channel, f"dead path: {contact.dead_reason}"))
        else:
            use.append(PathRef(contact.id, contact.channel))
    return use, skip


def zone_memberships(session: Session, zone_ids: Iterable[int]) -> dict[int, list[Membership]]:
    rows = session.scalars(
        select(Membership).where(Membership.zone_id.in_(list(zone_ids)))
        .options(selectinload(Membership.volunteer).selectinload(Volunteer.contacts),
                 selectinload(Membership.zone))
    ).all()
    out: dict[int, list[Membership]] = {}
    for m in rows:
        out.setdefault(m.zone_id, []).append(m)
    return out


def tier_targets(
    memberships: Sequence[Membership], tier: int, channels: Sequence[str] | None, today: date,
) -> list[Target]:
    """Everyone of one tier in a zone, with ended terms and unusable paths skipped."""
    targets = []
    for m in sorted(memberships, key=lambda m: m.volunteer.name):
        if m.tier != tier:
            continue
        if not is_active(m, today):
            targets.append(Target(person(m.volunteer), m.zone_id, tier, [],
                                  [Skip("all", f"term ended {m.term_end.isoformat()}")]))
            continue
        use, skip = usable_contacts(m.volunteer, channels)
        targets.append(Target(person(m.volunteer), m.zone_id, tier, use, skip))
    return targets


def every_tier(memberships: Sequence[Membership], channels: Sequence[str] | None,
               today: date) -> dict[int, list[Target]]:
    """Each tier of a zone (in escalation order) with its targets, reachable or not."""
    return {t: tier_targets(memberships, t, channels, today)
            for t in sorted({m.tier for m in memberships})}


def reachable_tiers(tiers: dict[int, list[Target]]) -> list[int]:
    """The tiers that have someone reachable: the zone's escalation chain."""
    return [t for t, targets in tiers.items() if any(x.reachable for x in targets)]


def chain(memberships: Sequence[Membership], channels: Sequence[str] | None,
          today: date) -> list[int]:
    """The tiers of a zone that have someone reachable, in escalation order."""
    return reachable_tiers(every_tier(memberships, channels, today))


def next_tier(memberships: Sequence[Membership], after: int, channels: Sequence[str] | None,
              today: date) -> int | None:
    return next((t for t in chain(memberships, channels, today) if t > after), None)


def duty_officer_targets(session: Session, post: Post, zone: Zone) -> list[Target]:
    out = []
    for officer in duty_officers(session, post):
        use, skip = usable_contacts(officer, None)
        out.append(Target(person(officer), zone.id, DUTY_OFFICER_TIER, use, skip))
    return out
