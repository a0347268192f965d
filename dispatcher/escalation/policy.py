"""Escalation policies: data in `config/policies/`, copied onto each alert when it is sent."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dispatcher.config_files import named_file
from dispatcher.errors import InvalidInput

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s?)?\s*$")


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
        return self if seconds is None else replace(self, ack_window_seconds=seconds)

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
        ack_window_seconds=parse_duration(data.get("ack_window", "15m")),
        reminders=int(data.get("reminders", 0)),
        quorum=quorum,
        mode=mode,
        notify_duty_officers=bool(data.get("notify_duty_officers", True)),
        stand_down=bool(data.get("stand_down", False)),
        name=name,
    )
