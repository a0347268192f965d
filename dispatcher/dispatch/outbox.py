"""The durable outbox: an alert's recipients, deliveries and deadlines become rows first.

Nothing is sent from here. `create_alert` writes the alert, its zones, the first
tier's recipients and one delivery row per contact path, and the deadlines that
will escalate a silent zone; the sender (`dispatch.sender`) then claims and sends
the rows, so a process killed at any line loses nobody.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from channels.encoding import sms_segments
from channels.twilio_voice import estimated_minutes, say_language, spoken_language
from dispatcher import audit, bulk, lifecycle
from dispatcher.acks import LATE_REPLY_WINDOW, takes_replies
from dispatcher.compose.composer import (
    REPLY_CODE_DIGITS,
    REPLY_CODES,
    compose,
    sms_for_zone,
    sms_preview,
)
from dispatcher.compose.templates import load_template, pick_language, wording
from dispatcher.db import db_now, db_today
from dispatcher.dispatch.channel_preview import (
    policy_steps,
    recipient_steps,
    uses_whatsapp,
    whatsapp_message,
)
from dispatcher.dispatch.targeting import (
    PathRef,
    Person,
    Target,
    duty_officer_targets,
    every_tier,
    first_reachable_tier,
    reachable_tiers,
    zone_members,
    zone_size,
)
from dispatcher.dispatch.whatsapp import COST_UNITS as WHATSAPP_COST_UNITS
from dispatcher.dispatch.whatsapp import open_sessions
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    MESSAGE_CHANNELS,
    ON_REQUEST_CHANNELS,
    TEXT_PHONE_CHANNELS,
    AlertState,
    Channel,
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    DeliveryState,
    MsgType,
    RecipientState,
    tier_name,
)
from dispatcher.errors import AlnError, InvalidInput, NotFound, Refused
from dispatcher.escalation.policy import EscalationPolicy, load_policy
from dispatcher.heap import collector_paused
from dispatcher.models import (
    Alert,
    AlertVersion,
    AlertZone,
    Deadline,
    Delivery,
    Post,
    Recipient,
    Zone,
    table,
)
from dispatcher.roster.posts import find_zone
from dispatcher.settings import Settings

#: Template used when the officer names none.
DEFAULT_TEMPLATE = "security"
#: What a dry run shows in place of the reply code: none is held until the alert is sent
#: (as long as a real code, and in the GSM-7 alphabet, so segments count the same).
PREVIEW_CODE = "#" * REPLY_CODE_DIGITS


@dataclass
class AlertRequest:
    """What an officer asks for, from the CLI, the API or a CAP import."""

    zones: list[str]
    body: str | dict[str, str]
    title: str | None = None
    template: str | None = None
    exercise: bool = False
    ack_window_seconds: int | None = None
    policy: str = "default"
    channels: list[str] = field(default_factory=list)
    force: bool = False
    actor: str = "cli"
    #: Send this draft (a CAP import): its zones, title, kind and text unless given here.
    draft_id: int | None = None


@dataclass
class PlannedZone:
    zone: Zone
    tiers: list[int]
    first: list[Target]
    #: Every other tier (later alternates, and tiers nobody in can be reached): the preview
    #: shows the whole chain and its gaps.
    others: dict[int, list[Target]] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        return bool(self.tiers)

    def every_tier(self) -> dict[int, list[Target]]:
        """Every tier of the zone with its targets, in escalation order."""
        tiers = {**self.others, **({self.tiers[0]: self.first} if self.tiers else {})}
        return dict(sorted(tiers.items()))


@dataclass
class Plan:
    post: Post
    zones: list[PlannedZone]
    policy: EscalationPolicy
    template: str
    bodies: dict[str, dict[str, str]]
    channels: list[str]
    code: str
    #: Volunteers with an open WhatsApp session (free text rather than a template).
    whatsapp_sessions: set[int] = field(default_factory=set)
    #: A large alert: each zone's first tier is known, its volunteers are read and asked
    #: after the alert is written, in chunks sent as they commit (`dispatch.fill`).
    streamed: bool = False

    def preview(self, settings: Settings) -> dict[str, Any]:
        """What a dry run shows: recipients per zone and tier (the first now, the rest as
        escalation would reach them), the gaps, totals, encodings, time estimate."""
        zones = []
        sms = emails = segments = calls = call_minutes = whatsapp = whatsapp_units = 0
        languages: set[str] = set()
        for pz in self.zones:
            # Volunteers alike (same paths, skips, languages) share one row's description:
            # a 100,000-volunteer preview describes a handful of kinds of volunteer.
            kinds: dict[tuple[Any, ...], dict[str, Any]] = {}
            recipients = [self._recipient(settings, t, pz.zone.name, kinds) for t in pz.first]
            zone_segments: dict[str, int] = {}
            for r in recipients:
                sms += r["channels"].count("sms")
                emails += r["channels"].count("email")
                if "sms" in r["channels"]:
                    lang = r["language"]
                    if lang not in zone_segments:
                        zone_segments[lang] = _segments(sms_for_zone(self.bodies[lang]["sms"],
                                                                     pz.zone.name))
                    segments += zone_segments[lang]
                if "call" in r:
                    calls += 1
                    call_minutes += r["call"]["estimated_minutes"]
                if "whatsapp" in r:
                    whatsapp += 1
                    whatsapp_units += r["whatsapp"]["cost_units"]
            tiers = {t: recipients if ts is pz.first else
                     [self._recipient(settings, x, pz.zone.name, kinds) for x in ts]
                     for t, ts in pz.every_tier().items()}
            languages |= {r["language"] for rs in tiers.values() for r in rs if r["channels"]}
            zones.append({"zone": pz.zone.name,
                          "tier": tier_name(pz.tiers[0]) if pz.tiers else None,
                          "chain": [tier_name(t) for t in pz.tiers],
                          "tiers": [{"tier": tier_name(t), "reachable": t in pz.tiers,
                                     "recipients": rs} for t, rs in tiers.items()],
                          "gaps": _zone_gaps(pz),
                          "reachable": pz.reachable, "recipients": recipients})
        rate = settings.sms_rate_per_second or 0
        seconds = sms / rate if rate else 0.0
        encodings = sms_preview(self.bodies, [pz.zone.name for pz in self.zones])
        return {"zones": zones, "sms": sms, "emails": emails, "sms_segments": segments,
                "calls": calls, "call_minutes": call_minutes,
                "whatsapp": whatsapp, "whatsapp_cost_units": whatsapp_units,
                "steps": policy_steps(self.policy),
                "languages": sorted(languages),
                "sms_encoding": {k: v for k, v in encodings.items() if k in languages}
                or encodings,
                "estimated_seconds": round(seconds, 1), "ack_window_seconds":
                self.policy.ack_window_seconds,
                "reply_code": None if self.code == PREVIEW_CODE else self.code,
                "template": self.template, "policy": self.policy.to_dict()}

    def _recipient(self, settings: Settings, t: Target, zone: str,
                   kinds: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
        """One volunteer in a dry run: the channels asked at once, each step of the tier
        (with the steps they would miss), a call's language and a WhatsApp message's form.
        Everything but the name is described once per kind of volunteer (`kinds`)."""
        session_open = t.volunteer.id in self.whatsapp_sessions
        key = (t.tier, tuple(c.channel for c in t.contacts), tuple(t.skipped),
               tuple(t.volunteer.language_list), session_open)
        kind = kinds.get(key)
        if kind is None:
            steps = recipient_steps(self.policy, t, self.channels)
            lang = self.language_for(t)
            kind = {"tier": tier_name(t.tier), "channels": sorted(steps[0]["channels"]),
                    "language": lang, "skipped": [s.as_dict() for s in t.skipped],
                    "steps": steps}
            if any(Channel.VOICE in s["channels"] for s in steps):
                kind["call"] = self.call_preview(lang, zone)
            if uses_whatsapp(steps):
                kind["whatsapp"] = whatsapp_message(settings.config_dir, lang, session_open)
            kinds[key] = kind
        return {"name": t.volunteer.name, **kind}

    def language_for(self, target: Target) -> str:
        return pick_language(target.volunteer.language_list, list(self.bodies),
                             self.post.default_language)

    def call_preview(self, language: str, zone: str) -> dict[str, Any]:
        """A call's language as Twilio speaks it (an English fallback named), and its cost
        in estimated minutes."""
        spoken = voice_language(language, list(self.bodies))
        text = voice_text(self.bodies, spoken, zone)
        return {"language": spoken, "say_language": say_language(spoken),
                "fallback": None if spoken == language else
                f"Twilio has no voice for '{language}': the call is read in '{spoken}'",
                "estimated_minutes": estimated_minutes(text)}


def _zone_gaps(pz: PlannedZone) -> list[str]:
    """What a zone lacks, in words: no primary or alternate to escalate to, and who is
    skipped (term ended, opted out, dead path)."""
    name = pz.zone.name
    gaps = []
    if not pz.reachable:
        gaps.append(f"nobody reachable in {name}: the duty officer is alerted at once")
    else:
        if 0 not in pz.tiers:
            gaps.append(f"{name} has no active primary")
        if not any(t > 0 for t in pz.tiers):
            gaps.append(f"{name} has no active alternate")
    for targets in pz.every_tier().values():
        for x in targets:
            for skip in x.skipped:
                where = "" if skip.channel == "all" else f"{skip.channel}: "
                gaps.append(f"{x.volunteer.name} ({tier_name(x.tier)}): {where}{skip.reason}")
    return gaps


def plan_alert(session: Session, settings: Settings, post: Post, req: AlertRequest, *,
               refuse_unreachable: bool = True,
               today: date | None = None, hold_code: bool = True,
               code: str | None = None, stream_above: int | None = None) -> Plan:
    """Resolve zones, template, policy and first tier; refuse what cannot reach anyone.
    Without `hold_code` (a preview) the texts carry PREVIEW_CODE: no code is shown before
    one is held by a sent alert; `code` is one already held. Zones holding more than
    `stream_above` memberships in all are streamed: only each zone's first tier is found,
    not its volunteers (`Plan.streamed`)."""
    today = today or db_today(session, post.timezone)
    known = [c.value for c in Channel]
    for c in req.channels:
        if c not in known:
            raise InvalidInput(f"channel '{c}' is not one of {', '.join(known)}")
    if not req.zones:
        raise InvalidInput("name at least one zone (--zone Chiapas, or --zone all)")
    if any(z.strip().lower() == "all" for z in req.zones):
        zones = list(session.scalars(select(Zone).where(Zone.post_id == post.id)
                                     .order_by(Zone.name)))
    else:
        zones = []
        for name in req.zones:
            zone = find_zone(session, post, name)
            if zone not in zones:
                zones.append(zone)
    streamed = (stream_above is not None
                and zone_size(session, [z.id for z in zones]) > stream_above)
    template = load_template(settings.config_dir, req.template or DEFAULT_TEMPLATE)
    policy = load_policy(settings.config_dir, req.policy).with_window(req.ack_window_seconds)
    code = code or (allocate_reply_code(session, post.id) if hold_code else PREVIEW_CODE)
    bodies = compose(settings.config_dir, template, title=req.title, body=req.body,
                     zones=[z.name for z in zones], exercise=req.exercise, code=code,
                     help_line=post.help_line)
    configured = settings.configured_channels
    if req.channels and configured:
        missing = [c for c in req.channels if c not in configured]
        if missing:
            raise Refused(f"no provider is configured for {', '.join(missing)}")
    # Without any provider (a dry run on a fresh machine) the preview shows every path.
    channels = list(req.channels) or configured or known
    # A call is a later step of the policy; asked for by name (`--channel voice`), at once.
    asked_now = [c for c in req.channels if c in ON_REQUEST_CHANNELS]
    if asked_now:
        policy = policy.asking_at_once(asked_now)
    planned = []
    for zone in zones:
        if streamed:
            first_tier = first_reachable_tier(session, zone.id, channels, today)
            planned.append(PlannedZone(zone, [] if first_tier is None else [first_tier], []))
            continue
        # One zone's rows at a time: targets keep only ids and names, so the ORM objects
        # of a 100,000-volunteer roster never all sit in memory at once.
        ms = zone_members(session, [zone.id]).get(zone.id, [])
        every = every_tier(ms, channels, today)
        tiers = reachable_tiers(every)
        first = every.pop(tiers[0]) if tiers else []
        planned.append(PlannedZone(zone, tiers, first, every))
        del ms
    talking = open_sessions(session, (t.volunteer.id for pz in planned for t in pz.first
                                      if any(c.channel == Channel.WHATSAPP for c in t.contacts)),
                            db_now(session))
    dead = [pz.zone.name for pz in planned if not pz.reachable]
    if dead and not req.force and refuse_unreachable:
        raise Refused(
            f"nobody reachable in {', '.join(dead)} (no active volunteer with a usable "
            "contact path); fix the roster, or send with --force to alert the duty officer "
            "for those zones")
    return Plan(post, planned, policy, template.name, bodies, channels or [], code, talking,
                streamed)


def create_alert(session: Session, settings: Settings, plan: Plan, req: AlertRequest,
                 *, msg_type: MsgType = MsgType.ALERT,
                 references: Alert | None = None, filler: str | None = None) -> Alert:
    """Write the alert and its whole first wave as rows, in the caller's transaction; a
    streamed plan's first wave as a fill deadline per zone instead, claimed by `filler`
    (the caller, who fills them next) or, without one, left for a worker."""
    if not settings.configured_channels:
        raise Refused("no provider is configured: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN "
                      "and TWILIO_FROM_NUMBER, and/or SENDGRID_API_KEY and ALN_EMAIL_FROM "
                      "(or run `aln demo`, which uses the provider simulator)")
    now = db_now(session)
    template = load_template(settings.config_dir, plan.template)
    # Officers read the title on the board: English when the template has it.
    lang = "en" if "en" in plan.bodies else plan.post.default_language
    alert = (session.get(Alert, req.draft_id) if req.draft_id is not None
             else Alert(post_id=plan.post.id, created_by=req.actor))
    assert alert is not None  # plan_alert checked the draft
    alert.kind, alert.msg_type, alert.exercise = template.kind, msg_type, req.exercise
    alert.title = req.title or template.texts.get(lang, {}).get("title", template.name)
    alert.template, alert.bodies, alert.channels = plan.template, plan.bodies, plan.channels
    alert.reply_code, alert.ack_window_seconds = plan.code, plan.policy.ack_window_seconds
    alert.policy, alert.sent_at = plan.policy.to_dict(), now
    alert.references_alert_id = references.id if references else alert.references_alert_id
    if alert.id is None:
        session.add(alert)
    lifecycle.move(alert, AlertState.SENDING)
    session.flush()
    drafted = {az.zone_id: az for az in session.scalars(
        select(AlertZone).where(AlertZone.alert_id == alert.id))}
    for stale in set(drafted) - {pz.zone.id for pz in plan.zones}:
        session.delete(drafted[stale])  # the officer sent the draft to other zones
    for pz in plan.zones:
        az = drafted.get(pz.zone.id) or AlertZone(alert_id=alert.id, zone_id=pz.zone.id)
        az.current_tier = -1
        session.add(az)
        session.flush()
        if pz.reachable and plan.streamed:
            az.current_tier = pz.tiers[0]
            session.add(fill_deadline(alert.id, pz.zone.id, pz.tiers[0], now, filler,
                                      settings.lease_seconds))
        elif pz.reachable:
            enqueue_tier(session, alert, az, pz.first, plan.policy, now, plan.post)
            pz.first, pz.others = [], {}  # let the zone's rows go before the next zone
        else:
            # Forced: nobody to ask, so the zone's chain is exhausted at once.
            session.add(Deadline(alert_id=alert.id, zone_id=pz.zone.id, tier=-1,
                                 kind=DeadlineKind.ESCALATE, due_at=now))
    first_version(session, alert, req)
    audit.record(session, req.actor, "alert.sent", alert_id=alert.id,
                 zones=[pz.zone.name for pz in plan.zones], exercise=req.exercise,
                 template=plan.template, policy=plan.policy.to_dict(), code=plan.code,
                 draft=req.draft_id)
    return alert


def fill_deadline(alert_id: int, zone_id: int, tier: int, now: datetime, filler: str | None,
                  lease_seconds: float) -> Deadline:
    """A zone's first wave still to write (`dispatch.fill`): due at once, and claimed by
    `filler` when the sending process fills it itself."""
    deadline = Deadline(alert_id=alert_id, zone_id=zone_id, tier=tier, kind=DeadlineKind.FILL,
                        due_at=now)
    if filler is not None:
        lifecycle.start(deadline, DeadlineState.CLAIMED)
        deadline.claimed_by = filler
        deadline.lease_until = now + timedelta(seconds=lease_seconds)
    return deadline


@dataclass
class Sent:
    """What sending an alert gave: the alert's id and code, the preview behind it (None
    for a streamed alert until `preview_sent` reads it), and the fill deadlines the
    sender claimed (`dispatch.fill` runs them)."""

    alert_id: int | None
    reply_code: str | None
    preview: dict[str, Any] | None
    fills: list[int] = field(default_factory=list)
    request: AlertRequest | None = None


def send_alert(session: Session, settings: Settings, post: Post, req: AlertRequest, *,
               dry_run: bool = False, filler: str | None = None) -> Sent:
    """The one flow that sends an alert (CLI, API, dashboard, demo, tests, benchmarks):
    plan it, and unless a dry run, write its zones, first tier, deliveries and deadlines
    in the caller's transaction. The fan-out is the caller's (or a worker's) to run.

    An alert to more than `settings.stream_above` memberships is streamed: its first
    wave is written after the commit, in chunks, while the fan-out sends them
    (`dispatch.fill`); `filler` (the caller's worker name) claims those fills.
    """
    if req.draft_id is not None:
        req = request_from_draft(session, post, req)
    # A dry run shows what would be refused instead of refusing it, and is never streamed.
    plan = plan_alert(session, settings, post, req, refuse_unreachable=not dry_run,
                      hold_code=not dry_run,
                      stream_above=None if dry_run else settings.stream_above)
    preview = None if plan.streamed else plan.preview(settings)
    if dry_run:
        assert preview is not None
        dead = [z["zone"] for z in preview["zones"] if not z["reachable"]]
        preview["refused"] = (f"nobody reachable in {', '.join(dead)}: sending would be "
                              "refused without --force" if dead and not req.force else None)
        session.rollback()
        return Sent(None, None, preview)
    alert = create_alert(session, settings, plan, req, filler=filler)
    session.flush()
    fills = (list(session.scalars(select(Deadline.id).where(
        Deadline.alert_id == alert.id, Deadline.kind == DeadlineKind.FILL)))
        if plan.streamed else [])
    return Sent(alert.id, alert.reply_code, preview, fills, req)


def preview_sent(session: Session, settings: Settings, post: Post, sent: Sent) -> dict[str, Any]:
    """The preview of a sent alert: the one `send_alert` gave, or a streamed alert's,
    planned now with its code (read after the commit, so the first wave is not kept
    waiting for it). The alert is sent whatever happens here: a roster or configuration
    changed since gives a preview that says why it is missing, not an error."""
    if sent.preview is not None:
        return sent.preview
    assert sent.request is not None and sent.reply_code is not None
    try:
        plan = plan_alert(session, settings, post, replace(sent.request, draft_id=None),
                          refuse_unreachable=False, code=sent.reply_code)
    except AlnError as exc:
        return {"zones": [], "unavailable": f"alert sent; its preview could not be read: {exc}"}
    return plan.preview(settings)


def first_version(session: Session, alert: Alert, req: AlertRequest) -> None:
    """Version 1 is the alert as sent."""
    body = req.body if isinstance(req.body, str) else json.dumps(req.body, ensure_ascii=False)
    session.add(AlertVersion(alert_id=alert.id, number=1, msg_type=MsgType.ALERT.value,
                             body=body, texts={}, sent_at=alert.sent_at,
                             created_by=req.actor))


def request_from_draft(session: Session, post: Post, req: AlertRequest) -> AlertRequest:
    """A draft's zones, title, kind and text, unless the officer gave others."""
    draft = session.get(Alert, req.draft_id)
    if draft is None or draft.post_id != post.id:
        raise NotFound(f"draft {req.draft_id} not found")
    if draft.state != AlertState.DRAFT:
        raise Refused(f"alert {draft.id} is not a draft (it is {draft.state.value})")
    zones = req.zones or [az.zone.name for az in draft.zones]
    body: str | dict[str, str] = req.body or {
        lang: b.get("email_text") or b.get("sms") or "" for lang, b in draft.bodies.items()}
    return replace(req, zones=zones, body=body, title=req.title or draft.title,
                   template=req.template or draft.kind,
                   exercise=req.exercise or draft.exercise)


def allocate_reply_code(session: Session, post_id: int) -> str:
    """A reply code no alert that still takes replies holds; refused when none is free."""
    recent = db_now(session) - LATE_REPLY_WINDOW
    alerts = table(Alert)
    taken: set[str] = set(session.scalars(select(alerts.c.reply_code).where(
        alerts.c.post_id == post_id, takes_replies(bindparam("recent")))
        .params(recent=recent)))
    free = sorted(set(REPLY_CODES) - taken)
    if not free:
        raise Refused(f"every reply code ({len(REPLY_CODES)}) is held by an alert that still "
                      "takes replies; cancel or wait for older alerts to close before "
                      "sending another")
    return secrets.choice(free)


def enqueue_tier(session: Session, alert: Alert, az: AlertZone, targets: Sequence[Target],
                 policy: EscalationPolicy, now: datetime, post: Post) -> list[tuple[int, str]]:
    """Recipients, deliveries and deadlines for one tier of one zone: (id, state) each.

    The one path that asks a tier (the first wave, and each escalation to the next): rows
    are written in bulk (`dispatcher.bulk`), each recipient's first state chosen by
    `lifecycle`, each message worded by `new_delivery` once per language and channel. A
    large first wave takes the same steps across several transactions (`dispatch.fill`).
    """
    tier = targets[0].tier if targets else az.current_tier
    az.current_tier = tier
    fresh = not_yet_asked(session, alert.id, az.zone_id, targets)
    messages = tier_messages(session, alert, az, post)
    created: list[tuple[int, str]] = []
    for start in range(0, len(fresh), bulk.CHUNK_ROWS):
        created.extend(write_chunk(session, alert, az, tier, fresh[start:start + bulk.CHUNK_ROWS],
                                   policy, now, messages))
    tier_deadlines(session, alert, az, tier, targets, policy, now)
    return created


def not_yet_asked(session: Session, alert_id: int, zone_id: int,
                  targets: Sequence[Target]) -> list[Target]:
    """The targets without a recipient row in this alert's zone yet."""
    already = set(session.scalars(select(Recipient.volunteer_id).where(
        Recipient.alert_id == alert_id, Recipient.zone_id == zone_id)))
    return [t for t in targets if t.volunteer.id not in already]


def tier_messages(session: Session, alert: Alert, az: AlertZone, post: Post) -> _Messages:
    """The wordings of a zone's new recipients: the alert, then every update so far (a
    tier asked after an update gets both)."""
    updates: list[dict[str, str]] = list(session.scalars(select(AlertVersion.texts).where(
        AlertVersion.alert_id == alert.id, AlertVersion.msg_type == MsgType.UPDATE.value)
        .order_by(AlertVersion.number)))
    return _Messages(alert, az.zone.name, updates, post.default_language)


def write_chunk(session: Session, alert: Alert, az: AlertZone, tier: int,
                chunk: Sequence[Target], policy: EscalationPolicy, now: datetime,
                messages: _Messages) -> list[tuple[int, str]]:
    """One chunk of a tier asked at `now`: recipients, deliveries and, when each volunteer
    holds a duty of their own ("each" mode), their deadlines."""
    due = now + timedelta(seconds=policy.ack_window_seconds)
    with collector_paused():
        created = _write_recipients(session, alert, az, tier, due, chunk,
                                    policy.step_channels(0), messages)
    if policy.mode == "each":
        bulk.insert(session, Deadline, ("alert_id", "zone_id", "tier", "due_at", "recipient_id"),
                    ((alert.id, az.zone_id, tier, due, rec_id) for rec_id, state in created
                     if state != RecipientState.FAILED))
    return created


def tier_deadlines(session: Session, alert: Alert, az: AlertZone, tier: int,
                   targets: Sequence[Target], policy: EscalationPolicy, now: datetime) -> None:
    """The zone's deadlines for a tier asked at `now`: its window (unless each volunteer
    has one), later steps, reminders, and an escalation at once when nobody of the tier
    can be reached at all."""
    due = now + timedelta(seconds=policy.ack_window_seconds)
    if policy.mode != "each":
        session.add(Deadline(alert_id=alert.id, zone_id=az.zone_id, tier=tier, due_at=due))
    schedule_steps(session, alert, az, tier, targets, policy, now)
    for offset in policy.reminder_offsets():
        session.add(Deadline(alert_id=alert.id, zone_id=az.zone_id, tier=tier,
                             kind=DeadlineKind.REMINDER, due_at=now + timedelta(seconds=offset)))
    if targets and not any(t.reachable for t in targets):
        # Nobody of this tier can be reached at all: do not wait out the window.
        session.add(Deadline(alert_id=alert.id, zone_id=az.zone_id, tier=tier, due_at=now))


class _Messages:
    """Each delivery row of one zone's tier, worded once per channel, language and
    message (the alert, then each update) rather than once per volunteer."""

    def __init__(self, alert: Alert, zone: str, updates: list[dict[str, str]],
                 default_language: str) -> None:
        self.alert, self.zone, self.updates = alert, zone, updates
        self.default_language = default_language
        self.languages: dict[tuple[str, ...], str] = {}
        self.rows: dict[tuple[str, str, int], tuple[Any, ...]] = {}

    def language(self, person: Person) -> str:
        key = tuple(person.language_list)
        lang = self.languages.get(key)
        if lang is None:
            lang = self.languages[key] = pick_language(
                person.language_list, list(self.alert.bodies), self.default_language)
        return lang

    def row(self, channel: str, lang: str, version: int) -> tuple[Any, ...]:
        """The worded columns (`DELIVERY_WORDING`) of one delivery; version 0 is the alert,
        1.. the updates, in order."""
        key = (channel, lang, version)
        row = self.rows.get(key)
        if row is None:
            if version == 0:
                d = new_delivery(self.alert, PathRef(0, channel), DeliveryPurpose.ALERT, lang,
                                 zone=self.zone)
            else:
                texts = self.updates[version - 1]
                d = new_delivery(self.alert, PathRef(0, channel), DeliveryPurpose.UPDATE, lang,
                                 texts.get(lang) or next(iter(texts.values())), zone=self.zone)
            row = self.rows[key] = tuple(bulk.values_of(d, DELIVERY_WORDING).values())
        return row


#: The `skipped` of a recipient skipped on no path: one shared (never changed) value, so
#: the bulk writer converts it once.
NO_SKIPS: list[dict[str, str]] = []
#: The columns of a recipient row `_write_recipients` gives (the rest are defaults).
RECIPIENT_COLUMNS = ("id", "alert_id", "volunteer_id", "zone_id", "tier", "due_at", "state",
                     "skipped")
#: The columns `new_delivery` words (the rest are ids, or defaults).
DELIVERY_WORDING = ("alert_id", "channel", "purpose", "language", "subject", "body", "html",
                    "segments")


def _write_recipients(session: Session, alert: Alert, az: AlertZone, tier: int,
                      due: datetime, targets: Sequence[Target], at_once: Collection[str],
                      messages: _Messages) -> list[tuple[int, str]]:
    """One chunk of a tier: its recipient rows, then their deliveries."""
    ids = bulk.allocate_ids(session, Recipient, len(targets))
    pending = lifecycle.first_state(Recipient, RecipientState.PENDING).value
    failed = lifecycle.first_state(Recipient, RecipientState.FAILED).value
    # Read once: an ORM attribute costs more than the tuple it goes into.
    alert_id, zone_id = alert.id, az.zone_id
    versions = range(len(messages.updates) + 1)
    worded = messages.rows
    # Targeting shares one language list among the volunteers who speak alike, and the
    # chunk's targets hold them, so the list itself names its language here.
    languages: dict[int, str] = {}
    recipients: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    for rec_id, target in zip(ids, targets, strict=True):
        recipients.append((rec_id, alert_id, target.volunteer.id, zone_id, tier, due,
                           pending if target.reachable else failed,
                           [s.as_dict() for s in target.skipped] if target.skipped
                           else NO_SKIPS))
        spoken = target.volunteer.language_list
        lang = languages.get(id(spoken))
        if lang is None:
            lang = languages[id(spoken)] = messages.language(target.volunteer)
        # Later steps' channels (a call after 5 minutes) come from their deadlines.
        contacts = [c for c in target.contacts if c.channel in at_once]
        for version in versions:
            for contact in contacts:
                row = worded.get((contact.channel, lang, version))
                if row is None:
                    row = messages.row(contact.channel, lang, version)
                deliveries.append((*row, rec_id, contact.id))
    bulk.insert(session, Recipient, RECIPIENT_COLUMNS, recipients)
    bulk.insert(session, Delivery, (*DELIVERY_WORDING, "recipient_id", "contact_id"),
                deliveries)
    return [(r[0], r[6]) for r in recipients]


def schedule_steps(session: Session, alert: Alert, az: AlertZone, tier: int,
                   targets: Sequence[Target], policy: EscalationPolicy, now: datetime) -> None:
    """A deadline for each later step of the tier that someone has a live path for."""
    steps = policy.tier_steps()
    for index in range(1, len(steps)):
        channels = policy.step_channels(index)
        if any(c.channel in channels for t in targets for c in t.contacts):
            session.add(Deadline(alert_id=alert.id, zone_id=az.zone_id, tier=tier,
                                 kind=DeadlineKind.STEP, step=index,
                                 due_at=now + timedelta(seconds=steps[index].delay_seconds)))


def add_delivery(session: Session, alert: Alert, rec: Recipient, contact: Any,
                 purpose: DeliveryPurpose, lang: str, text: str | None = None) -> Delivery:
    """One outbox row. `text` overrides the alert's body (cancel, update, stand-down...)."""
    delivery = new_delivery(alert, contact, purpose, lang, text, zone=rec.zone.name)
    delivery.recipient_id = rec.id
    session.add(delivery)
    return delivery


def new_delivery(alert: Alert, contact: Any, purpose: DeliveryPurpose, lang: str,
                 text: str | None = None, *, zone: str) -> Delivery:
    """The row for one message; an alert's SMS names `zone`, the recipient's own."""
    if contact.channel == Channel.VOICE:
        return _call(alert, contact, purpose, lang, text, zone=zone)
    common = dict(alert_id=alert.id, contact_id=contact.id, channel=contact.channel,
                  purpose=purpose, language=lang)
    if text is not None:
        if contact.channel in TEXT_PHONE_CHANNELS:
            return Delivery(**common, body=text, segments=_cost_units(contact.channel, text))
        return Delivery(**common, subject=text[:120], body=text, html=None)
    bodies = alert.bodies.get(lang) or next(iter(alert.bodies.values()))
    if contact.channel in TEXT_PHONE_CHANNELS:
        # WhatsApp carries the SMS's words (free text, or the template's body variable).
        sms = sms_for_zone(bodies["sms"], zone)
        return Delivery(**common, body=sms, segments=_cost_units(contact.channel, sms))
    return Delivery(**common, subject=bodies["subject"], body=bodies["email_text"],
                    html=bodies["email_html"])


def voice_language(lang: str, available: Sequence[str]) -> str:
    """The language a call is read in: the volunteer's when Twilio speaks it, else English
    (or, without an English text, the first spoken one the alert has)."""
    spoken = spoken_language(lang)
    if spoken == lang and lang in available:
        return lang
    return next((c for c in [spoken, *available] if c in available and say_language(c)), spoken)


def voice_text(bodies: dict[str, dict[str, str]], lang: str, zone: str) -> str:
    """What a call reads in `lang` to a volunteer of `zone` (older alerts: their SMS)."""
    b = bodies.get(lang) or next(iter(bodies.values()))
    return sms_for_zone(b.get("voice") or b["sms"], zone)


def _call(alert: Alert, contact: Any, purpose: DeliveryPurpose, lang: str, text: str | None,
          *, zone: str) -> Delivery:
    """A call's row: `body` is read, `subject` is the voicemail left when nobody answers
    with a key; `language` is the one it is spoken in."""
    spoken = voice_language(lang, list(alert.bodies))
    if text is not None:
        return Delivery(alert_id=alert.id, contact_id=contact.id, channel=Channel.VOICE.value,
                        purpose=purpose, language=spoken_language(lang), body=text)
    voicemail = (alert.bodies.get(spoken) or {}).get("voicemail") or None
    return Delivery(alert_id=alert.id, contact_id=contact.id, channel=Channel.VOICE.value,
                    purpose=purpose, language=spoken, body=voice_text(alert.bodies, spoken, zone),
                    subject=voicemail)


def _cost_units(channel: str, text: str) -> int:
    """What one message bills: SMS segments, or one WhatsApp message."""
    return _segments(text) if channel == Channel.SMS else WHATSAPP_COST_UNITS


@functools.lru_cache(maxsize=64)
def _segments(text: str) -> int:
    """Segments of one body, computed once for the thousands of copies of an alert."""
    return sms_segments(text).segments


def message_to(session: Session, settings: Settings, alert: Alert,
               recipients: Sequence[Recipient], purpose: DeliveryPurpose, key: str,
               **values: object) -> int:
    """Queue a fixed-wording message (cancel, stand-down, reminder...) to recipients."""
    count = 0
    for rec in recipients:
        vol = rec.volunteer
        lang = pick_language(vol.language_list, list(alert.bodies), "en")
        text = fixed_text(settings, alert, lang, key, zone=rec.zone.name, **values)
        live = [c for c in vol.contacts if not (c.opted_out or c.dead_reason)
                and (not alert.channels or c.channel in alert.channels)]
        # A fixed wording is a text; it is a call only for a volunteer no text can reach.
        texts = [c for c in live if c.channel in MESSAGE_CHANNELS]
        for contact in texts or live:
            if contact.channel == Channel.VOICE and spoken_language(lang) != lang:
                # Read in a language Twilio speaks rather than spelled out in a foreign one.
                said = spoken_language(lang)
                add_delivery(session, alert, rec, contact, purpose, said,
                             fixed_text(settings, alert, said, key, zone=rec.zone.name,
                                        **values))
                count += 1
                continue
            add_delivery(session, alert, rec, contact, purpose, lang, text)
            count += 1
    return count


def fixed_text(settings: Settings, alert: Alert, lang: str, key: str, **values: object) -> str:
    """A fixed-wording message of an alert in one language, EXERCISE first for a drill."""
    text = wording(settings.config_dir, lang, key, code=alert.reply_code, title=alert.title,
                   **values)
    if alert.exercise:
        text = f"{wording(settings.config_dir, lang, 'exercise')}: {text}"
    return text


def duty_officer_recipients(session: Session, alert: Alert, az: AlertZone,
                            post: Post) -> list[Recipient]:
    """Recipients for the duty officers of a zone's exhausted chain (created once)."""
    out = []
    for target in duty_officer_targets(session, post, az.zone):
        rec = session.scalar(select(Recipient).where(
            Recipient.alert_id == alert.id, Recipient.volunteer_id == target.volunteer.id,
            Recipient.zone_id == az.zone_id))
        if rec is None:
            rec = Recipient(alert_id=alert.id, volunteer_id=target.volunteer.id,
                            zone_id=az.zone_id, tier=DUTY_OFFICER_TIER)
            session.add(rec)
            session.flush()
        out.append(rec)
    return out


def pending_deliveries(session: Session, alert_id: int) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.alert_id == alert_id,
        Delivery.state.in_([DeliveryState.PENDING, DeliveryState.SENDING]))) or 0
