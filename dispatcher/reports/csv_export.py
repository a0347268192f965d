"""The report as CSV: one row per volunteer asked."""

from __future__ import annotations

from typing import Any

from dispatcher.csv_cells import csv_text

COLUMNS = ["zone", "tier", "name", "state", "channels_tried", "delivery_outcome",
           "error_codes", "time_to_ack_seconds", "acknowledged_via", "reply", "contact"]


def render_csv(report: dict[str, Any]) -> str:
    return csv_text(COLUMNS, ([
        v["zone"], v["tier"], v["name"], v["state"], ";".join(v["channels_tried"]),
        v["delivery_outcome"], ";".join(v["error_codes"]),
        "" if v["time_to_ack_seconds"] is None else v["time_to_ack_seconds"],
        v["acknowledged_via"] or "", v["reply"]["text"] if v["reply"] else "",
        v["contact"],
    ] for v in report["volunteers"]))
