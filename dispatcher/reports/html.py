"""The report as one self-contained, printable HTML file: times in the post's time zone,
durations in whole seconds, landmarks, and tables that become cards on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from dispatcher.localtime import local_time
from dispatcher.reports.charts import ack_curve_svg, zone_bars_svg, zone_label
from dispatcher.reports.figures import build_report
from dispatcher.status import call_outcomes_line

#: How the report writes a moment (no fractions of a second, ever).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(default=True))


def whole_seconds(seconds: float | None) -> str:
    """A duration as the report shows it: "42 s", or "-" when there is none."""
    return "-" if seconds is None else f"{seconds:.0f} s"


#: Joins a column's values to escape them in one call: escaping maps each character on its
#: own and leaves this one as it is, so the escaped text splits back into the values.
_SEP = "\x1f"
#: The characters `escape` replaces.
_ESCAPED = ("&", "<", ">", '"', "'")


def escape_all(values: list[str]) -> list[str]:
    """Each value HTML-escaped, by one call to `escape` for the lot (a call a value was a
    third of a 60,000-volunteer report's HTML). A value holding the separator is the rare
    case escaped one by one."""
    joined = _SEP.join(values)
    if joined.count(_SEP) != len(values) - 1:
        return [str(escape(v)) for v in values]
    if not any(special in joined for special in _ESCAPED):
        return values  # nothing to escape: no new strings made and split again
    return str(escape(joined)).split(_SEP)


def volunteer_rows(volunteers: list[dict[str, Any]]) -> Markup:
    """The rows of the Volunteers table, every value escaped. Written here, not as a loop in
    the template: at 60,000 volunteers the template's loop took seconds, this a fraction."""
    if not volunteers:
        return Markup("")
    columns = escape_all([
        text for v in volunteers for text in (
            v["zone"], v["tier"], v["name"],
            ", ".join(v["channels_tried"]) if v["channels_tried"] else "-",
            v["delivery_outcome"],
            f" ({', '.join(v['error_codes'])})" if v["error_codes"] else "",
            whole_seconds(v["time_to_ack_seconds"]),
            v["reply"]["text"] if v["reply"] else "-", v["contact"] or "-")])
    cells = iter(columns)
    rows = [
        f'<tr><td data-label="Zone">{zone}</td>\n'
        f'<td data-label="Tier">{tier}</td><td data-label="Name">{name}</td>'
        f'<td data-label="Channels">{channels}</td>\n'
        f'<td data-label="Outcome">{outcome}{codes}\n'
        f'</td><td data-label="Time to acknowledge">{tta}</td>\n'
        f'<td data-label="Reply">{reply}</td><td data-label="Contact">{contact}</td></tr>'
        for zone, tier, name, channels, outcome, codes, tta, reply, contact
        in zip(cells, cells, cells, cells, cells, cells, cells, cells, cells, strict=True)]
    return Markup("".join(rows))  # noqa: S704 (each value escaped above)


def render_report_html(report: dict[str, Any]) -> str:
    s = report["summary"]
    tz = report["alert"].get("timezone") or "UTC"
    rate = f"{s['acknowledgement_rate'] * 100:.0f}%"
    cards: list[tuple[str, Any]] = [
        ("volunteers asked", s["recipients"]), ("reached", s["reached"]),
        ("acknowledged", f"{s['acknowledged']} ({rate})"),
        ("median time to acknowledge", whole_seconds(s["median_time_to_ack_seconds"])),
        ("90th percentile", whole_seconds(s["p90_time_to_ack_seconds"])),
        ("escalations", s["escalations"]), ("failovers", s["failovers"]),
        ("zones unreached", s["zones_unreached"]), ("help requests", s["help_requests"]),
    ]
    headcounts = bool(s.get("headcounts_reported"))
    if headcounts:
        cards.append(("citizens reached / need help",
                      f"{s['headcount_reached']} / {s['headcount_need_help']}"))
    calls = s.get("outcomes_by_channel", {}).get("voice")
    if calls:
        cards.append(("calls: " + call_outcomes_line(calls), sum(calls.values())))
    window = report["alert"]["ack_window_seconds"]
    curve = report["curve"]
    caption = (f"{len(curve)} of {s['recipients']} volunteers acknowledged"
               + (f", the last {whole_seconds(curve[-1]['seconds'])} after the alert."
                  if curve else ".") + f" Dashed line: the {window} s window.")
    env = _env.overlay()
    env.filters["local"] = lambda iso: local_time(iso, tz, TIME_FORMAT)
    env.filters["secs"] = whole_seconds
    return env.get_template("report.html").render(
        r=report, cards=cards, tz=tz, headcounts=headcounts, label=zone_label,
        curve_caption=caption, volunteer_rows=volunteer_rows(report["volunteers"]),
        curve_svg=Markup(ack_curve_svg(curve, s["recipients"], window)),  # noqa: S704
        bars_svg=Markup(zone_bars_svg(report["zones"], window))  # noqa: S704
        if report["zones"] else "")


def render_html(session: Session, alert_id: int) -> str:
    return render_report_html(build_report(session, alert_id))
