"""Roster import: all or nothing, every bad line named at once.

Columns (DESIGN.md): name, zone, rank, phone, email, languages, term_start,
term_end, preferred_channel, and optionally channels (`sms;whatsapp;voice;email`:
the paths a volunteer is reached on; without it SMS and email where given). A
volunteer in two zones has two rows; rows with the same name and the same phone (or
email) are the same person. One phone number or email belongs to one volunteer: a file
that gives one to two people is refused, and so is one that gives a number to someone
other than the volunteer who has it now.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from channels.masking import mask_contact
from dispatcher import audit
from dispatcher.crypto import Vault
from dispatcher.domain import PHONE_CHANNELS, TEXT_PHONE_CHANNELS, Channel, rank_to_tier
from dispatcher.errors import InvalidInput
from dispatcher.models import Contact, Membership, Post, Volunteer, Zone
from dispatcher.roster.contacts import (
    normalise_email,
    normalise_phone,
    normalise_sms_phone,
    set_contact,
)
from dispatcher.roster.posts import unknown_zone_message, zones_by_key
from dispatcher.text import fold

log = logging.getLogger(__name__)

COLUMNS = (
    "name",
    "zone",
    "rank",
    "phone",
    "email",
    "languages",
    "term_start",
    "term_end",
    "preferred_channel",
    "channels",
)
REQUIRED_COLUMNS = ("name", "zone", "rank", "term_start", "term_end")
#: Largest roster file read: 100,000 volunteers take about 12 MB. Larger is refused before
#: it is read, rather than held in memory several times over.
ROSTER_MAX_BYTES = 20 * 1024 * 1024
#: Longest value of any one field (a name, an address, a list of languages).
FIELD_MAX_CHARS = 1000
#: Why one contact may not serve two people: replies are matched to a volunteer by it.
_ONE_OWNER = {**{c: "one number belongs to one volunteer" for c in PHONE_CHANNELS},
              Channel.EMAIL: "one email address belongs to one volunteer"}
#: How the `channels` column lists its values.
_CHANNEL_NAMES = ", ".join(c.value for c in Channel)
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class RosterError(InvalidInput):
    """A roster that cannot be imported; lists every bad line, field and reason."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.line, e.field))
        lines = sorted({e.line for e in self.errors})
        numbers = ", ".join(map(str, lines))
        head = f"roster refused, nothing imported: {len(lines)} bad line(s) ({numbers})"
        super().__init__("\n".join([head, *map(str, self.errors)]))


@dataclass
class RosterRow:
    line: int
    name: str
    zone_key: str
    zone_name: str
    rank: str
    tier: int
    phone: str | None
    email: str | None
    languages: list[str]
    term_start: date
    term_end: date
    preferred_channel: str | None
    #: The channels this volunteer is reached on (the `channels` column, or the default).
    channels: list[Channel] = field(default_factory=list)

    @property
    def identity(self) -> tuple[str, str]:
        return (fold(self.name), self.phone or self.email or "")

    @property
    def contacts(self) -> list[tuple[Channel, str]]:
        return [(ch, v) for ch in self.channels
                if (v := self.email if ch == Channel.EMAIL else self.phone)]


def _field(channel: Channel) -> str:
    return "email" if channel == Channel.EMAIL else "phone"


@dataclass
class ImportResult:
    rows: int
    volunteers_created: int = 0
    volunteers_updated: int = 0
    memberships_created: int = 0
    memberships_updated: int = 0
    zones_created: list[str] = field(default_factory=list)
    dry_run: bool = False


def parse_roster(
    text: str,
    *,
    region: str,
    default_language: str,
    zones: dict[str, Zone],
    create_zones: bool,
) -> list[RosterRow]:
    """Validate every row; raise RosterError naming all bad lines, or return the rows."""
    errors: list[RowError] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise RosterError(
            [
                RowError(
                    1,
                    "header",
                    f"missing column(s): {', '.join(missing)}; expected {', '.join(COLUMNS)}",
                )
            ]
        )
    if "phone" not in header and "email" not in header:
        raise RosterError([RowError(1, "header", "needs a phone or an email column")])
    reader.fieldnames = header
    rows: list[RosterRow] = []
    seen: dict[tuple[tuple[str, str], str], int] = {}
    line = 1
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's own 128 KB limit
            raise RosterError([RowError(reader.line_num, "file", f"not readable CSV: {exc}")]
                              ) from None
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(values.values()):
            continue
        long = [k for k, v in values.items() if len(v) > FIELD_MAX_CHARS]
        if long:
            errors.extend(RowError(line, k, f"is {len(values[k]):,} characters long; at most "
                                            f"{FIELD_MAX_CHARS:,}") for k in long)
            continue
        row, row_errors = _parse_row(line, values, region, default_language, zones, create_zones)
        errors.extend(row_errors)
        if row is None:
            continue
        key = (row.identity, row.zone_key)
        if key in seen:
            errors.append(
                RowError(
                    line,
                    "zone",
                    f"duplicate: {row.name} is already in {row.zone_name} on line {seen[key]}",
                )
            )
            continue
        seen[key] = line
        rows.append(row)
    errors.extend(_shared_contacts(rows))
    if errors:
        raise RosterError(errors)
    if not rows:
        raise RosterError([RowError(line, "file", "no volunteer rows")])
    return rows


def _shared_contacts(rows: list[RosterRow]) -> list[RowError]:
    """A phone or email that two different people's rows give (see `RosterRow.identity`
    for who is the same person: a volunteer in two zones is one)."""
    first: dict[tuple[Channel, str], RosterRow] = {}
    errors = []
    for row in rows:
        for channel, value in row.contacts:
            other = first.setdefault((channel, value), row)
            if other.identity != row.identity:
                errors.append(RowError(row.line, _field(channel), (
                    f"{mask_contact(value)} is also on line {other.line} ({other.name}); "
                    f"{_ONE_OWNER[channel]}")))
    return errors


def _taken_contacts(session: Session, vault: Vault, post: Post,
                    rows: list[RosterRow]) -> list[RowError]:
    """A phone or email of the file that already belongs to another volunteer of the post,
    who keeps it after this import (a number handed from one volunteer to another in the
    same file is fine: the old owner's row gives them a new one)."""
    owners: dict[tuple[str, str], tuple[int, str]] = {
        (channel, digest): (vid, name) for channel, digest, vid, name in session.execute(
            select(Contact.channel, Contact.value_hash, Volunteer.id, Volunteer.name)
            .join(Volunteer).where(Volunteer.post_id == post.id, Volunteer.kind == "clv"))}
    if not owners:
        return []
    matched = {row.identity: _find_volunteer(session, vault, post, row) for row in rows}
    replaced = {(vol.id, channel) for row in rows
                if (vol := matched[row.identity]) is not None for channel, _ in row.contacts}
    errors = []
    for row in rows:
        mine = matched[row.identity]
        for channel, value in row.contacts:
            owner = next((owners[key] for digest in vault.lookup_hashes(value)
                          if (key := (channel.value, digest)) in owners), None)
            if owner is None or (mine is not None and owner[0] == mine.id) \
                    or (owner[0], channel) in replaced:
                continue
            errors.append(RowError(row.line, _field(channel), (
                f"{mask_contact(value)} already belongs to {owner[1]} in the roster; "
                f"{_ONE_OWNER[channel]}")))
    return errors


def _parse_row(
    line: int,
    v: dict[str, str],
    region: str,
    default_language: str,
    zones: dict[str, Zone],
    create_zones: bool,
) -> tuple[RosterRow | None, list[RowError]]:
    errs: list[RowError] = []

    def bad(fld: str, msg: str) -> None:
        errs.append(RowError(line, fld, msg))

    name = v.get("name", "")
    if not name:
        bad("name", "is empty")
    zone_name = v.get("zone", "")
    zone_key = fold(zone_name)
    if not zone_name:
        bad("zone", "is empty")
    elif zone_key not in zones and not create_zones:
        bad("zone", unknown_zone_message(zone_name, zones) + "; use --create-zones to add it")
    rank = v.get("rank", "").lower()
    tier = 0
    try:
        tier = rank_to_tier(rank)
    except ValueError as exc:
        bad("rank", str(exc))
    channels = _parse_channels(v, bad)
    phone = email = None
    if v.get("phone"):
        # A landline refused for SMS is a valid path for a call.
        texts = not channels or any(c in TEXT_PHONE_CHANNELS for c in channels)
        try:
            phone = (normalise_sms_phone if texts else normalise_phone)(v["phone"], region)
        except ValueError as exc:
            bad("phone", str(exc))
    if v.get("email"):
        try:
            email = normalise_email(v["email"])
        except ValueError as exc:
            bad("email", str(exc))
    if not v.get("phone") and not v.get("email"):
        bad("phone", "a volunteer needs a phone or an email")
    languages = [c.strip().lower() for c in v.get("languages", "").split(";") if c.strip()]
    for code in languages:
        if not _LANG_RE.match(code):
            bad(
                "languages",
                f"'{code}' is not a language code like 'en' or 'es' (use ';' between codes)",
            )
    if not languages:
        languages = [default_language]
    start = end = None
    for fld in ("term_start", "term_end"):
        try:
            parsed = date.fromisoformat(v.get(fld, ""))
        except ValueError:
            bad(fld, f"'{v.get(fld, '')}' is not an ISO date (YYYY-MM-DD)")
            continue
        if fld == "term_start":
            start = parsed
        else:
            end = parsed
    if start and end and end <= start:
        bad("term_end", f"{end} is not after term_start {start}")
    preferred = v.get("preferred_channel", "").lower() or None
    if preferred is not None:
        if preferred not in (Channel.SMS, Channel.EMAIL):
            bad("preferred_channel", f"'{preferred}' is not 'sms' or 'email'")
        elif preferred == Channel.SMS and not v.get("phone"):
            bad("preferred_channel", "is sms but the row has no phone")
        elif preferred == Channel.EMAIL and not v.get("email"):
            bad("preferred_channel", "is email but the row has no email")
    if not channels:
        channels = [c for c, given in ((Channel.SMS, phone), (Channel.EMAIL, email)) if given]
    if errs or start is None or end is None:
        return None, errs
    display = zones[zone_key].name if zone_key in zones else zone_name
    return RosterRow(
        line, name, zone_key, display, rank, tier, phone, email, languages, start, end, preferred,
        channels,
    ), []


def _parse_channels(v: dict[str, str], bad: Callable[[str, str], None]) -> list[Channel]:
    """The `channels` cell as channels; each named one needs its column filled. Empty (or
    no column): [] for the default, SMS and email where given."""
    out: list[Channel] = []
    for name in (c.strip().lower() for c in v.get("channels", "").split(";")):
        if not name:
            continue
        if name not in Channel.__members__.values():
            bad("channels", f"'{name}' is not a channel (use {_CHANNEL_NAMES}, "
                            "separated by ';')")
            continue
        channel = Channel(name)
        if channel in out:
            continue
        column = _field(channel)
        if not v.get(column):
            bad("channels", f"'{name}' needs a {column}, and the row has none")
        out.append(channel)
    return out


def import_roster(
    session: Session,
    vault: Vault,
    post: Post,
    path: Path | str,
    *,
    actor: str = "cli",
    dry_run: bool = False,
    create_zones: bool = False,
    text: str | None = None,
) -> ImportResult:
    """Validate the whole file, then write it in the caller's transaction (or nothing)."""
    if text is None:
        try:
            size = Path(path).stat().st_size
            if size > ROSTER_MAX_BYTES:
                raise InvalidInput(f"{path}: {size:,} bytes; a roster file may be at most "
                                   f"{ROSTER_MAX_BYTES:,} bytes (split it, or check it is "
                                   "the right file)")
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None
    zones = zones_by_key(session, post)
    rows = parse_roster(
        text,
        region=post.default_region,
        default_language=post.default_language,
        zones=zones,
        create_zones=create_zones,
    )
    taken = _taken_contacts(session, vault, post, rows)
    if taken:
        raise RosterError(taken)
    result = ImportResult(rows=len(rows), dry_run=dry_run)
    new_zone_names = sorted({r.zone_name for r in rows if r.zone_key not in zones})
    result.zones_created = new_zone_names
    if dry_run:
        return result
    for zone_name in new_zone_names:
        zone = Zone(post_id=post.id, name=zone_name, key=fold(zone_name))
        session.add(zone)
        zones[zone.key] = zone
    session.flush()
    people: dict[tuple[str, str], Volunteer] = {}
    for row in rows:
        vol = people.get(row.identity) or _find_volunteer(session, vault, post, row)
        if vol is None:
            vol = Volunteer(post_id=post.id, kind="clv", name=row.name)
            session.add(vol)
            result.volunteers_created += 1
        elif row.identity not in people:
            result.volunteers_updated += 1
        people[row.identity] = vol
        vol.name = row.name
        vol.languages = ";".join(row.languages)
        vol.preferred_channel = row.preferred_channel
        for channel, value in row.contacts:
            set_contact(session, vault, vol, channel, value)
        session.flush()
        zone = zones[row.zone_key]
        membership = session.scalar(
            select(Membership).where(
                Membership.volunteer_id == vol.id, Membership.zone_id == zone.id
            )
        )
        if membership is None:
            membership = Membership(
                volunteer_id=vol.id,
                zone_id=zone.id,
                rank=row.rank,
                tier=row.tier,
                term_start=row.term_start,
                term_end=row.term_end,
            )
            session.add(membership)
            result.memberships_created += 1
        else:
            membership.rank, membership.tier = row.rank, row.tier
            membership.term_start, membership.term_end = row.term_start, row.term_end
            result.memberships_updated += 1
    session.flush()
    refresh_roster_statistics(session)
    audit.record(
        session,
        actor,
        "roster.imported",
        file=str(path),
        rows=result.rows,
        volunteers_created=result.volunteers_created,
        volunteers_updated=result.volunteers_updated,
        zones_created=result.zones_created,
    )
    return result


#: How long a roster import waits to refresh the roster's statistics (`refresh_roster_statistics`).
ANALYZE_LOCK_TIMEOUT = "1s"
#: The tables an alert's planning and fills read, whose statistics an import refreshes.
ROSTER_TABLES = (Volunteer, Contact, Membership)


def refresh_roster_statistics(session: Session) -> None:
    """PostgreSQL: ANALYZE the roster's tables, in this transaction. An import can multiply
    a roster, and the first alert after it would be planned on the old statistics (or none:
    a fresh database's): each zone's first look for a reachable tier joined every contact,
    0.6 s of a 100,000-volunteer alert's start in place of 0.3 s. Autovacuum would analyze
    them too, but a minute or more later. SQLite plans without statistics.

    Best effort: ANALYZE waits for a VACUUM of the same tables, and the import's rows stay
    locked meanwhile, so it gives up after `ANALYZE_LOCK_TIMEOUT` (in a savepoint: the
    import itself is kept); a role that does not own the tables gets a warning from the
    server and no new statistics."""
    if session.get_bind().dialect.name != "postgresql":
        return
    tables = ", ".join(m.__tablename__ for m in ROSTER_TABLES)
    try:
        with session.begin_nested():
            before = session.scalar(text("SELECT current_setting('lock_timeout')"))
            session.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                            {"t": ANALYZE_LOCK_TIMEOUT})
            session.execute(text(f"ANALYZE {tables}"))
            session.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": before})
    except OperationalError:
        log.warning("roster statistics not refreshed: the tables are being vacuumed")


def _find_volunteer(session: Session, vault: Vault, post: Post, row: RosterRow) -> Volunteer | None:
    """The stored volunteer with the same name and the same phone (or email), if any."""
    for channel, value in row.contacts:
        candidates = session.scalars(
            select(Volunteer)
            .join(Contact)
            .where(
                Volunteer.post_id == post.id,
                Volunteer.kind == "clv",
                Contact.channel == channel,
                Contact.value_hash.in_(vault.lookup_hashes(value)),
            )
        ).all()
        for vol in candidates:
            if fold(vol.name) == fold(row.name):
                return vol
    return None
