"""Policy and template names are names, never paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dispatcher.compose.templates import load_template
from dispatcher.errors import NotFound
from dispatcher.escalation.policy import load_policy
from tests.conftest import CONFIG_DIR


def _relative_name(target: Path, start: Path) -> str:
    return os.path.relpath(target, start).removesuffix(".toml")


def test_a_policy_name_that_is_a_path_reads_nothing_and_echoes_no_path(tmp_path: Path) -> None:
    planted = tmp_path / "x.toml"
    planted.write_text('ack_window = "1s"\n', encoding="utf-8")
    name = _relative_name(planted, CONFIG_DIR / "policies")
    with pytest.raises(NotFound) as err:
        load_policy(CONFIG_DIR, name)
    message = str(err.value)
    assert "known: default, demo, drill" in message
    assert str(tmp_path) not in message and "/" not in message and ".." not in message


def test_a_template_name_that_is_a_path_reads_nothing_and_echoes_no_path(
        tmp_path: Path) -> None:
    planted = tmp_path / "x.toml"
    planted.write_text('kind = "security"\n[en]\nsms = "planted"\n', encoding="utf-8")
    name = _relative_name(planted, CONFIG_DIR / "templates")
    with pytest.raises(NotFound) as err:
        load_template(CONFIG_DIR, name)
    message = str(err.value)
    assert "known: administrative, demonstration, health, security, weather" in message
    assert str(tmp_path) not in message and "/" not in message


def test_known_names_still_load() -> None:
    assert load_policy(CONFIG_DIR, "drill").name == "drill"
    assert load_template(CONFIG_DIR, "health").name == "health"
    with pytest.raises(NotFound, match="template 'messages' not found"):
        load_template(CONFIG_DIR, "messages")
