"""Escalation policies: durations parsed, files read with their defaults, bad values refused
by name, and the policy copied onto an alert read back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.errors import InvalidInput, NotFound
from dispatcher.escalation.policy import EscalationPolicy, load_policy, parse_duration
from tests.conftest import CONFIG_DIR


def config_with(tmp_path: Path, name: str, text: str) -> Path:
    """A config directory holding one policy file `name`.toml (and a second, `other`)."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / f"{name}.toml").write_text(text, encoding="utf-8")
    (policies / "other.toml").write_text("", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("text", "seconds"), [
    ("2h", 7200), ("3m", 180), ("7s", 7), ("7", 7), ("1h1m1s", 3661), (" 1H 30M ", 5400),
    ("1s", 1),
])
def test_a_duration_counts_hours_minutes_and_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_a_duration_given_as_a_number_is_seconds_already() -> None:
    assert parse_duration(45) == 45


@pytest.mark.parametrize("text", ["", "   ", "soon", "5 minutes"])
def test_a_duration_that_is_not_one_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(InvalidInput, match=f"'{text}' is not a duration like 15m, 90s or 1h30m"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0m", "0h0m0s"])
def test_a_zero_duration_is_refused_as_zero(text: str) -> None:
    with pytest.raises(InvalidInput, match=f"duration '{text}' must be more than zero"):
        parse_duration(text)


def test_a_policy_file_with_nothing_in_it_is_the_default_policy(tmp_path: Path) -> None:
    config = config_with(tmp_path, "bare", "")
    assert load_policy(config, "bare") == EscalationPolicy(name="bare")
    assert EscalationPolicy(name="bare") == EscalationPolicy(
        ack_window_seconds=900, reminders=0, quorum=1, mode="any",
        notify_duty_officers=True, stand_down=False, name="bare")


def test_every_setting_of_a_policy_file_is_read(tmp_path: Path) -> None:
    config = config_with(tmp_path, "full", 'ack_window = "2m"\nreminders = 3\nquorum = 2\n'
                         'mode = "each"\nnotify_duty_officers = false\nstand_down = true\n')
    assert load_policy(config, "full") == EscalationPolicy(
        ack_window_seconds=120, reminders=3, quorum=2, mode="each",
        notify_duty_officers=False, stand_down=True, name="full")


def test_the_policy_read_by_default_is_the_default_file() -> None:
    policy = load_policy(CONFIG_DIR)
    assert policy.name == "default" and policy.ack_window_seconds == 900


def test_an_unknown_policy_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    config = config_with(tmp_path, "drill", "")
    with pytest.raises(NotFound,
                       match=r"escalation policy 'nope' not found \(known: drill, other\)"):
        load_policy(config, "nope")


def test_a_mode_other_than_any_or_each_is_refused(tmp_path: Path) -> None:
    config = config_with(tmp_path, "odd", 'mode = "all"\n')
    with pytest.raises(InvalidInput, match="mode must be 'any' or 'each', not 'all'"):
        load_policy(config, "odd")


def test_a_quorum_below_one_is_refused_and_one_is_taken(tmp_path: Path) -> None:
    config = config_with(tmp_path, "none", "quorum = 0\n")
    with pytest.raises(InvalidInput, match="quorum must be at least 1"):
        load_policy(config, "none")
    config_with(tmp_path, "one", "quorum = 1\n")
    assert load_policy(config, "one").quorum == 1


def test_a_policy_copied_onto_an_alert_reads_back_the_same() -> None:
    policy = EscalationPolicy(ack_window_seconds=60, reminders=2, quorum=3, mode="each",
                              notify_duty_officers=False, stand_down=True, name="x")
    stored = policy.to_dict()
    assert stored["quorum"] == 3 and stored["mode"] == "each"
    assert EscalationPolicy.from_dict(stored) == policy


def test_a_stored_policy_with_settings_we_no_longer_know_still_reads() -> None:
    stored = EscalationPolicy(quorum=2).to_dict() | {"retired_setting": 1}
    assert EscalationPolicy.from_dict(stored) == EscalationPolicy(quorum=2)


def test_an_alerts_own_window_replaces_the_policys_and_none_keeps_it() -> None:
    policy = EscalationPolicy(ack_window_seconds=600, quorum=2)
    assert policy.with_window(None) is policy
    assert policy.with_window(30) == EscalationPolicy(ack_window_seconds=30, quorum=2)


@pytest.mark.parametrize(("window", "reminders", "offsets"), [
    (60, 0, []), (60, 1, [30]), (60, 2, [20, 40]), (100, 2, [33, 67]),
])
def test_reminders_are_spread_evenly_across_the_window(
        window: int, reminders: int, offsets: list[int]) -> None:
    policy = EscalationPolicy(ack_window_seconds=window, reminders=reminders)
    assert policy.reminder_offsets() == offsets
