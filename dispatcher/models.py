"""Storage of the domain: SQLAlchemy 2 typed ORM models for the whole mission.

The database is the source of truth: every recipient, delivery attempt, reply,
deadline and audit event is a row here before anything acts on it. Contact
details are stored encrypted (`*_enc`) with a keyed hash (`*_hash`) beside them
so inbound messages can be matched without decrypting the table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from dispatcher.domain import AlertState, DeadlineState, DeliveryState, RecipientState, ZoneState


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlite_utc(text: str) -> datetime:
    """A time as `UTCDateTime` keeps it in SQLite (naive UTC text), read without the type
    (a bulk read, a backup's raw connection): a naive UTC datetime."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


def state_column(states: type[StrEnum], default: StrEnum, *, index: bool = False) -> Any:
    """A state column: stored as its enum's text (no database enum type, so adding a state
    needs no migration), read back as the enum, and refusing any other value on write.
    Only `dispatcher.lifecycle` writes one."""
    return mapped_column(
        Enum(states, native_enum=False, create_constraint=False, length=16,
             validate_strings=True, values_callable=lambda e: [m.value for m in e]),
        default=default, index=index)


def table(model: type[Base]) -> Table:
    """A model's table, for statements run on the Core connection without the ORM."""
    return cast(Table, model.__table__)


# --- post, zones, volunteers -------------------------------------------------------------


class Post(Base):
    """An embassy or consulate running an ALN."""

    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    default_region: Mapped[str] = mapped_column(String(2))
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    help_line: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    zones: Mapped[list[Zone]] = relationship(back_populates="post", order_by="Zone.name")


class Zone(Base):
    """An ALN zone (state, province, city region) of a post."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("post_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    name: Mapped[str] = mapped_column(String(200))
    #: Case- and accent-folded name used for matching ("queretaro" for "Querétaro").
    key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    post: Mapped[Post] = relationship(back_populates="zones")
    memberships: Mapped[list[Membership]] = relationship(back_populates="zone")


def language_list(stored: str) -> list[str]:
    """A volunteer's stored languages ("es;en") as a list, first preferred."""
    return [code for code in stored.split(";") if code]


class Volunteer(Base):
    """A Citizen Liaison Volunteer, or a duty officer reachable at the end of every chain."""

    __tablename__ = "volunteers"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    kind: Mapped[str] = mapped_column(String(16), default="clv")
    name: Mapped[str] = mapped_column(String(200))
    #: Ordered language codes, first preferred ("es;en").
    languages: Mapped[str] = mapped_column(String(64), default="en")
    preferred_channel: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    contacts: Mapped[list[Contact]] = relationship(
        back_populates="volunteer", cascade="all, delete-orphan", order_by="Contact.channel"
    )
    memberships: Mapped[list[Membership]] = relationship(back_populates="volunteer")

    @property
    def language_list(self) -> list[str]:
        return language_list(self.languages)


class Contact(Base):
    """One contact path (a phone for SMS, an address for email), encrypted at rest."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("volunteer_id", "channel"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    channel: Mapped[str] = mapped_column(String(8))
    value_enc: Mapped[bytes] = mapped_column(LargeBinary)
    value_hash: Mapped[str] = mapped_column(String(64), index=True)
    masked: Mapped[str] = mapped_column(String(64))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None]
    #: Set when the provider said this path cannot deliver (invalid number, landline, bounce).
    dead_reason: Mapped[str | None] = mapped_column(String(200))
    dead_at: Mapped[datetime | None]
    volunteer: Mapped[Volunteer] = relationship(back_populates="contacts")


class Membership(Base):
    """A volunteer's place in a zone: rank (tier) and one-year term."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("volunteer_id", "zone_id"),
        # A zone's members in escalation order (tier, then id), read a page at a time by
        # `targeting.first_reachable_tier` without sorting the whole zone; any read by zone.
        Index("ix_memberships_zone_tier", "zone_id", "tier", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    rank: Mapped[str] = mapped_column(String(32))
    #: 0 for primary, N for alternateN.
    tier: Mapped[int] = mapped_column(Integer)
    term_start: Mapped[date] = mapped_column(Date)
    term_end: Mapped[date] = mapped_column(Date)
    volunteer: Mapped[Volunteer] = relationship(back_populates="memberships")
    zone: Mapped[Zone] = relationship(back_populates="memberships")


# --- alerts and their fan-out --------------------------------------------------------------


class Alert(Base):
    """One alert (or update, or cancellation) sent to zones, with its frozen policy."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    kind: Mapped[str] = mapped_column(String(32))
    msg_type: Mapped[str] = mapped_column(String(16), default="alert")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(String(300))
    template: Mapped[str | None] = mapped_column(String(64))
    #: {language: {"sms": str, "subject": str, "email_text": str, "email_html": str}}
    bodies: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Channels the officer asked for; empty list means every path a volunteer has.
    channels: Mapped[list[Any]] = mapped_column(default=list)
    reply_code: Mapped[str] = mapped_column(String(8), index=True)
    ack_window_seconds: Mapped[int] = mapped_column(Integer)
    #: The escalation policy as it was when the alert was sent (later edits do not apply).
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[AlertState] = state_column(AlertState, AlertState.DRAFT, index=True)
    references_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    created_by: Mapped[str] = mapped_column(String(200), default="cli")
    cap_identifier: Mapped[str | None] = mapped_column(String(200))
    #: The <sender> of an imported CAP message: with the identifier, what names it.
    cap_sender: Mapped[str | None] = mapped_column(String(200))
    #: The <references> of an imported CAP Update or Cancel, as written.
    cap_references: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    zones: Mapped[list[AlertZone]] = relationship(
        back_populates="alert", cascade="all, delete-orphan"
    )
    recipients: Mapped[list[Recipient]] = relationship(back_populates="alert")
    versions: Mapped[list[AlertVersion]] = relationship(order_by="AlertVersion.number")


class AlertVersion(Base):
    """One version of an alert: the alert itself (1), each update, and its cancel.

    Every version shares the alert's reply code, zones and escalation; CAP exports the
    latest with `<references>` to the earlier ones.
    """

    __tablename__ = "alert_versions"
    __table_args__ = (UniqueConstraint("alert_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    number: Mapped[int] = mapped_column(Integer)
    msg_type: Mapped[str] = mapped_column(String(16))
    #: What the officer wrote for this version (the whole text of an update).
    body: Mapped[str] = mapped_column(Text)
    #: The message each language's volunteers get for an update ({language: text}), kept
    #: so a tier asked later gets the alert and then every update in its own language.
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sent_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    #: Messages queued for this version when it was sent.
    messages: Mapped[int] = mapped_column(Integer, default=0)


class AlertZone(Base):
    """A zone targeted by an alert, and how far its chain has gone."""

    __tablename__ = "alert_zones"
    __table_args__ = (UniqueConstraint("alert_id", "zone_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    state: Mapped[ZoneState] = state_column(ZoneState, ZoneState.WAITING)
    current_tier: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[datetime | None]
    unreached_at: Mapped[datetime | None]
    alert: Mapped[Alert] = relationship(back_populates="zones")
    zone: Mapped[Zone] = relationship()


class Recipient(Base):
    """One volunteer asked by one alert for one zone at one tier."""

    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("alert_id", "volunteer_id", "zone_id"),
        Index("ix_recipients_alert_state", "alert_id", "state"),
        Index("ix_recipients_alert_updated", "alert_id", "updated_at"),
        # The board's zone figures read only this index (counts, and whom to call next).
        Index("ix_recipients_alert_zone", "alert_id", "zone_id", "tier", "state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    tier: Mapped[int] = mapped_column(Integer)
    state: Mapped[RecipientState] = state_column(RecipientState, RecipientState.PENDING)
    #: Why this volunteer was skipped on some channel (ended term, opted out), for the officer.
    skipped: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_via: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None]
    #: When the row last changed: the live board sends the rows changed since it last looked.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    alert: Mapped[Alert] = relationship(back_populates="recipients")
    volunteer: Mapped[Volunteer] = relationship()
    zone: Mapped[Zone] = relationship()
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="recipient")


#: The deliveries a provider has named (the only ones a receipt can look up).
_SET_PROVIDER_ID = text("provider_id IS NOT NULL")


class Delivery(Base):
    """One message to one contact path: the durable outbox row and its fate."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_state_lease", "state", "lease_until"),
        # Also every read by alert alone (its first column).
        Index("ix_deliveries_alert_updated", "alert_id", "updated_at"),
        # Only a set provider id is looked up (a receipt names it); most rows wait empty.
        Index("ix_deliveries_provider_id", "provider_id", sqlite_where=_SET_PROVIDER_ID,
              postgresql_where=_SET_PROVIDER_ID),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(8))
    purpose: Mapped[str] = mapped_column(String(16), default="alert")
    language: Mapped[str] = mapped_column(String(8), default="en")
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[DeliveryState] = state_column(DeliveryState, DeliveryState.PENDING)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The process died between handing this to the provider and recording it: re-sent.
    possibly_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    recipient: Mapped[Recipient] = relationship(back_populates="deliveries")
    contact: Mapped[Contact] = relationship()


class Deadline(Base):
    """An escalation or reminder due at a time: the only state the scheduler acts on."""

    __tablename__ = "deadlines"
    __table_args__ = (Index("ix_deadlines_state_due", "state", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    #: In "each" mode a deadline watches one recipient; otherwise the zone's tier.
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"))
    kind: Mapped[str] = mapped_column(String(16), default="escalate")
    tier: Mapped[int] = mapped_column(Integer)
    #: For a `step` deadline: which step of the alert's frozen policy comes due.
    step: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[datetime]
    state: Mapped[DeadlineState] = state_column(DeadlineState, DeadlineState.PENDING)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    #: Seconds between due_at and firing, for the lateness benchmark and the report.
    lateness_seconds: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- what comes back -----------------------------------------------------------------------


class InboundMessage(Base):
    """Every accepted webhook request, stored before it is processed."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    #: The raw request, encrypted: it carries phone numbers and addresses.
    raw_enc: Mapped[bytes] = mapped_column(LargeBinary)
    sender_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))


class Response(Base):
    """What a volunteer (or an unknown sender) said, as understood."""

    __tablename__ = "responses"
    #: The board reads an alert's replies by time; "has this volunteer written on WhatsApp
    #: in the last 24 hours?" is asked at every send.
    __table_args__ = (Index("ix_responses_alert_created", "alert_id", "created_at"),
                      Index("ix_responses_volunteer_channel", "volunteer_id", "channel",
                            "created_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    sender_masked: Mapped[str | None] = mapped_column(String(64))
    headcount_reached: Mapped[int | None]
    headcount_need_help: Mapped[int | None]
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[str | None] = mapped_column(String(200))


# --- officers and audit --------------------------------------------------------------------


class Officer(Base):
    __tablename__ = "officers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Sessions carry the epoch they began in; logging out moves it on, ending them all.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="officer")


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    officer: Mapped[Officer] = relationship(back_populates="tokens")


class AuditEvent(Base):
    """Append-only: who did what, when. Rows are never updated or deleted."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WorkerLease(Base):
    """Running workers; on SQLite one worker per database file is enforced with this row."""

    __tablename__ = "worker_leases"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class HealthProbe(Base):
    """One row the readiness check writes, to prove the database takes writes."""

    __tablename__ = "health_probes"
    id: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime | None]


class AuditLogIsAppendOnly(RuntimeError):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_audit_edits(session: Session, _ctx: object, _instances: object) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise AuditLogIsAppendOnly("the audit log is append-only")
