"""A small in-memory model of what the engine should do (issue 14), beside the real one.

It knows the roster (who serves which zone at which tier), the alerts sent, each zone's
state and tier, who was asked, who acknowledged, and which numbers opted out. Each
step of the state machine asks it what should happen before driving the engine, and
the test compares the two afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.model.harness import Person

WAITING, ACKNOWLEDGED, UNREACHED = "waiting", "acknowledged", "unreached"
OPEN, COMPLETED, CANCELLED = "open", "completed", "cancelled"
DUTY = 999

#: Whole-message keywords (Twilio's, and the issue's): opt out, opt back in.
OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
OPT_IN = ("START", "UNSTOP", "YES")
#: Bare acknowledgements (no code).
BARE_ACKS = ("YES", "yes", "Sí", "OK", "SAFE", "Да", "是", "DONE 5 1")
#: Acknowledgements around a code.
CODE_ACKS = ("YES {code}", "{code} ok", "OK{code}", "Sí {code}", "SAFE {code}")
#: Messages that acknowledge nothing and change nothing but the inbox.
OTHER = ("HELP", "road to airport blocked", "NEED HELP", "who is this?")


@dataclass
class ModelZone:
    name: str
    tiers: list[int]  # the zone's chain: tiers with someone active
    state: str = WAITING
    at: int = 0  # index into tiers

    @property
    def tier(self) -> int:
        return DUTY if self.state == UNREACHED else self.tiers[self.at]


@dataclass
class ModelAlert:
    id: int
    code: str
    zones: dict[str, ModelZone]
    state: str = OPEN
    #: (volunteer, zone) -> tier: who was asked
    asked: dict[tuple[str, str], int] = field(default_factory=dict)
    acked: set[tuple[str, str]] = field(default_factory=set)
    #: zone states when it was cancelled: nothing may escalate afterwards
    frozen: dict[str, str] = field(default_factory=dict)
    updated: bool = False

    def rows_of(self, name: str) -> list[tuple[str, str]]:
        return [key for key in self.asked if key[0] == name]

    def waiting_on(self, name: str) -> bool:
        """The rule's "still waiting on this volunteer": a recipient of theirs not yet
        acknowledged, in a zone still waiting, of an alert being sent or active."""
        return self.state == OPEN and any(
            key not in self.acked and self.zones[key[1]].state == WAITING
            and self.asked[key] != DUTY for key in self.rows_of(name))

    def unacked(self, name: str) -> bool:
        return any(key not in self.acked for key in self.rows_of(name))


@dataclass
class Prediction:
    """What one inbound SMS should do."""

    ack: int | None = None  # the alert acknowledged
    also: set[int] = field(default_factory=set)  # also acceptable, where the rules allow
    ambiguous_codes: tuple[str, ...] = ()  # several waiting: nothing acked, codes listed
    opt: bool | None = None  # True: opted out, False: opted back in
    #: Rules this message exercises that the engine is known to break (see KNOWN).
    known: set[str] = field(default_factory=set)


#: Discrepancies known when this model was written (issue 14; being fixed), by tag. The
#: model keeps every rule; `ALN_MODEL_AVOID=tag,...` only steers exploration away from
#: inputs that exercise these, to look for other bugs behind them.
KNOWN: dict[str, str] = {}


class Model:
    def __init__(self, people: dict[str, Person], zones: list[str]) -> None:
        self.people = people
        self.zone_names = zones
        self.alerts: dict[int, ModelAlert] = {}
        self.opted_out: set[str] = set()  # volunteer names whose phone opted out
        self.duty = [p.name for p in people.values() if p.duty_officer]

    # --- roster facts ---------------------------------------------------------------------

    def chain(self, zone: str) -> list[int]:
        # Every volunteer of the sample zones used has an email path, which nothing in the
        # model's steps can kill or opt out: a tier with an active volunteer stays reachable.
        return sorted({p.zones[zone] for p in self.people.values() if zone in p.zones})

    def tier_members(self, zone: str, tier: int) -> list[str]:
        return sorted(p.name for p in self.people.values() if p.zones.get(zone) == tier)

    def by_phone(self, phone: str) -> Person | None:
        return next((p for p in self.people.values() if p.phone == phone), None)

    # --- steps ----------------------------------------------------------------------------

    def send(self, alert_id: int, code: str, zones: list[str]) -> None:
        alert = ModelAlert(alert_id, code, {z: ModelZone(z, self.chain(z)) for z in zones})
        for zone in alert.zones.values():
            self._ask(alert, zone)
        self.alerts[alert_id] = alert

    def _ask(self, alert: ModelAlert, zone: ModelZone) -> None:
        for name in self.tier_members(zone.name, zone.tier):
            alert.asked.setdefault((name, zone.name), zone.tier)

    def deadlines_due(self, alert_id: int | None) -> None:
        """Every waiting zone of the open alert(s) moves one tier on, or is unreached and
        its duty officers are asked."""
        for alert in self.alerts.values():
            if alert.state != OPEN or (alert_id is not None and alert.id != alert_id):
                continue
            for zone in alert.zones.values():
                if zone.state != WAITING:
                    continue
                if zone.at + 1 < len(zone.tiers):
                    zone.at += 1
                    self._ask(alert, zone)
                else:
                    zone.state = UNREACHED
                    for name in self.duty:
                        alert.asked.setdefault((name, zone.name), DUTY)
            self._maybe_complete(alert)

    def _maybe_complete(self, alert: ModelAlert) -> None:
        if alert.state == OPEN and all(z.state != WAITING for z in alert.zones.values()):
            alert.state = COMPLETED

    def cancel(self, alert_id: int) -> bool:
        """False when the engine must refuse (already cancelled)."""
        alert = self.alerts[alert_id]
        if alert.state == CANCELLED:
            return False
        alert.state = CANCELLED
        alert.frozen = {z.name: z.state for z in alert.zones.values()}
        return True

    def may_update(self, alert_id: int) -> bool:
        return self.alerts[alert_id].state != CANCELLED

    def with_code(self, code: str) -> list[ModelAlert]:
        return [a for a in self.alerts.values() if a.code == code]

    def predict(self, phone: str, body: str, code: str | None) -> Prediction:
        """What an inbound SMS should do (the issue's rules), before it is applied."""
        person = self.by_phone(phone)
        word = body.strip().upper()
        pred = Prediction()
        if word in OPT_OUT:
            known = {"opt-keywords"} if word in ("REVOKE", "OPTOUT") else set()
            return Prediction(opt=True, known=known) if person else pred
        if word in OPT_IN and word != "YES":
            return Prediction(opt=False) if person else pred
        if person is None or body in OTHER:
            return pred
        name = person.name
        if word == "YES":
            pred.opt = False  # Twilio's opt-in keyword: back in, and still an answer
            if name in self.opted_out:
                pred.known.add("yes-opt-in")
        if code is not None:
            alerts = [a for a in self.with_code(code) if a.rows_of(name)]
            if alerts:
                pred.ack = max(a.id for a in alerts)
                self._mark(pred, alerts)
            return pred
        waiting = [a for a in self.alerts.values() if a.waiting_on(name)]
        if len(waiting) == 1:
            pred.ack = waiting[0].id
            if any(a.unacked(name) and a.state != CANCELLED and a is not waiting[0]
                   for a in self.alerts.values()):
                pred.known.add("bare-ack-waiting")
        elif len(waiting) > 1:
            pred.ambiguous_codes = tuple(sorted(a.code for a in waiting))
        else:
            # Finished alerts count only when nothing is waiting: with one, the answer is
            # for it (again, if already given); with several, one they have not answered
            # yet may be meant, or none.
            others = [a for a in self.alerts.values() if a.rows_of(name)]
            if len(others) == 1:
                pred.ack = others[0].id
            else:
                # Any alert they have not answered may be meant (the engine also leaves out
                # an alert cancelled before it reached them), or none.
                pred.also = {a.id for a in others if a.unacked(name)}
                if others and not pred.also:
                    # Every one answered already: a repeat goes to the newest, changing
                    # nothing (`replies.inbound.choose`).
                    pred.also = {max(a.id for a in others)}
            self._mark(pred, others)
        self._mark(pred, [a for a in self.alerts.values() if a.rows_of(name)],
                   only_update=True)
        return pred

    def _mark(self, pred: Prediction, alerts: list[ModelAlert], only_update: bool = False) -> None:
        if not only_update and any(a.state == CANCELLED for a in alerts):
            pred.known.add("cancelled-replies")
        if any(a.updated for a in alerts):
            pred.known.add("update")

    def apply(self, phone: str, pred: Prediction, acked: int | None) -> None:
        """What the message did: `acked` is the engine's choice where the rules allow two."""
        if acked in pred.also:
            pred.ack = acked
        person = self.by_phone(phone)
        if person is None:
            return
        if pred.opt is True:
            self.opted_out.add(person.name)
        elif pred.opt is False:
            self.opted_out.discard(person.name)
        if pred.ack is None:
            return
        alert = self.alerts[pred.ack]
        for key in alert.rows_of(person.name):
            alert.acked.add(key)
            zone = alert.zones[key[1]]
            # Only a volunteer of the zone covers it (never a duty officer), and only while
            # the alert is open.
            if (alert.state == OPEN and zone.state == WAITING and alert.asked[key] != DUTY
                    and key[1] in person.zones):
                zone.state = ACKNOWLEDGED
        self._maybe_complete(alert)
