"""Escalation policies: data in `config/policies/`, copied onto each alert when it is sent."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dispatcher.config_files import named_file
from dispatcher.errors import InvalidInput

# At most 9 digits a part: a longer number is no duration, and Python refuses to convert
# numbers of more than 4,300 digits at all.
_DURATION_RE = re.compile(
    r"^\s*(?:(\d{1,9})\s*h)?\s*(?:(\d{1,9})\s*m)?\s*(?:(\d{1,9})\s*s?)?\s*$")
#: Longest acknowledgement window: an alert nobody acknowledges for a week has failed.
MAX_ACK_WINDOW_SECONDS = 7 * 24 * 3600


def check_ack_window(seconds: int, shown: str | int | None = None) -> int:
    """`seconds`, if it is a usable acknowledgement window; InvalidInput otherwise."""
    if seconds > MAX_ACK_WINDOW_SECONDS:
        raise InvalidInput(f"acknowledgement window '{shown or seconds}' is longer than the "
                           f"longest allowed, 7 days ({MAX_ACK_WINDOW_SECONDS} s)")
    if seconds <= 0:
        raise InvalidInput(f"acknowledgement window '{shown or seconds}' must be more than zero")
    return seconds


def parse_duration(text: str | int) -> int:
    """Seconds from '15m', '4s', '1h30m' or a bare number of seconds."""
    if isinstance(text, int):
        return text
    m = _DURATION_RE.match(text.lower())
    if not m or not any(m.groups()):
        raise InvalidInput(f"'{text}' is not a duration like 15m, 90s or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InvalidInput(f"duration '{text}' must be more than zero")
    return total


@dataclass(frozen=True)
class EscalationPolicy:
    ack_window_seconds: int = 900
    reminders: int = 0
    quorum: int = 1
    mode: Literal["any", "each"] = "any"
    notify_duty_officers: bool = True
    stand_down: bool = False
    name: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EscalationPolicy:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def with_window(self, seconds: int | None) -> EscalationPolicy:
        if seconds is None:
            return self
        return replace(self, ack_window_seconds=check_ack_window(seconds, f"{seconds} s"))

    def reminder_offsets(self) -> list[int]:
        """Seconds after notification at which the same tier is reminded."""
        step = self.ack_window_seconds / (self.reminders + 1)
        return [round(step * (i + 1)) for i in range(self.reminders)]


def load_policy(config_dir: Path, name: str = "default") -> EscalationPolicy:
    path = named_file(config_dir / "policies", name, "escalation policy")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mode = data.get("mode", "any")
    if mode not in ("any", "each"):
        raise InvalidInput(f"policy '{name}': mode must be 'any' or 'each', not {mode!r}")
    quorum = int(data.get("quorum", 1))
    if quorum < 1:
        raise InvalidInput(f"policy '{name}': quorum must be at least 1")
    return EscalationPolicy(
        ack_window_seconds=check_ack_window(parse_duration(data.get("ack_window", "15m"))),
        reminders=int(data.get("reminders", 0)),
        quorum=quorum,
        mode=mode,
        notify_duty_officers=bool(data.get("notify_duty_officers", True)),
        stand_down=bool(data.get("stand_down", False)),
        name=name,
    )
