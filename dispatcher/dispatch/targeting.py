"""Who an alert reaches: a zone's tier, on which channels, and who is skipped and why."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import attrgetter
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, and_, func, select, tuple_
from sqlalchemy.orm import Session

from dispatcher.db import fetch_plain
from dispatcher.domain import DUTY_OFFICER_TIER, MESSAGE_CHANNELS
from dispatcher.heap import collector_paused
from dispatcher.models import Contact, Membership, Post, Volunteer, Zone, language_list, table
from dispatcher.roster.gaps import is_active
from dispatcher.roster.posts import duty_officers


@dataclass(frozen=True, slots=True)
class Skip:
    channel: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """As stored on a recipient row and shown in a preview."""
        return {"channel": self.channel, "reason": self.reason}


@dataclass(slots=True)
class Person:
    """What targeting keeps of a volunteer: small, so 100,000 of them fit in memory."""

    id: int
    name: str
    language_list: list[str]


@dataclass(slots=True)
class PathRef:
    """A usable contact path: its row id and channel (never the number itself)."""

    id: int
    channel: str


@dataclass(slots=True)
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


class Path(Protocol):
    """A contact path as targeting reads it: the ORM row, or a plain `PathRow`."""

    @property
    def id(self) -> int: ...

    @property
    def channel(self) -> str: ...

    @property
    def opted_out(self) -> bool: ...

    @property
    def dead_reason(self) -> str | None: ...


@dataclass(slots=True)
class PathRow(PathRef):
    """A contact path's row as selected (no number: targeting never needs it); a usable
    one is its own `PathRef`."""

    opted_out: bool
    dead_reason: str | None


@dataclass(slots=True)
class Member:
    """A volunteer's place in a zone, read as plain rows rather than ORM objects: a
    100,000-volunteer zone is selected in a fraction of the time and memory."""

    volunteer: Person
    zone_id: int
    tier: int
    term_start: date
    term_end: date
    paths: list[PathRow]


def person(volunteer: Volunteer) -> Person:
    return Person(volunteer.id, volunteer.name, volunteer.language_list)


def usable_contacts(
    paths: Iterable[Path], channels: Sequence[str] | None
) -> tuple[list[PathRef], list[Skip]]:
    """Paths we may use now; an opted-out or dead path is skipped with its reason. Without
    a list, every path but a call (a call comes only from a policy step)."""
    return _usable(paths, wanted_channels(channels))


def wanted_channels(channels: Sequence[str] | None) -> frozenset[str]:
    return frozenset(channels or [c.value for c in MESSAGE_CHANNELS])


def _usable(paths: Iterable[Path], wanted: frozenset[str]) -> tuple[list[PathRef], list[Skip]]:
    use: list[PathRef] = []
    skip: list[Skip] = []
    for contact in paths:
        if contact.channel not in wanted:
            continue
        if contact.opted_out:
            skip.append(Skip(contact.channel, "opted out"))
        elif contact.dead_reason:
            skip.append(Skip(contact.channel, f"dead path: {contact.dead_reason}"))
        else:
            use.append(contact if isinstance(contact, PathRef)
                       else PathRef(contact.id, contact.channel))
    return use, skip


def zone_members(session: Session, zone_ids: Iterable[int],
                 tier: int | None = None) -> dict[int, list[Member]]:
    """Each zone's members with their contact paths, from one Core select (no ORM); only
    those of `tier` when one is named (a fill asks one tier, and need not read the rest)."""
    m = table(Membership)
    where: ColumnElement[bool] = m.c.zone_id.in_(list(zone_ids))
    if tier is not None:
        where = and_(where, m.c.tier == tier)
    with collector_paused():
        return _members(session, where)


def zone_size(session: Session, zone_ids: Iterable[int]) -> int:
    """How many memberships the zones hold: an alert's size, known before it is planned."""
    m = table(Membership)
    return session.scalar(select(func.count()).select_from(m)
                          .where(m.c.zone_id.in_(list(zone_ids)))) or 0


#: Memberships `first_reachable_tier` reads in its first look at a zone (most zones'
#: first primary can be reached), and at most in any later look (each reads four times
#: the one before).
REACH_FIRST_PAGE = 16
REACH_PAGE = 256


def first_reachable_tier(session: Session, zone_id: int, channels: Sequence[str] | None,
                         today: date) -> int | None:
    """The zone's first tier with someone reachable, by the rules `every_tier` applies,
    reading memberships in tier order a page at a time and stopping at the first such
    volunteer: a large alert knows whom it can reach before it reads everyone."""
    m = table(Membership)
    after: tuple[int, int] | None = None
    size = min(REACH_FIRST_PAGE, REACH_PAGE)
    while True:
        page = session.execute(reach_page(zone_id, after, size)).all()
        size = min(size * 4, REACH_PAGE)
        if not page:
            return None
        members = _members(session, m.c.id.in_([row.id for row in page]))
        tiers = reachable_tiers(every_tier(members.get(zone_id, []), channels, today))
        if tiers:
            return tiers[0]
        after = (page[-1].tier, page[-1].id)


def reach_page(zone_id: int, after: tuple[int, int] | None, size: int) -> Select[Any]:
    """The (id, tier) of a zone's next `size` memberships in escalation order, after the
    (tier, id) given: in the order of `ix_memberships_zone_tier`, so a page is read where
    it lies rather than the whole zone sorted for it."""
    m = table(Membership)
    where = m.c.zone_id == zone_id
    if after is not None:
        # A row comparison, which both databases seek in the index (PostgreSQL read a
        # spelled-out OR as a filter over the zone's rows from its start).
        where = and_(where, tuple_(m.c.tier, m.c.id) > tuple_(after[0], after[1]))
    return select(m.c.id, m.c.tier).where(where).order_by(m.c.tier, m.c.id).limit(size)


def _members(session: Session, where: ColumnElement[bool]) -> dict[int, list[Member]]:
    m, v, c = table(Membership), table(Volunteer), table(Contact)
    # Changes the session holds unflushed (a path just found dead) count, as they would
    # in a read through it.
    if session.autoflush:
        session.flush()
    db = session.connection()
    # The driver's own rows: a 100,000-volunteer alert's targeting spent a tenth of a
    # second building SQLAlchemy's. Only the dates need their type's conversion (SQLite
    # keeps them as text).
    rows = fetch_plain(db, select(
        m.c.zone_id, m.c.tier, m.c.term_start, m.c.term_end, v.c.id, v.c.name,
        v.c.languages, c.c.id, c.c.channel, c.c.opted_out, c.c.dead_reason)
        .join(v, v.c.id == m.c.volunteer_id)
        .outerjoin(c, c.c.volunteer_id == v.c.id)
        .where(where)
        .order_by(m.c.id, c.c.channel))
    to_date = m.c.term_start.type.dialect_impl(db.dialect).result_processor(db.dialect, None)
    out: dict[int, list[Member]] = {}
    # One list per distinct language string: 100,000 volunteers share a handful.
    languages: dict[str, list[str]] = {}
    last: tuple[int, int] | None = None
    paths: list[PathRow] = []
    # Rows come a membership at a time (one row per contact path, or one without any).
    for zone_id, tier, start, end, vid, name, langs, cid, channel, opted, dead in rows:
        if (vid, zone_id) != last:
            last = (vid, zone_id)
            if to_date is not None:
                start, end = to_date(start), to_date(end)
            lang = languages.get(langs)
            if lang is None:
                lang = languages[langs] = language_list(langs)
            paths = []
            out.setdefault(zone_id, []).append(
                Member(Person(vid, name, lang), zone_id, tier, start, end, paths))
        if cid is not None:
            paths.append(PathRow(cid, channel, bool(opted), dead))
    return out


def tier_targets(
    members: Sequence[Member], tier: int, channels: Sequence[str] | None, today: date,
) -> list[Target]:
    """Everyone of one tier in a zone, with ended terms and unusable paths skipped."""
    targets = []
    wanted = wanted_channels(channels)
    for m in sorted(members, key=_by_name):
        if m.tier != tier:
            continue
        if not is_active(m, today):
            targets.append(Target(m.volunteer, m.zone_id, tier, [],
                                  [Skip("all", f"term ended {m.term_end.isoformat()}")]))
            continue
        use, skip = _usable(m.paths, wanted)
        targets.append(Target(m.volunteer, m.zone_id, tier, use, skip))
    return targets


_by_name = attrgetter("volunteer.name")


def every_tier(members: Sequence[Member], channels: Sequence[str] | None,
               today: date) -> dict[int, list[Target]]:
    """Each tier of a zone (in escalation order) with its targets, reachable or not."""
    with collector_paused():
        return {t: tier_targets(members, t, channels, today)
                for t in sorted({m.tier for m in members})}


def reachable_tiers(tiers: dict[int, list[Target]]) -> list[int]:
    """The tiers that have someone reachable: the zone's escalation chain."""
    return [t for t, targets in tiers.items() if any(x.reachable for x in targets)]


def chain(members: Sequence[Member], channels: Sequence[str] | None,
          today: date) -> list[int]:
    """The tiers of a zone that have someone reachable, in escalation order."""
    return reachable_tiers(every_tier(members, channels, today))


def next_tier(members: Sequence[Member], after: int, channels: Sequence[str] | None,
              today: date) -> int | None:
    return next((t for t in chain(members, channels, today) if t > after), None)


def duty_officer_targets(session: Session, post: Post, zone: Zone) -> list[Target]:
    out = []
    for officer in duty_officers(session, post):
        use, skip = usable_contacts(officer.contacts, None)
        out.append(Target(person(officer), zone.id, DUTY_OFFICER_TIER, use, skip))
    return out
