"""Named configuration files (policies, templates): a name is looked up, never a path.

An officer or an API caller chooses a policy or a template by name. The name is
matched against the files present, so `../../etc/passwd` is simply not a known name,
and an error lists the known names without echoing a path of this machine.
"""

from __future__ import annotations

import re
from pathlib import Path

from dispatcher.errors import NotFound

#: What a printable name looks like; anything else is not repeated back in an error.
_PRINTABLE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def known_names(directory: Path, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The names of the `*.toml` files in `directory`, sorted."""
    return sorted(p.stem for p in directory.glob("*.toml") if p.stem not in exclude)


def named_file(directory: Path, name: str, what: str,
               exclude: frozenset[str] = frozenset()) -> Path:
    """The file for `name` if it is one of the known names; NotFound listing them otherwise."""
    known = known_names(directory, exclude)
    if name in known:
        return directory / f"{name}.toml"
    shown = f"'{name}'" if _PRINTABLE_NAME.match(name) else "name"
    raise NotFound(f"{what} {shown} not found (known: {', '.join(known)})")
