"""What the officer API answers: one model per response, so the schema states the contract.

Models of big documents (an alert's status, a report, a preview) name the fields clients
rely on and allow more: a new field is not a breaking change, a missing one is.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from dispatcher.web.paging import Page


class Open(BaseModel):
    """A document whose named fields are promised; others may be added."""

    model_config = ConfigDict(extra="allow")


class AlertSent(BaseModel):
    id: int
    reply_code: str | None
    preview: dict[str, Any]


class AlertPreview(Open):
    dry_run: Literal[True]
    zones: list[dict[str, Any]]


class AlertSummary(BaseModel):
    id: int
    title: str | None
    kind: str
    msg_type: str
    exercise: bool
    state: str
    reply_code: str | None
    sent_at: str | None


class AlertPage(Page):
    items: list[AlertSummary]


class AlertStatus(Open):
    id: int
    state: str
    reply_code: str | None
    recipients: list[dict[str, Any]]
    zones: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    unattached_replies: list[dict[str, Any]]


class Cancelled(BaseModel):
    id: int
    state: Literal["cancelled"]
    messages: int


class Updated(BaseModel):
    id: int
    version: int
    messages: int


class Attached(BaseModel):
    id: int
    recipient_id: int
    zone: str
    zone_acknowledged: bool


class Handled(BaseModel):
    id: int
    handled: Literal[True]


class RosterRow(Open):
    membership_id: int
    volunteer_id: int
    name: str
    zone: str
    rank: str
    tier: int
    phone: str | None
    email: str | None
    active: bool


class RosterPage(Page):
    items: list[RosterRow]


class Gaps(Open):
    """Each kind of gap, a list of what has it."""


class Report(Open):
    summary: dict[str, Any]
    zones: list[dict[str, Any]]


class InboxItem(BaseModel):
    id: int
    kind: str
    urgent: bool
    text: str | None
    sender: str | None
    alert_id: int | None
    zone_id: int | None
    at: str
    handled_at: str | None


class InboxPage(Page):
    items: list[InboxItem]


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    alert_id: int | None
    details: Any


class AuditPage(Page):
    items: list[AuditEntry]
