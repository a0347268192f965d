"""Escalation policies: data in `config/policies/`, copied onto each alert when it is sent."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dispatcher.config_files import named_file
from dispatcher.domain import MESSAGE_CHANNELS, Channel
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
class Step:
    """One step of a tier: these channels, `delay_seconds` after the tier was asked."""

    channels: tuple[str, ...]
    delay_seconds: int = 0


#: What a policy without steps does (and every alert frozen before steps existed): every
#: message channel at once, then the next tier after the window.
LEGACY_STEPS = (Step(tuple(c.value for c in MESSAGE_CHANNELS), 0),)


@dataclass(frozen=True)
class EscalationPolicy:
    ack_window_seconds: int = 900
    reminders: int = 0
    quorum: int = 1
    mode: Literal["any", "each"] = "any"
    notify_duty_officers: bool = True
    stand_down: bool = False
    name: str = "default"
    #: The steps of every tier; empty: `LEGACY_STEPS`.
    steps: tuple[Step, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [{"channels": list(s.channels), "delay_seconds": s.delay_seconds}
                         for s in self.steps]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EscalationPolicy:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        # A policy frozen on an alert before steps existed has none: it behaves as before.
        known["steps"] = tuple(Step(tuple(s["channels"]), int(s.get("delay_seconds", 0)))
                               for s in known.get("steps") or ())
        return cls(**known)

    def tier_steps(self) -> tuple[Step, ...]:
        return self.steps or LEGACY_STEPS

    def step_channels(self, index: int) -> frozenset[str]:
        """The channels step `index` of a tier uses (0: those asked at once)."""
        steps = self.tier_steps()
        return frozenset(steps[index].channels) if 0 <= index < len(steps) else frozenset()

    def asking_at_once(self, channels: Sequence[str]) -> EscalationPolicy:
        """This policy with `channels` added to every tier's first step (a call the officer
        asked for by name goes at once, not after the policy's delay)."""
        first, *rest = self.tier_steps()
        added = tuple(c for c in channels if c not in first.channels)
        return replace(self, steps=(replace(first, channels=first.channels + added), *rest))

    def with_window(self, seconds: int | None) -> EscalationPolicy:
        if seconds is None:
            return self
        window = check_ack_window(seconds, f"{seconds} s")
        # A step due after the window would come after the next tier: it is dropped.
        steps = tuple(s for s in self.steps if s.delay_seconds < window)
        return replace(self, ack_window_seconds=window, steps=steps)

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
    window = check_ack_window(parse_duration(data.get("ack_window", "15m")))
    return EscalationPolicy(
        ack_window_seconds=window,
        reminders=int(data.get("reminders", 0)),
        quorum=quorum,
        mode=mode,
        notify_duty_officers=bool(data.get("notify_duty_officers", True)),
        stand_down=bool(data.get("stand_down", False)),
        name=name,
        steps=parse_steps(name, data.get("steps", []), window),
    )


def parse_steps(name: str, raw: Any, window: int) -> tuple[Step, ...]:
    """`[[steps]]` tables: `channels` (a list of channel names) and `after` (a duration,
    "0s" for the first); InvalidInput names the policy, the step and what is wrong."""
    if not isinstance(raw, list):
        raise InvalidInput(f"policy '{name}': steps must be a list of [[steps]] tables")
    steps: list[Step] = []
    known = ", ".join(c.value for c in Channel)
    for n, item in enumerate(raw, 1):
        where = f"policy '{name}', step {n}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: must be a table with channels and after")
        unknown = sorted(set(item) - {"channels", "after"})
        if unknown:
            raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)} "
                               "(a step has channels and after)")
        channels = item.get("channels")
        if not isinstance(channels, list) or not channels:
            raise InvalidInput(f"{where}: channels must be a non-empty list ({known})")
        for c in channels:
            if c not in {ch.value for ch in Channel}:
                raise InvalidInput(f"{where}: '{c}' is not a channel ({known})")
        after = item.get("after", "0s")
        delay = 0 if after in (0, "0", "0s", "0m") else parse_duration(after)
        if n == 1 and delay:
            raise InvalidInput(f"{where}: the first step goes at once (after = \"0s\")")
        if steps and delay <= steps[-1].delay_seconds:
            raise InvalidInput(f"{where}: after '{after}' must be later than step {n - 1}")
        if delay >= window:
            raise InvalidInput(f"{where}: after '{after}' is not before the end of the "
                               f"acknowledgement window ({window} s): it would never run")
        steps.append(Step(tuple(dict.fromkeys(channels)), delay))
    return tuple(steps)
