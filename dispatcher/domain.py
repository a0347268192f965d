"""Domain vocabulary: the states and kinds every module speaks, with allowed transitions.

Each state machine (alert, alert zone, recipient, delivery, deadline) is an enum
with its allowed moves written once here; the storage models keep the enums as
such, and `dispatcher.lifecycle` is the one module that performs a move.
"""

from __future__ import annotations

import re
from enum import StrEnum


class AlertKind(StrEnum):
    SECURITY = "security"
    DEMONSTRATION = "demonstration"
    HEALTH = "health"
    WEATHER = "weather"
    ADMINISTRATIVE = "administrative"


class AlertState(StrEnum):
    DRAFT = "draft"
    SENDING = "sending"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


#: An alert's allowed moves. A draft is sent or discarded; an alert being sent becomes
#: active when the first message is handed off; it completes when no zone is waiting any
#: more (a forced alert to nobody may complete before anything was handed off); any
#: alert that is not already cancelled may be cancelled (a completed one tells everyone
#: reached to stand down).
ALERT_TRANSITIONS: dict[AlertState, frozenset[AlertState]] = {
    AlertState.DRAFT: frozenset({AlertState.SENDING, AlertState.CANCELLED}),
    AlertState.SENDING: frozenset({AlertState.ACTIVE, AlertState.COMPLETED,
                                   AlertState.CANCELLED}),
    AlertState.ACTIVE: frozenset({AlertState.COMPLETED, AlertState.CANCELLED}),
    AlertState.COMPLETED: frozenset({AlertState.CANCELLED}),
    AlertState.CANCELLED: frozenset(),
}

#: Alert states in which a zone's chain may still move and a bare reply is awaited.
OPEN_ALERT_STATES = (AlertState.SENDING, AlertState.ACTIVE)
#: Alert states after which nothing more happens on its own.
FINISHED_ALERT_STATES = (AlertState.COMPLETED, AlertState.CANCELLED)


class MsgType(StrEnum):
    ALERT = "alert"
    UPDATE = "update"
    CANCEL = "cancel"


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    #: A phone call that reads the alert and asks for a key press (same E.164 number as
    #: the SMS path, or a landline, which only a call can reach).
    VOICE = "voice"
    EMAIL = "email"


#: Channels an alert uses only when asked (`--channel voice`, a policy step): calling
#: every volunteer at once is never the default.
ON_REQUEST_CHANNELS = frozenset({Channel.VOICE})


#: Channels reached at a phone number (the roster's `phone` column).
PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.VOICE})
#: Channels that carry a text to a phone: the number must be a mobile.
TEXT_PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP})
#: What an alert (or a policy without steps) uses at once: every path but a call, which
#: only a policy step asks for.
MESSAGE_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)


class RecipientState(StrEnum):
    PENDING = "pending"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A recipient's allowed moves. Escalated and failed are not an end: a volunteer who
#: answers after their duty passed on still counts as acknowledged, and a volunteer
#: whose first path failed may be reached on another.
RECIPIENT_TRANSITIONS: dict[RecipientState, frozenset[RecipientState]] = {
    RecipientState.PENDING: frozenset(
        {RecipientState.NOTIFIED, RecipientState.ACKNOWLEDGED, RecipientState.FAILED,
         RecipientState.CANCELLED, RecipientState.ESCALATED}
    ),
    RecipientState.NOTIFIED: frozenset(
        {RecipientState.ACKNOWLEDGED, RecipientState.ESCALATED, RecipientState.FAILED,
         RecipientState.CANCELLED}
    ),
    RecipientState.ESCALATED: frozenset({RecipientState.ACKNOWLEDGED, RecipientState.CANCELLED}),
    RecipientState.FAILED: frozenset({RecipientState.ACKNOWLEDGED, RecipientState.NOTIFIED}),
    RecipientState.ACKNOWLEDGED: frozenset(),
    RecipientState.CANCELLED: frozenset({RecipientState.ACKNOWLEDGED}),
}


class ZoneState(StrEnum):
    WAITING = "waiting"
    ACKNOWLEDGED = "acknowledged"
    UNREACHED = "unreached"


#: A zone waits until a volunteer of it covers it or its chain runs out.
ZONE_TRANSITIONS: dict[ZoneState, frozenset[ZoneState]] = {
    ZoneState.WAITING: frozenset({ZoneState.ACKNOWLEDGED, ZoneState.UNREACHED}),
    ZoneState.ACKNOWLEDGED: frozenset(),
    ZoneState.UNREACHED: frozenset(),
}


class DeliveryState(StrEnum):
    """Where one message to one contact path stands; ordered by progress."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker, handed to the provider or about to be
    ACCEPTED = "accepted"  # provider took it (Twilio queued/accepted, SendGrid 202)
    SENT = "sent"  # a call: initiated or ringing
    ANSWERED = "answered"  # a call picked up (in progress); it ends delivered or machine
    DELIVERED = "delivered"  # a call: completed with a person on the line
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    NO_ANSWER = "no_answer"  # a call rang out
    BUSY = "busy"  # a call found the line busy
    MACHINE = "machine"  # a call answered by voicemail: a short message was left
    CANCELLED = "cancelled"


#: Progress rank of delivery states: receipts only ever move a delivery forward.
DELIVERY_RANK: dict[DeliveryState, int] = {
    DeliveryState.PENDING: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.ACCEPTED: 2,
    DeliveryState.SENT: 3,
    DeliveryState.ANSWERED: 4,
    DeliveryState.DELIVERED: 5,
    DeliveryState.UNDELIVERED: 6,
    DeliveryState.FAILED: 6,
    DeliveryState.BOUNCED: 6,
    DeliveryState.NO_ANSWER: 6,
    DeliveryState.BUSY: 6,
    DeliveryState.MACHINE: 6,
    DeliveryState.CANCELLED: 7,
}

#: States after which the path is known dead for this message.
DEAD_DELIVERY_STATES = frozenset(
    {DeliveryState.UNDELIVERED, DeliveryState.FAILED, DeliveryState.BOUNCED}
)


#: A call's ends in which nobody took the message: the path is alive (no failover, the
#: contact is not marked dead), the volunteer simply did not confirm; escalation follows
#: when the acknowledgement window passes.
UNANSWERED_DELIVERY_STATES = frozenset(
    {DeliveryState.NO_ANSWER, DeliveryState.BUSY, DeliveryState.MACHINE}
)

#: Terminal delivery states: nothing moves a delivery out of them.
FINAL_DELIVERY_STATES = (DEAD_DELIVERY_STATES | UNANSWERED_DELIVERY_STATES
                         | {DeliveryState.DELIVERED, DeliveryState.CANCELLED})


def _delivery_transitions() -> dict[DeliveryState, frozenset[DeliveryState]]:
    """Receipts move a delivery forward by rank; the outbox also claims a row (again,
    after a dead claimer's lease ran out), puts it back for a later retry, or drops it."""
    moves: dict[DeliveryState, set[DeliveryState]] = {s: set() for s in DeliveryState}
    for current in DeliveryState:
        if current in FINAL_DELIVERY_STATES:
            continue
        moves[current] |= {new for new in DeliveryState
                           if DELIVERY_RANK[new] > DELIVERY_RANK[current]}
    moves[DeliveryState.SENDING] |= {DeliveryState.SENDING, DeliveryState.PENDING}
    return {state: frozenset(targets) for state, targets in moves.items()}


def delivery_can_move(current: DeliveryState, new: DeliveryState) -> bool:
    """True when a receipt saying `new` may replace `current` (never backwards)."""
    if current == new:
        return False
    if current in FINAL_DELIVERY_STATES:
        # A late "delivered" after "undelivered" is a provider reordering: the first final
        # news stands (a call's "ringing" after its "no-answer" changes nothing either).
        return False
    return DELIVERY_RANK[new] > DELIVERY_RANK[current]


DELIVERY_TRANSITIONS = _delivery_transitions()


class DeliveryPurpose(StrEnum):
    ALERT = "alert"
    FAILOVER = "failover"  # the alert again on another channel after a dead path
    REMINDER = "reminder"
    UPDATE = "update"
    CANCEL = "cancel"
    STAND_DOWN = "stand_down"
    UNREACHED = "unreached"  # duty officer told a zone's chain is exhausted


class DeadlineKind(StrEnum):
    ESCALATE = "escalate"
    REMINDER = "reminder"
    #: A later step of the policy (a call after 5 minutes): more channels, same tier.
    STEP = "step"
    #: A large alert's first wave of one zone, still to be written (`dispatch.fill`).
    FILL = "fill"


class DeadlineState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    CANCELLED = "cancelled"


#: A deadline is claimed (again, once a dead claimer's lease ran out), then fired or
#: found obsolete; an acknowledgement or a cancel may cancel it before it is claimed.
DEADLINE_TRANSITIONS: dict[DeadlineState, frozenset[DeadlineState]] = {
    DeadlineState.PENDING: frozenset({DeadlineState.CLAIMED, DeadlineState.CANCELLED}),
    DeadlineState.CLAIMED: frozenset({DeadlineState.CLAIMED, DeadlineState.DONE,
                                      DeadlineState.CANCELLED}),
    DeadlineState.DONE: frozenset(),
    DeadlineState.CANCELLED: frozenset(),
}


class ResponseKind(StrEnum):
    ACK = "ack"
    SAFE = "safe"
    HELP = "help"
    HEADCOUNT = "headcount"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    INFO = "info"
    FIELD_REPORT = "field_report"
    UNPARSED = "unparsed"
    #: An acknowledgement several alerts were waiting for: shown on each, for an officer
    #: to attach to the right one.
    AMBIGUOUS = "ambiguous"


class Role(StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    VIEWER = "viewer"


class VolunteerKind(StrEnum):
    CLV = "clv"
    DUTY_OFFICER = "duty_officer"


#: Tier number given to the duty officers at the end of every zone's chain.
DUTY_OFFICER_TIER = 999

_RANK_RE = re.compile(r"^(primary|alternate(\d+))$")


def rank_to_tier(rank: str) -> int:
    """'primary' -> 0, 'alternate1' -> 1, ...; ValueError names what is allowed."""
    m = _RANK_RE.match(rank.strip().lower())
    if not m:
        raise ValueError(f"rank {rank!r} is not 'primary' or 'alternateN' (N = 1, 2, ...)")
    if m.group(1) == "primary":
        return 0
    n = int(m.group(2))
    if n < 1:
        raise ValueError(f"rank {rank!r}: alternates are numbered from 1")
    return n


def tier_name(tier: int) -> str:
    if tier == DUTY_OFFICER_TIER:
        return "duty officer"
    return "primary" if tier == 0 else f"alternate{tier}"
