"""The sample rosters (config/rosters/), with their terms moved to the clock's today.

A sample roster's terms are written around one day, `SAMPLE_ROSTER_DAY`: on it, one term
has ended, one ends within the month and the rest run into the next year. The demo and
the tests import it with every term moved by as many days as today is past that day, so
they see the same network next year as this year, instead of one whose terms have all
ended.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from dispatcher.crypto import Vault
from dispatcher.db import db_today
from dispatcher.models import Post
from dispatcher.roster.importer import ImportResult, import_roster

#: The day the sample rosters' terms are written around.
SAMPLE_ROSTER_DAY = date(2026, 11, 24)
#: The roster columns that hold dates.
TERM_COLUMNS = ("term_start", "term_end")


def shift_terms(text: str, today: date, written_for: date = SAMPLE_ROSTER_DAY) -> str:
    """The roster CSV `text` with every term moved by (today - written_for) days; other
    values, and dates that do not parse (left for the importer to name), unchanged."""
    delta = timedelta(days=(today - written_for).days)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or []), lineterminator="\n")
    writer.writeheader()
    for row in reader:
        for column in TERM_COLUMNS:
            try:
                row[column] = (date.fromisoformat(row[column].strip()) + delta).isoformat()
            except (KeyError, AttributeError, ValueError):
                pass
        writer.writerow(row)
    return out.getvalue()


def import_sample_roster(session: Session, vault: Vault, post: Post, path: Path, *,
                         actor: str = "cli", today: date | None = None) -> ImportResult:
    """Import the sample roster at `path` with its terms moved to `today` (by default the
    database clock's, in the post's time zone)."""
    today = today or db_today(session, post.timezone)
    text = shift_terms(path.read_text(encoding="utf-8"), today)
    return import_roster(session, vault, post, path, actor=actor, text=text)
