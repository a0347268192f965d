"""Times as officers read them, on the dashboard and in the report: in the post's time
zone, to the whole second."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def local_time(iso: str | None, zone: str, fmt: str = "%H:%M:%S") -> str:
    """An ISO time in the post's time zone (the board's script redraws it live; this is
    what a page shows before its script runs)."""
    if not iso:
        return ""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.fromisoformat(iso).astimezone(tz).strftime(fmt)
