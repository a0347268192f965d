"""The report as CSV: one row per volunteer asked."""

from __future__ import annotations

from typing import Any

from dispatcher.csv_cells import csv_columns_text

COLUMNS = ["zone", "tier", "name", "state", "channels_tried", "delivery_outcome",
           "error_codes", "time_to_ack_seconds", "acknowledged_via", "reply", "contact"]


def render_csv(report: dict[str, Any]) -> str:
    # A column at a time (a list comprehension each, then checked in bulk), not a row at a
    # time: 60,000 rows of eleven cells looked at one by one took most of the CSV's time.
    vs = report["volunteers"]
    return csv_columns_text(COLUMNS, [
        [v["zone"] for v in vs], [v["tier"] for v in vs], [v["name"] for v in vs],
        [v["state"] for v in vs], [";".join(v["channels_tried"]) for v in vs],
        [v["delivery_outcome"] for v in vs], [";".join(v["error_codes"]) for v in vs],
        ["" if v["time_to_ack_seconds"] is None else v["time_to_ack_seconds"] for v in vs],
        [v["acknowledged_via"] or "" for v in vs],
        [v["reply"]["text"] if v["reply"] else "" for v in vs], [v["contact"] for v in vs]])
