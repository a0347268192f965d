"""The report's two SVG charts say what the figures say: a bar per zone with its label,
"never" and "not yet" in words on a hatched stub, the window as a dashed line, the curve's
steps at the acknowledgements; and a hostile zone name stays text."""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from dispatcher.reports.charts import (
    STATE_COLOURS,
    WINDOW_COLOUR,
    ack_curve_svg,
    nice_ticks,
    zone_bars_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def parse(markup: str) -> Any:
    """The chart as XML (it must be well formed: it is inlined in the HTML as is)."""
    return etree.fromstring(markup.encode())


def texts(svg: Any) -> list[str]:
    return [t.text for t in svg.iter(f"{SVG}text")]


def _zone(name: str, state: str, seconds: float | None) -> dict[str, Any]:
    return {"zone": name, "state": state, "time_to_ack_seconds": seconds}


ZONES = [_zone("Oaxaca", "acknowledged", 20.0), _zone("Chiapas", "acknowledged", 130.0),
         _zone("Guerrero", "unreached", None), _zone("Puebla", "waiting", None)]


def test_zone_bars_have_a_bar_and_a_label_per_zone() -> None:
    svg = parse(zone_bars_svg(ZONES, 60))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "bars-title bars-desc"
    assert svg.find(f"{SVG}title").text == "Time to first acknowledgement, by zone"
    assert svg.find(f"{SVG}desc").text == (
        "Oaxaca: 20 s; Chiapas: 130 s; Guerrero: never; Puebla: not yet.")
    bars = [svg.find(f".//*[@id='zone-bar-{i}']") for i in range(len(ZONES))]
    assert all(b is not None for b in bars)
    plot = float(svg.find(".//*[@id='zone-bars-plot']").get("width"))
    widths = [float(b.get("width")) / plot for b in bars]
    # Lengths in proportion to the time (the axis runs to 1.15 times the longest).
    assert abs(widths[0] - 20 / (130 * 1.15)) < 0.002
    assert abs(widths[1] - 1 / 1.15) < 0.002
    # A zone nobody acknowledged is a hatched stub, never the longest bar.
    assert widths[2] < 0.05 and widths[3] < 0.05
    assert bars[0].get("fill") == STATE_COLOURS["acknowledged"]
    assert bars[2].get("fill") == "url(#bars-hatch-unreached)"
    assert bars[2].get("stroke") == STATE_COLOURS["unreached"]
    assert bars[3].get("fill") == "url(#bars-hatch-waiting)"
    assert svg.find(".//*[@id='bars-hatch-unreached']") is not None
    shown = texts(svg)
    for name in ("Oaxaca", "Chiapas", "Guerrero", "Puebla", "20 s", "130 s", "never",
                 "not yet"):
        assert name in shown
    # Zones top to bottom in the order given (the Zones table's).
    ys = [float(b.get("y")) for b in bars]
    assert ys == sorted(ys)


def test_zone_bars_draw_the_window_as_a_dashed_line() -> None:
    svg = parse(zone_bars_svg(ZONES, 60))
    line = svg.find(".//*[@id='zone-bars-window']")
    plot = svg.find(".//*[@id='zone-bars-plot']")
    left, width = float(plot.get("x")), float(plot.get("width"))
    assert line.get("stroke") == WINDOW_COLOUR and line.get("stroke-dasharray")
    assert abs((float(line.get("x1")) - left) / width - 60 / (130 * 1.15)) < 0.002
    assert any("the 60 s window" in t for t in texts(svg))


def test_hostile_zone_names_stay_text() -> None:
    zones = [_zone(HOSTILE, "acknowledged", 12.0), _zone('"><g onload=x>', "unreached", None)]
    markup = zone_bars_svg(zones, 60)
    assert "<script" not in markup and "<img" not in markup and "<g onload" not in markup
    svg = parse(markup)
    assert not list(svg.iter(f"{SVG}script"))
    assert HOSTILE in svg.find(f"{SVG}desc").text
    # Long names are cut in the chart, whole in its text alternative.
    assert any(t.startswith('<script>alert("x")') and t.endswith("…") for t in texts(svg))
    assert '"><g onload=x>' in texts(svg)


def test_the_curve_steps_up_at_each_acknowledgement() -> None:
    curve = [{"seconds": 10.0, "acknowledged": 1}, {"seconds": 20.0, "acknowledged": 2},
             {"seconds": 20.0, "acknowledged": 3}, {"seconds": 50.0, "acknowledged": 4}]
    svg = parse(ack_curve_svg(curve, 5, 60))
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Acknowledgements over time"
    assert svg.find(f"{SVG}desc").text == (
        "4 of 5 volunteers acknowledged: the first after 10 s, the last after 50 s "
        "(window 60 s).")
    plot = svg.find(".//*[@id='curve-plot']")
    left, top = float(plot.get("x")), float(plot.get("y"))
    width, height = float(plot.get("width")), float(plot.get("height"))
    steps = re.findall(r"([HV])([\d.]+)", svg.find(".//*[@id='curve-line']").get("d"))
    # Back to data: x in seconds (the axis runs to 1.15 times the window), y in volunteers
    # (the axis runs to 1.1 times those asked); two at 20 s are one step of two.
    seen = [(k, round((float(v) - left) / width * 60 * 1.15, 1)) if k == "H"
            else (k, round((top + height - float(v)) / height * 5 * 1.1, 1))
            for k, v in steps]
    assert seen == [("H", 10.0), ("V", 1.0), ("H", 20.0), ("V", 3.0), ("H", 50.0),
                    ("V", 4.0), ("H", 69.0)]
    window = svg.find(".//*[@id='curve-window']")
    assert window.get("stroke") == WINDOW_COLOUR and window.get("stroke-dasharray")
    asked = svg.find(".//*[@id='curve-asked']")
    assert asked.get("stroke-dasharray") and asked.get("stroke-dasharray") != window.get(
        "stroke-dasharray")
    for label in ("acknowledged", "volunteers asked", "acknowledgement window"):
        assert label in texts(svg)


def test_a_curve_of_many_acknowledgements_is_a_short_path() -> None:
    curve = [{"seconds": i / 1000, "acknowledged": i + 1} for i in range(60_000)]
    markup = ack_curve_svg(curve, 60_000, 60)
    assert len(markup) < 100_000
    assert parse(markup).find(f"{SVG}desc").text.startswith("60000 of 60000")


def test_no_acknowledgement_and_no_volunteer() -> None:
    svg = parse(ack_curve_svg([], 0, 60))
    assert svg.find(f"{SVG}desc").text == "None of 0 volunteers acknowledged (window 60 s)."


def test_ticks_are_round_numbers() -> None:
    assert nice_ticks(69) == [0, 10, 20, 30, 40, 50, 60]
    assert nice_ticks(66_000) == [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    assert nice_ticks(1.1) == [0, 1]
    assert nice_ticks(5.5) == [0, 1, 2, 3, 4, 5]
