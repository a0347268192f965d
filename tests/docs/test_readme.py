"""The README documents what a deployment can set."""

from __future__ import annotations

import re
from pathlib import Path

from dispatcher.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _settings_table() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def _env_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias])
        names.update(str(c) for c in choices if isinstance(c, str))
    return names


def test_sendgrid_webhook_max_age_is_in_the_settings_table() -> None:
    assert "`ALN_SENDGRID_WEBHOOK_MAX_AGE`" in _settings_table()


def test_every_aln_setting_is_in_the_settings_table() -> None:
    table = _settings_table()
    missing = sorted(n for n in _env_names()
                     if n.startswith("ALN_") and not re.search(rf"`{n}`", table))
    assert missing == []
