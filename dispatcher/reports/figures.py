"""The figures of a post-exercise report, read straight from the database.

Definitions (also in the README):
- recipients: volunteers asked (duty officers are counted apart);
- handed off: at least one message accepted by a provider; reached: at least one
  delivery confirmed by a receipt;
- a volunteer's time to acknowledge = acknowledged_at - notified_at (first message
  accepted); the summary's median and 90th percentile are over those;
- a zone's time to acknowledge = the zone's acknowledged_at - the alert's sent_at,
  escalation delays included;
- escalations: escalate deadlines that fired and moved a zone on (or gave it up).
Every query is a bulk select of plain columns, the deliveries folded per recipient by the
database (PostgreSQL) or read once and folded here (SQLite, `fold_deliveries`): 100,000
deliveries take under 2 s.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Integer,
    String,
    case,
    cast,
    distinct,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from dispatcher.db import db_today
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    DUTY_OFFICER_TIER,
    Channel,
    DeadlineState,
    DeliveryState,
    RecipientState,
    ZoneState,
    tier_name,
)
from dispatcher.errors import NotFound
from dispatcher.heap import collector_paused
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Membership,
    Post,
    Recipient,
    Response,
    Volunteer,
    Zone,
    sqlite_utc,
)
from dispatcher.recipient_json import contact_paths, join_contact_paths, whole_alert_plan
from dispatcher.roster.gaps import TERM_ENDING_SOON_DAYS
from dispatcher.status import outcomes_of

#: Delivery states that mean a provider took the message (a call that rang counts).
HANDED_OFF = {DeliveryState.ACCEPTED, DeliveryState.SENT, DeliveryState.DELIVERED,
              DeliveryState.ANSWERED, DeliveryState.MACHINE, DeliveryState.NO_ANSWER,
              DeliveryState.BUSY}
#: Delivery states in the order the report lists them, best news first.
REPORT_ORDER = (DeliveryState.DELIVERED, DeliveryState.ANSWERED, DeliveryState.MACHINE,
                DeliveryState.SENT, DeliveryState.ACCEPTED, DeliveryState.SENDING,
                DeliveryState.PENDING, DeliveryState.NO_ANSWER, DeliveryState.BUSY,
                DeliveryState.UNDELIVERED, DeliveryState.BOUNCED, DeliveryState.FAILED,
                DeliveryState.CANCELLED)
#: A volunteer's best delivery (its `REPORT_ORDER` index, None when nothing was sent) ->
#: (the outcome the report shows, whether that reached them, whether a provider took it,
#: whether it is dead).
OUTCOME_OF: dict[int | None, tuple[str, bool, bool, bool]] = {
    None: ("not sent", False, False, False),
    **{rank: (state, state == DeliveryState.DELIVERED, state in HANDED_OFF,
              state in DEAD_DELIVERY_STATES) for rank, state in enumerate(REPORT_ORDER)}}
#: Alert-path purposes (the alert itself, or it again after a failover).
ALERT_PURPOSES = ("alert", "failover")
#: The order of the report's volunteers, as the indexes in a row of `_build_report`'s read
#: of the recipients: zone, tier, name, recipient id.
VOLUNTEER_ORDER = (9, 3, 8, 0)
#: The tier, and whether a contact is flagged, of a row of that read.
_TIER, _FLAGGED = itemgetter(3), itemgetter(11)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of a list; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def build_report(session: Session, alert_id: int, today: date | None = None) -> dict[str, Any]:
    """Every figure of one alert's report (see the module docstring for definitions)."""
    # Hundreds of thousands of short-lived rows and dicts, none in a cycle: the cyclic
    # collector would rescan them over and over (a third of the time at 100,000 rows).
    with collector_paused():
        return _build_report(session, alert_id, today)


def sort_volunteers(recs: list[Any]) -> None:
    """Sort rows of `_build_report`'s read of the recipients in `VOLUNTEER_ORDER`: one
    stable sort a key, the last key first. Each sorts values of one kind, which Python
    compares fast; one sort by the four keys as a tuple took 0.4 s of 60,000 rows."""
    for index in reversed(VOLUNTEER_ORDER):
        recs.sort(key=itemgetter(index))


def _build_report(session: Session, alert_id: int, today: date | None) -> dict[str, Any]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    post = session.get(Post, alert.post_id)
    assert post is not None
    today = today or db_today(session, post.timezone)
    # Plain column selects on the connection (no ORM object, no ORM result layer per row),
    # and the deliveries folded per recipient by the database: 100,000 deliveries come back
    # as one row per volunteer asked.
    db = session.connection()
    # The state and the times as the driver gives them, not through their column types
    # (an enum, `UTCDateTime`): those took 0.5 s of CPU over 60,000 rows on SQLite. SQLite
    # gives naive UTC text (read by `sqlite_utc` when `naive`), PostgreSQL aware datetimes.
    naive = db.dialect.name == "sqlite"
    sent_at = alert.sent_at.replace(tzinfo=None) if naive and alert.sent_at else alert.sent_at
    # PostgreSQL sorts the deliveries and the contacts in memory (with its default work_mem
    # they went to disk); the findings' small reads plan as usual.
    with whole_alert_plan(db):
        contacts = ContactsOf(Recipient.volunteer_id)
        recs: list[Any] = list(db.execute(contacts.join(
            select(Recipient.id, Recipient.volunteer_id, Recipient.zone_id, Recipient.tier,
                   type_coerce(Recipient.state, String).label("state"),
                   type_coerce(Recipient.notified_at, String).label("notified_at"),
                   type_coerce(Recipient.acknowledged_at, String).label("acknowledged_at"),
                   Recipient.acknowledged_via, Volunteer.name, Zone.name.label("zone"),
                   contacts.masked.label("contact"), contacts.flagged.label("flagged"))
            .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
            .join(Zone, Zone.id == Recipient.zone_id))
            .where(Recipient.alert_id == alert_id)
            .order_by(*(Zone.name, Recipient.tier, Volunteer.name, Recipient.id) if naive
                      else ())).all())
        # In `VOLUNTEER_ORDER`: zone, tier, name, then the recipient, so that namesakes
        # keep one order; text by code point on both databases. SQLite sorts (its BINARY
        # order is that one) cheaper than Python, and the rows then come in the order the
        # report is read in; PostgreSQL's sort (of 60,000 rows by two names, in its
        # collation) took longer than its whole read, Python's takes a tenth of it.
        if not naive:
            sort_volunteers(recs)
        skipped: dict[int, list[Any]] = dict(db.execute(
            select(Recipient.id, Recipient.skipped).where(
                Recipient.alert_id == alert_id,
                func.length(cast(Recipient.skipped, String)) > 2)).all())
        paths, codes_of, totals = delivery_figures(db, alert_id)
        responses = db.execute(
            select(Response.recipient_id, Response.zone_id, Response.kind, Response.text,
                   Response.headcount_reached, Response.headcount_need_help, Response.urgent)
            .where(Response.alert_id == alert_id).order_by(Response.id)).all()
        zones = db.execute(
            select(AlertZone.zone_id, Zone.name, AlertZone.state, AlertZone.current_tier,
                   AlertZone.acknowledged_at, AlertZone.unreached_at)
            .join(Zone, Zone.id == AlertZone.zone_id)
            .where(AlertZone.alert_id == alert_id).order_by(Zone.name)).all()
        escalations_by_zone = dict(db.execute(
            select(Deadline.zone_id, func.count()).where(
                Deadline.alert_id == alert_id, Deadline.kind == "escalate",
                Deadline.state == DeadlineState.DONE).group_by(Deadline.zone_id)).all())
        # Only an alert that asked someone with an opted-out or dead contact reads those.
        any_flagged = any(map(_FLAGGED, recs))
        bad_contacts = flagged_contacts_of(db, alert_id) if any_flagged else {}

    last_reply: dict[int, tuple[str, str]] = {}
    heads: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for resp in responses:
        if resp.recipient_id is not None:
            last_reply[resp.recipient_id] = (resp.kind, resp.text)
        if resp.kind == "headcount" and resp.zone_id is not None:
            heads[resp.zone_id][0] += resp.headcount_reached or 0
            heads[resp.zone_id][1] += resp.headcount_need_help or 0

    # One pass over the volunteers asked: their rows, the zones' tallies, the times and
    # the few rows the findings must look at.
    volunteers = []
    ack_times: list[float] = []
    curve_points: list[float] = []
    #: zone name -> [targeted, reached, handed off, acknowledged volunteers]
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    to_check: list[dict[str, Any]] = []
    duty_officer_notified = False
    no_paths = (0, None)
    # Each tier's name worked out once, not on every row.
    tier_names = {tier: tier_name(tier) for tier in set(map(_TIER, recs))}
    # Rows unpacked, not read by attribute: a named read costs more than the work here.
    for rec_id, _vid, _zone_id, tier, state, notified_at, acknowledged_at, via, name, \
            zone, contact, _flagged in recs:
        if tier == DUTY_OFFICER_TIER:
            duty_officer_notified = True
            continue
        acked = state == RecipientState.ACKNOWLEDGED
        tta = None
        if acked and acknowledged_at is not None:
            # `_seconds`, inline (a call each cost more than the sums).
            if naive:
                acknowledged_at = sqlite_utc(acknowledged_at)
            if notified_at is not None:
                if naive:
                    notified_at = sqlite_utc(notified_at)
                tta = round((acknowledged_at - notified_at).total_seconds(), 3)
                ack_times.append(tta)
            if sent_at is not None:
                curve_points.append(round((acknowledged_at - sent_at).total_seconds(), 3))
        channels, rank = paths.get(rec_id, no_paths)
        outcome, was_reached, was_handed_off, dead = OUTCOME_OF[rank]
        reply = last_reply.get(rec_id)
        skips = skipped.get(rec_id) or []
        v = {
            "name": name, "zone": zone, "tier": tier_names[tier], "state": state,
            "channels_tried": list(CHANNEL_SETS[channels]),
            "delivery_outcome": outcome,
            "error_codes": codes_of.get(rec_id) or [],
            "time_to_ack_seconds": tta, "acknowledged_via": via,
            "reply": {"kind": reply[0], "text": reply[1]} if reply else None,
            "contact": contact,
            "skipped": skips,
        }
        volunteers.append(v)
        tally = tallies[zone]
        tally[0] += 1
        tally[1] += was_reached
        tally[2] += was_handed_off
        tally[3] += acked
        if dead or skips:
            to_check.append(v)

    zone_rows = []
    for z in zones:
        targeted, reached, handed_off, acked_volunteers = tallies.get(z.name, (0, 0, 0, 0))
        reported = z.zone_id in heads  # before `heads[...]` below adds it
        zone_rows.append({
            "zone": z.name, "state": z.state, "targeted": targeted,
            "reached": reached, "handed_off": handed_off,
            "acknowledged": z.state == ZoneState.ACKNOWLEDGED,
            "acknowledged_volunteers": acked_volunteers,
            "time_to_ack_seconds": _seconds(z.acknowledged_at, alert.sent_at),
            "deepest_tier": tier_name(z.current_tier) if z.current_tier >= 0 else None,
            "escalations": escalations_by_zone.get(z.zone_id, 0),
            "headcount_reported": reported,
            "headcount_reached": heads[z.zone_id][0],
            "headcount_need_help": heads[z.zone_id][1],
        })

    acknowledged = sum(t[3] for t in tallies.values())
    summary = {
        "recipients": len(volunteers),
        "handed_off": sum(t[2] for t in tallies.values()),
        "reached": sum(t[1] for t in tallies.values()),
        "acknowledged": acknowledged,
        "acknowledgement_rate": round(acknowledged / len(volunteers), 4) if volunteers else 0.0,
        "median_time_to_ack_seconds": statistics.median(ack_times) if ack_times else None,
        "p90_time_to_ack_seconds": percentile(ack_times, 0.9),
        "deliveries": totals.deliveries,
        "deliveries_by_status": totals.by_status,
        "deliveries_by_error_code": totals.by_code,
        "outcomes_by_channel": totals.outcomes,
        "failovers": totals.failovers,
        "possibly_duplicated": totals.duplicated,
        "opt_outs": sum(1 for rows in bad_contacts.values() for c in rows if c.opted_out),
        "escalations": sum(escalations_by_zone.values()),
        "zones": len(zone_rows),
        "zones_acknowledged": sum(1 for z in zone_rows if z["acknowledged"]),
        "zones_unreached": sum(1 for z in zone_rows if z["state"] == ZoneState.UNREACHED),
        "help_requests": sum(1 for r in responses if r.kind == "help"),
        "headcount_reached": sum(z["headcount_reached"] for z in zone_rows),
        "headcount_need_help": sum(z["headcount_need_help"] for z in zone_rows),
        "headcounts_reported": sum(1 for z in zone_rows if z["headcount_reported"]),
        "duty_officer_notified": duty_officer_notified,
    }
    curve_points.sort()
    curve = [{"seconds": s, "acknowledged": i + 1} for i, s in enumerate(curve_points)]
    return {
        "alert": {"id": alert.id, "title": alert.title, "kind": alert.kind,
                  "exercise": alert.exercise, "state": alert.state, "post": post.name,
                  "reply_code": alert.reply_code, "timezone": post.timezone,
                  "sent_at": alert.sent_at.isoformat() if alert.sent_at else None,
                  "ack_window_seconds": alert.ack_window_seconds},
        "versions": [{"number": v.number, "msg_type": v.msg_type, "body": v.body,
                      "sent_at": v.sent_at.isoformat(), "by": v.created_by,
                      "messages": v.messages} for v in alert.versions],
        "summary": summary, "zones": zone_rows, "volunteers": volunteers, "curve": curve,
        "findings": findings(session, alert, zone_rows, to_check,
                             list(flagged_pairs(recs, bad_contacts)), recs, today,
                             responses),
    }


#: The channels a volunteer's messages went by, as a bit each (sorted, so that a mask
#: reads back as the sorted list the report shows).
CHANNEL_BITS = {channel.value: 1 << i for i, channel in enumerate(sorted(Channel))}
#: The channels in the order the report lists a volunteer's contacts.
CONTACT_ORDER = tuple(sorted(Channel, key=lambda channel: channel.value))
#: Every mask of `CHANNEL_BITS` -> its channels, sorted.
CHANNEL_SETS = {mask: tuple(c for c, bit in CHANNEL_BITS.items() if mask & bit)
                for mask in range(1 << len(CHANNEL_BITS))}


def delivery_figures(db: Connection, alert_id: int) -> tuple[
        dict[int, tuple[int, int | None]], dict[int, list[str]], DeliveryTotals]:
    """`delivery_paths`, `error_codes` and `delivery_totals` of the alert. PostgreSQL folds
    the deliveries itself; SQLite's folds (three sorts of 100,000 rows) cost more than
    reading the deliveries once and folding them here (`fold_deliveries`)."""
    if db.dialect.name == "sqlite":
        return fold_deliveries(db, alert_id)
    return delivery_paths(db, alert_id), error_codes(db, alert_id), delivery_totals(db, alert_id)


#: A delivery state's `REPORT_ORDER` index, by its text.
_RANK_OF = {state.value: i for i, state in enumerate(REPORT_ORDER)}


def fold_deliveries(db: Connection, alert_id: int) -> tuple[
        dict[int, tuple[int, int | None]], dict[int, list[str]], DeliveryTotals]:
    """What `delivery_figures` gives, from one read of the alert's deliveries folded here
    (`tests/reports/test_figures.py` holds it equal to the database's folds)."""
    rows: Any = db.execute(
        select(Delivery.id, Delivery.recipient_id, type_coerce(Delivery.state, String),
               Delivery.error_code, Delivery.purpose,
               type_coerce(Delivery.possibly_duplicate, Integer), Delivery.channel)
        .where(Delivery.alert_id == alert_id)).all()
    #: (state, error code, purpose, possibly duplicate, channel) -> [count, first id]
    groups: dict[tuple[Any, ...], list[int]] = {}
    paths: dict[int, list[int]] = {}
    codes: dict[int, set[str]] = defaultdict(set)
    bits, rank_of = CHANNEL_BITS, _RANK_OF
    for delivery_id, rec_id, state, code, purpose, dup, channel in rows:
        key = (state, code, purpose, dup, channel)
        group = groups.get(key)
        if group is None:
            groups[key] = [1, delivery_id]
        else:
            group[0] += 1
            if delivery_id < group[1]:
                group[1] = delivery_id
        if purpose in ALERT_PURPOSES:
            bit, rank = bits.get(channel, 0), rank_of[state]
            path = paths.get(rec_id)
            if path is None:
                paths[rec_id] = [bit, rank]
            else:
                path[0] |= bit
                if rank < path[1]:
                    path[1] = rank
            if code:
                codes[rec_id].add(code)
    ordered = sorted(groups.items(), key=lambda item: item[1][1])
    return ({rec_id: (mask, rank) for rec_id, (mask, rank) in paths.items()},
            {rec_id: sorted(listed) for rec_id, listed in codes.items()},
            totals_of([(*key, count) for key, (count, _first) in ordered]))


def delivery_paths(db: Connection, alert_id: int) -> dict[int, tuple[int, int | None]]:
    """recipient id -> (the `CHANNEL_BITS` mask of the channels its alert messages went by,
    the `REPORT_ORDER` index of the best thing that happened to any of them), folded by
    the database."""
    rank = case({state: i for i, state in enumerate(REPORT_ORDER)}, value=Delivery.state)
    bit = case(CHANNEL_BITS, value=Delivery.channel, else_=0)
    rows: Any = db.execute(
        select(Delivery.recipient_id, func.sum(distinct(bit)), func.min(rank))
        .where(Delivery.alert_id == alert_id, Delivery.purpose.in_(ALERT_PURPOSES))
        .group_by(Delivery.recipient_id)).all()
    return {rec_id: (int(mask or 0), best) for rec_id, mask, best in rows}


def error_codes(db: Connection, alert_id: int) -> dict[int, list[str]]:
    """recipient id -> the provider error codes of its alert messages, sorted (only the
    few recipients with one)."""
    codes: dict[int, list[str]] = defaultdict(list)
    rows: Any = db.execute(
        select(Delivery.recipient_id, Delivery.error_code).distinct()
        .where(Delivery.alert_id == alert_id, Delivery.purpose.in_(ALERT_PURPOSES),
               Delivery.error_code.is_not(None), Delivery.error_code != ""))
    for rec_id, code in rows:
        codes[rec_id].append(code)
    for listed in codes.values():
        listed.sort()
    return codes


class DeliveryTotals(NamedTuple):
    """The alert's deliveries counted whole: by state and by error code (each in the order
    it first occurs), failovers, possible duplicates, and the outcomes per channel
    (`dispatcher.status.delivery_outcomes`)."""

    deliveries: int
    by_status: dict[str, int]
    by_code: dict[str, int]
    failovers: int
    duplicated: int
    outcomes: dict[str, dict[str, int]]


def delivery_totals(db: Connection, alert_id: int) -> DeliveryTotals:
    """Every delivery of the alert counted by the database, a handful of groups back: one
    pass over the deliveries for these counts and the outcomes per channel (a second
    pass, `delivery_outcomes`' own, cost a sixth of the figures on SQLite)."""
    return totals_of(db.execute(
        select(Delivery.state, Delivery.error_code, Delivery.purpose,
               Delivery.possibly_duplicate, Delivery.channel, func.count())
        .where(Delivery.alert_id == alert_id)
        .group_by(Delivery.state, Delivery.error_code, Delivery.purpose,
                  Delivery.possibly_duplicate, Delivery.channel)
        .order_by(func.min(Delivery.id))).all())


def totals_of(groups: Sequence[Any]) -> DeliveryTotals:
    """`DeliveryTotals` from (state, error code, purpose, possibly duplicate, channel, count)
    groups, in the order each first occurs."""
    by_status: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    deliveries = failovers = duplicated = 0
    for state, code, purpose, dup, _channel, count in groups:
        deliveries += count
        by_status[state] += count
        if code:
            by_code[code] += count
        if purpose == "failover":
            failovers += count
        if dup:
            duplicated += count
    outcomes = outcomes_of((g[4], g[2], g[0], g[-1]) for g in groups)
    return DeliveryTotals(deliveries, dict(by_status), dict(by_code), failovers, duplicated,
                          outcomes)


def _asked(alert_id: int) -> Any:
    return Contact.volunteer_id.in_(
        select(Recipient.volunteer_id).where(Recipient.alert_id == alert_id))


def _flagged(c: Any) -> Any:
    """A contact that is opted out or dead (`c` holds the contacts' columns): the report
    names those."""
    return or_(c.opted_out.is_(True), c.dead_reason.is_not(None))


class ContactsOf:
    """A volunteer's contacts, one outer join per channel (`join_contact_paths`):
    `masked`, all of them masked, "+52******0000, v***@example.org", in channel order (""
    for none); `flagged`, 1 when any of them is opted out or dead (which only then are
    read whole by `flagged_contacts_of`)."""

    def __init__(self, volunteer_id: Any) -> None:
        self.volunteer_id = volunteer_id
        self.paths = contact_paths(CONTACT_ORDER)
        # Each contact behind ", " (nothing for a channel without one), and the whole
        # without its first two characters.
        joined: Any = literal("")
        for path in self.paths.values():
            joined = joined.concat(func.coalesce(literal(", ").concat(path.c.masked), ""))
        self.masked = func.substr(joined, 3)
        self.flagged = case((or_(*(_flagged(path.c) for path in self.paths.values())), 1),
                            else_=0)

    def join(self, query: Any) -> Any:
        """`query` (which reads the volunteer id) joined to the contacts."""
        return join_contact_paths(query, self.paths, self.volunteer_id)


def flagged_contacts_of(db: Connection, alert_id: int) -> dict[int, list[Any]]:
    """volunteer id -> their opted-out or dead contacts (channel order), for the volunteers
    the alert asked: the findings read only those."""
    flagged: dict[int, list[Any]] = defaultdict(list)
    for c in db.execute(select(Contact.volunteer_id, Contact.channel, Contact.masked,
                               Contact.opted_out, Contact.dead_reason, Contact.dead_at)
                        .where(_asked(alert_id), _flagged(Contact))
                        .order_by(Contact.volunteer_id, Contact.channel)):
        flagged[c.volunteer_id].append(c)
    return flagged


def flagged_pairs(recs: Sequence[Any],
                  flagged: dict[int, list[Any]]) -> Iterator[tuple[Any, Any]]:
    """(recipient row, contact row) once per flagged contact of each volunteer asked (a
    volunteer asked in two tiers or zones counts once, at their first row)."""
    if not flagged:
        return
    left = dict(flagged)
    for r in recs:
        for c in left.pop(r.volunteer_id, ()):
            yield r, c


def findings(session: Session, alert: Alert, zones: list[dict[str, Any]],
             to_check: list[dict[str, Any]], flagged: list[tuple[Any, Any]],
             recs: Sequence[Any], today: date,
             responses: Sequence[Any] = ()) -> list[dict[str, str]]:
    """What the section should fix before a real crisis, and what the drill left to follow
    up (`drill_findings`), most severe first. `to_check`: the volunteer rows with a dead
    outcome or a skipped path; `flagged`: `flagged_pairs`."""
    out: list[dict[str, str]] = drill_findings(alert, zones, flagged, recs, responses)

    def add(severity: str, kind: str, message: str) -> None:
        out.append({"severity": severity, "kind": kind, "message": message})

    for z in zones:
        if z["state"] == ZoneState.UNREACHED:
            add("critical", "zone_unreached",
                f"{z['zone']}: nobody acknowledged; the chain ended at {z['deepest_tier']}")
        elif z["time_to_ack_seconds"] and z["time_to_ack_seconds"] > alert.ack_window_seconds:
            add("warning", "slow_zone", f"{z['zone']}: acknowledged after "
                f"{z['time_to_ack_seconds']:.0f} s, beyond the {alert.ack_window_seconds} s "
                "window (an escalation was needed)")
    for v in to_check:
        if v["delivery_outcome"] in DEAD_DELIVERY_STATES:
            add("critical", "unreachable_volunteer", f"{v['name']} ({v['zone']}): no "
                f"message got through on {', '.join(v['channels_tried']) or 'any path'} "
                f"({', '.join(v['error_codes']) or 'no code'}); fix the contact details")
        for skip in v["skipped"] or []:
            add("warning", "skipped", f"{v['name']} ({v['zone']}) skipped on "
                f"{skip['channel']}: {skip['reason']}")
    for r, c in flagged:
        if c.opted_out:
            add("warning", "opted_out", f"{r.name}: {c.channel} {c.masked} is opted out "
                "(replied STOP)")
    add_term_findings(session, alert, today, add)
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order[f["severity"]])


def drill_findings(alert: Alert, zones: list[dict[str, Any]],
                   flagged: Sequence[tuple[Any, Any]], recs: Sequence[Any],
                   responses: Sequence[Any]) -> list[dict[str, str]]:
    """What happened during the drill that someone must follow up: numbers found dead,
    HELP and citizens needing help, and how the alert changed (updates, a cancel)."""
    out: list[dict[str, str]] = []
    asking = {resp.recipient_id for resp in responses if resp.kind == "help"}
    who = {r[0]: (r.name, r.zone) for r in recs if r[0] in asking} if asking else {}
    for r, c in flagged:
        if c.dead_reason and c.dead_at is not None and alert.sent_at is not None \
                and c.dead_at >= alert.sent_at and c.dead_reason != "erased":
            out.append({"severity": "critical", "kind": "dead_number",
                        "message": f"{r.name} ({r.zone}): {c.channel} {c.masked} found "
                        f"dead in this drill ({c.dead_reason}); replace it"})
    for resp in responses:
        if resp.kind == "help":
            name, zone = who.get(resp.recipient_id, ("an unknown sender", None))
            where = f" ({zone})" if zone else ""
            out.append({"severity": "critical", "kind": "help",
                        "message": f"{name}{where} asked for HELP: {resp.text}"})
    for z in zones:
        if z["headcount_need_help"]:
            out.append({"severity": "critical", "kind": "citizens_need_help",
                        "message": f"{z['zone']}: {z['headcount_need_help']} citizen(s) need "
                        f"help (of {z['headcount_reached']} reached)"})
    versions = list(alert.versions)
    updates = sum(1 for v in versions if v.msg_type == "update")
    if updates:
        out.append({"severity": "info", "kind": "updated",
                    "message": f"{updates} update(s) sent after the alert (see Versions)"})
    cancel = next((v for v in versions if v.msg_type == "cancel"), None)
    if cancel is not None:
        out.append({"severity": "info", "kind": "cancelled",
                    "message": f"The alert was cancelled by {cancel.created_by}; "
                    f"{cancel.messages} stand-down message(s) went out"})
    return out


def add_term_findings(session: Session, alert: Alert, today: date,
                      add: Callable[[str, str, str], None]) -> None:
    """Zones with no active alternate, and terms ended or ending soon, among the members
    of the alert's zones; the database picks those few out of every membership."""
    name_of = dict(session.execute(
        select(AlertZone.zone_id, Zone.name).join(Zone, Zone.id == AlertZone.zone_id)
        .where(AlertZone.alert_id == alert.id)).all())
    zone_ids = sorted(name_of)
    # Each zone asks for one active alternate, found with the first (the distinct
    # zones of every active alternate read 60,000 memberships at 60,000 volunteers).
    covered = set(session.scalars(
        select(AlertZone.zone_id).where(AlertZone.alert_id == alert.id, exists().where(
            Membership.zone_id == AlertZone.zone_id, Membership.tier > 0,
            Membership.term_start <= today, Membership.term_end >= today))))
    for zone_id in zone_ids:
        if zone_id not in covered:
            add("warning", "no_alternate", f"{name_of[zone_id]}: no active alternate")
    soon = today + timedelta(days=TERM_ENDING_SOON_DAYS)
    for term_end, name, zone in session.execute(
            select(Membership.term_end, Volunteer.name, Zone.name)
            .join(Volunteer, Volunteer.id == Membership.volunteer_id)
            .join(Zone, Zone.id == Membership.zone_id)
            .where(Membership.zone_id.in_(zone_ids), Membership.term_end <= soon)
            .order_by(Membership.zone_id, Membership.id)):
        if term_end < today:
            add("warning", "term_ended", f"{name} ({zone}): term ended {term_end}")
        else:
            add("info", "term_ending", f"{name} ({zone}): term ends {term_end}")
