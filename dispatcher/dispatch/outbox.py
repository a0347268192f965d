"""The durable outbox: an alert's recipients, deliveries and deadlines become rows first.

Nothing is sent from here. `create_alert` writes the alert, its zones, the first
tier's recipients and one delivery row per contact path, and the deadlines that
will escalate a silent zone; the sender (`dispatch.sender`) then claims and sends
the rows, so a process killed at any line loses nobody. What an alert will reach is
planned first (`dispatch.plan`), and each row's text is worded by `dispatch.wording`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.twilio_voice import spoken_language
from dispatcher import audit, bulk, lifecycle
from dispatcher.compose.templates import load_template, pick_language
from dispatcher.db import db_now
from dispatcher.dispatch.plan import AlertRequest, Plan, plan_alert, request_from_draft
from dispatcher.dispatch.targeting import PathRef, Person, Target, duty_officer_targets
from dispatcher.dispatch.wording import fixed_text, new_delivery
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    MESSAGE_CHANNELS,
    AlertState,
    Channel,
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    DeliveryState,
    MsgType,
    RecipientState,
)
from dispatcher.errors import AlnError, Refused
from dispatcher.escalation.policy import EscalationPolicy
from dispatcher.heap import collector_paused
from dispatcher.models import (
    Alert,
    AlertVersion,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Post,
    Recipient,
    Volunteer,
    Zone,
    language_list,
    table,
)
from dispatcher.settings import Settings


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
    if len(steps) < 2:
        return
    # The tier's live channels, gathered once (a search per step, through a generator,
    # cost a 100,000-volunteer alert ~0.05 s when nobody had the step's channel).
    live = {c.channel for t in targets for c in t.contacts}
    for index in range(1, len(steps)):
        channels = policy.step_channels(index)
        if not live.isdisjoint(channels):
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


#: Recipients `message_to` reads the paths of at a time.
MESSAGE_CHUNK = 2000


def message_to(session: Session, settings: Settings, alert: Alert,
               recipient_ids: Sequence[int], purpose: DeliveryPurpose, key: str,
               **values: object) -> int:
    """Queue a fixed-wording message (cancel, stand-down, reminder...) to these recipients.

    Each recipient's zone, languages and paths are read as plain rows, a chunk at a time,
    each wording made once per channel, language and zone, and the rows written in bulk:
    through the ORM (three loads, and a flush of the row before, per recipient), a cancel
    of an alert that had reached 10,000 volunteers took 41 s, and a stand-down held the
    replies' intake as long.
    """
    r, v, c, z = table(Recipient), table(Volunteer), table(Contact), table(Zone)
    ids = sorted(set(recipient_ids))
    worded: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    rows: list[tuple[Any, ...]] = []
    languages: dict[str, str] = {}
    for start in range(0, len(ids), MESSAGE_CHUNK):
        # Through the session, so changes it holds unflushed (a path just found dead) count.
        found = session.execute(
            select(r.c.id, z.c.name, v.c.languages, c.c.id, c.c.channel, c.c.opted_out,
                   c.c.dead_reason)
            .join(v, v.c.id == r.c.volunteer_id).join(z, z.c.id == r.c.zone_id)
            .outerjoin(c, c.c.volunteer_id == v.c.id)
            .where(r.c.id.in_(ids[start:start + MESSAGE_CHUNK]))
            .order_by(r.c.id, c.c.channel)).all()
        for rec_id, group in groupby(found, itemgetter(0)):
            paths: list[Any] = list(group)
            zone, spoken = paths[0][1], paths[0][2]
            lang = languages.get(spoken)
            if lang is None:
                lang = languages[spoken] = pick_language(language_list(spoken),
                                                         list(alert.bodies), "en")
            live = [PathRef(cid, channel) for _, _, _, cid, channel, opted, dead in paths
                    if cid is not None and not (opted or dead)
                    and (not alert.channels or channel in alert.channels)]
            # A fixed wording is a text; it is a call only for a volunteer no text can reach.
            texts = [p for p in live if p.channel in MESSAGE_CHANNELS]
            for path in texts or live:
                # A call is read in a language Twilio speaks rather than spelled out in a
                # foreign one.
                said = spoken_language(lang) if path.channel == Channel.VOICE else lang
                row = worded.get((path.channel, said, zone))
                if row is None:
                    text = fixed_text(settings, alert, said, key, zone=zone, **values)
                    row = worded[(path.channel, said, zone)] = tuple(bulk.values_of(
                        new_delivery(alert, path, purpose, said, text, zone=zone),
                        DELIVERY_WORDING).values())
                rows.append((*row, rec_id, path.id))
    return bulk.insert(session, Delivery, (*DELIVERY_WORDING, "recipient_id", "contact_id"),
                       rows)


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

