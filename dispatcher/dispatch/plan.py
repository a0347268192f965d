"""Planning an alert: whom each zone's chain reaches, what a dry run shows, and which
reply code it holds, before anything is written (`dispatch.outbox` writes the rows)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from channels.twilio_voice import estimated_minutes, say_language
from dispatcher.acks import LATE_REPLY_WINDOW, takes_replies
from dispatcher.compose.composer import (
    REPLY_CODE_DIGITS,
    REPLY_CODES,
    compose,
    sms_for_zone,
    sms_preview,
)
from dispatcher.compose.templates import load_template, pick_language
from dispatcher.db import db_now, db_today
from dispatcher.dispatch.channel_preview import (
    policy_steps,
    recipient_steps,
    uses_whatsapp,
    whatsapp_message,
)
from dispatcher.dispatch.targeting import (
    Target,
    every_tier,
    first_reachable_tier,
    reachable_tiers,
    zone_members,
    zone_size,
)
from dispatcher.dispatch.whatsapp import open_sessions
from dispatcher.dispatch.wording import segments_of, voice_language, voice_text
from dispatcher.domain import ON_REQUEST_CHANNELS, AlertState, Channel, tier_name
from dispatcher.errors import InvalidInput, NotFound, Refused
from dispatcher.escalation.policy import EscalationPolicy, load_policy
from dispatcher.models import Alert, Post, Zone, table
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
                        zone_segments[lang] = segments_of(sms_for_zone(self.bodies[lang]["sms"],
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

