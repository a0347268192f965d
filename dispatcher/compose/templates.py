"""Message templates and fixed wording, loaded from `config/templates/`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dispatcher.config_files import named_file
from dispatcher.domain import AlertKind

#: The language used when a volunteer's languages have no wording.
FALLBACK_LANGUAGE = "en"
#: Files of `config/templates/` that are not message templates.
_NOT_TEMPLATES = frozenset({"messages", "whatsapp"})


@dataclass(frozen=True)
class Template:
    name: str
    kind: AlertKind
    #: {language: {"title", "actions", "sms"}}
    texts: dict[str, dict[str, str]]

    @property
    def languages(self) -> list[str]:
        return list(self.texts)


def load_template(config_dir: Path, name: str) -> Template:
    path = named_file(config_dir / "templates", name, "template", exclude=_NOT_TEMPLATES)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    kind = AlertKind(data.pop("kind", name))
    return Template(name=name, kind=kind, texts={k: v for k, v in data.items()
                                                 if isinstance(v, dict)})


@lru_cache(maxsize=8)
def _load_messages(path: Path, _mtime: float) -> dict[str, dict[str, str]]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def messages(config_dir: Path) -> dict[str, dict[str, str]]:
    path = config_dir / "templates" / "messages.toml"
    return _load_messages(path, path.stat().st_mtime)


def wording(config_dir: Path, language: str, key: str, **values: object) -> str:
    """One fixed phrase in `language` (English when missing), placeholders filled."""
    table = messages(config_dir)
    phrase = table.get(language, {}).get(key) or table[FALLBACK_LANGUAGE][key]
    return phrase.format(**values)


def pick_language(preferred: list[str], available: list[str], default: str) -> str:
    """The volunteer's first language that has a body, else the post's, else any."""
    for code in preferred:
        base = code.split("-")[0]
        if code in available:
            return code
        if base in available:
            return base
    if default in available:
        return default
    return FALLBACK_LANGUAGE if FALLBACK_LANGUAGE in available else available[0]
