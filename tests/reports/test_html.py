"""The Volunteers table written in Python is, byte for byte, what the template's loop wrote
(kept below as the oracle), escaping included."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from dispatcher.domain import DeliveryState
from dispatcher.reports.html import escape_all, volunteer_rows, whole_seconds

#: The template's loop over the volunteers before `volunteer_rows` replaced it.
ORACLE_LOOP = """{% for v in r.volunteers %}<tr><td data-label="Zone">{{ v.zone }}</td>
<td data-label="Tier">{{ v.tier }}</td><td data-label="Name">{{ v.name }}</td><td data-label="Channels">{{ v.channels_tried | join(', ') or '-' }}</td>
<td data-label="Outcome">{{ v.delivery_outcome }}{% if v.error_codes %} ({{ v.error_codes | join(', ') }}){% endif %}
</td><td data-label="Time to acknowledge">{{ v.time_to_ack_seconds | secs }}</td>
<td data-label="Reply">{{ v.reply.text if v.reply else '-' }}</td><td data-label="Contact">{{ v.contact or '-' }}</td></tr>{% endfor %}"""  # noqa: E501


def _volunteer(**changes: Any) -> dict[str, Any]:
    row = {"name": "Ana Morales", "zone": "Chiapas", "tier": "primary",
           "state": "acknowledged", "channels_tried": ["email", "sms"],
           "delivery_outcome": DeliveryState.DELIVERED, "error_codes": [],
           "time_to_ack_seconds": 41.6, "acknowledged_via": "sms",
           "reply": {"kind": "ack", "text": "YES 1000"}, "contact": "+52******0000",
           "skipped": []}
    return {**row, **changes}


def test_volunteer_rows_equal_the_template_loop() -> None:
    volunteers = [
        _volunteer(),
        _volunteer(name="<b>O'Brien & \"Co\"</b>", zone="Estado de México & <Sur>"),
        _volunteer(channels_tried=[], delivery_outcome="not sent", time_to_ack_seconds=None,
                   reply=None, contact=""),
        _volunteer(delivery_outcome=DeliveryState.FAILED, error_codes=["<30003>", "a&b"],
                   reply={"kind": "help", "text": "HELP <script>x</script> 'y'"}),
        _volunteer(reply={"kind": "ack", "text": ""}, tier="alternate2",
                   channels_tried=["sms", "voice"], time_to_ack_seconds=0.4),
        _volunteer(),  # a repeat: the escaped values kept for it must come out the same
        # The separator `escape_all` joins a column with, inside a value: escaped one by one.
        _volunteer(name="a\x1f<b>", reply={"kind": "ack", "text": "\x1f&\x1f"}),
    ]
    env = Environment(autoescape=True)
    env.filters["secs"] = whole_seconds
    expected = env.from_string(ORACLE_LOOP).render(r={"volunteers": volunteers})
    assert str(volunteer_rows(volunteers)) == expected
    assert "&lt;b&gt;O&#39;Brien &amp; &#34;Co&#34;&lt;/b&gt;" in expected


def test_escape_all_escapes_each_value() -> None:
    values = ["<a>", "", "O'Brien & co", '"q"', "plain"]
    expected = ["&lt;a&gt;", "", "O&#39;Brien &amp; co", "&#34;q&#34;", "plain"]
    assert escape_all(values) == expected
    assert escape_all(["x\x1fy<", "<"]) == ["x\x1fy&lt;", "&lt;"]
    assert escape_all([]) == []
    assert volunteer_rows([]) == ""
