"""The report as one self-contained, printable HTML file."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from dispatcher.reports.charts import STATE_COLOURS, ack_curve_svg, zone_bars_svg
from dispatcher.reports.figures import build_report
from dispatcher.status import call_outcomes_line

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ALN report: alert {{ r.alert.id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; color: #111;
       padding: 0 1rem; }
.exercise { background: #b00020; color: #fff; padding: .3rem .6rem; font-weight: bold; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { border: 1px solid #ccc; border-radius: .4rem; padding: .5rem .8rem; min-width: 8rem; }
.card b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1.2rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .4rem; text-align: left; }
th { background: #f0f0f0; }
.critical { color: #b00020; font-weight: bold; } .warning { color: #8a5a00; }
svg { max-width: 100%; height: auto; }
@media print { .card { break-inside: avoid; } section { break-inside: avoid-page; } }
</style></head><body>
{% if r.alert.exercise %}<p class="exercise">EXERCISE</p>{% endif %}
<h1>{{ r.alert.title }}</h1>
<p>{{ r.alert.post }} · alert {{ r.alert.id }} ({{ r.alert.kind }}, code {{ r.alert.reply_code }})
 · sent {{ r.alert.sent_at }} · window {{ r.alert.ack_window_seconds }} s · {{ r.alert.state }}</p>
{% if r.versions | length > 1 %}<section id="versions"><h2>Versions</h2><ol>
{% for v in r.versions %}<li>{{ v.msg_type }} · {{ v.sent_at[:19] }} · {{ v.by }} ·
{{ v.messages }} message(s){% if v.number > 1 %}: {{ v.body }}{% endif %}</li>{% endfor %}
</ol></section>{% endif %}
<section id="summary"><h2>Summary</h2><div class="cards">
{% for label, value in cards %}<div class="card"><b>{{ value }}</b>{{ label }}</div>{% endfor %}
</div></section>
<section id="curve"><h2>Acknowledgements over time</h2>{{ curve_svg }}</section>
<section id="zone-bars"><h2>Time to acknowledge, by zone</h2>{{ bars_svg }}</section>
<section><h2>Zones</h2><table id="zones"><thead><tr><th>Zone</th><th>State</th>
<th>Targeted</th><th>Reached</th><th>Acknowledged</th><th>Time to ack (s)</th>
<th>Deepest tier</th><th>Escalations</th><th>Headcount (reached / need help)</th></tr></thead>
<tbody>{% for z in r.zones %}<tr data-zone="{{ z.zone }}" data-state="{{ z.state }}">
<td>{{ z.zone }}</td><td style="color: {{ colours.get(z.state, '#111') }}">{{ z.state }}</td>
<td>{{ z.targeted }}</td><td>{{ z.reached }}</td><td>{{ 'yes' if z.acknowledged else 'no' }}</td>
<td>{{ z.time_to_ack_seconds if z.time_to_ack_seconds is not none else '-' }}</td>
<td>{{ z.deepest_tier or '-' }}</td><td>{{ z.escalations }}</td>
<td>{{ z.headcount_reached }} / {{ z.headcount_need_help }}</td></tr>{% endfor %}</tbody></table>
</section>
<section><h2>Findings: fix before a real crisis</h2><ul id="findings">
{% for f in r.findings %}<li class="{{ f.severity }}">{{ f.severity }}: {{ f.message }}</li>
{% else %}<li>No gaps found.</li>{% endfor %}</ul></section>
<section><h2>Volunteers</h2><table id="volunteers"><thead><tr><th>Zone</th><th>Tier</th>
<th>Name</th><th>Channels</th><th>Outcome</th><th>Time to ack (s)</th><th>Reply</th>
<th>Contact</th></tr></thead><tbody>{% for v in r.volunteers %}<tr><td>{{ v.zone }}</td>
<td>{{ v.tier }}</td><td>{{ v.name }}</td><td>{{ v.channels_tried | join(', ') }}</td>
<td>{{ v.delivery_outcome }}{% if v.error_codes %} ({{ v.error_codes | join(', ') }}){% endif %}
</td><td>{{ v.time_to_ack_seconds if v.time_to_ack_seconds is not none else '-' }}</td>
<td>{{ v.reply.text if v.reply else '' }}</td><td>{{ v.contact }}</td></tr>{% endfor %}
</tbody></table></section>
</body></html>
"""
_env = Environment(autoescape=select_autoescape(default=True))


def render_report_html(report: dict[str, Any]) -> str:
    s = report["summary"]
    rate = f"{s['acknowledgement_rate'] * 100:.0f}%"
    median = s["median_time_to_ack_seconds"]
    p90 = s["p90_time_to_ack_seconds"]
    cards = [
        ("volunteers asked", s["recipients"]), ("reached", s["reached"]),
        ("acknowledged", f"{s['acknowledged']} ({rate})"),
        ("median time to ack", f"{median:.0f} s" if median is not None else "-"),
        ("90th percentile", f"{p90:.0f} s" if p90 is not None else "-"),
        ("escalations", s["escalations"]), ("failovers", s["failovers"]),
        ("zones unreached", s["zones_unreached"]), ("help requests", s["help_requests"]),
        ("citizens reached / need help",
         f"{s['headcount_reached']} / {s['headcount_need_help']}"),
    ]
    calls = s.get("outcomes_by_channel", {}).get("voice")
    if calls:
        cards.append(("calls: " + call_outcomes_line(calls), sum(calls.values())))
    window = report["alert"]["ack_window_seconds"]
    return _env.from_string(_TEMPLATE).render(
        r=report, cards=cards, colours=STATE_COLOURS,
        curve_svg=Markup(ack_curve_svg(report["curve"], s["recipients"], window)),  # noqa: S704
        bars_svg=Markup(zone_bars_svg(report["zones"], window)) if report["zones"]  # noqa: S704
        else "")


def render_html(session: Session, alert_id: int) -> str:
    return render_report_html(build_report(session, alert_id))
