"""Charts as inline SVG, written by hand: no external asset, printable, and each one an
image with a title and a text alternative for a screen reader. (They were drawn with
matplotlib, which cost an html report a second: 0.7 s to import, 0.3 s to draw.)

Colours are the Okabe–Ito palette (told apart by every common colour blindness), and no
chart says anything by colour alone: a zone never acknowledged is written "never", a line
has its own dash pattern. Every piece of text is escaped: zone names are untrusted."""

from __future__ import annotations

import math
from collections.abc import Iterable
from html import escape
from typing import Any

from dispatcher.domain import ZoneState

#: Colours of zone states in the charts (Okabe–Ito: blue, orange, vermillion).
STATE_COLOURS = {"acknowledged": "#0072B2", "waiting": "#E69F00", "unreached": "#D55E00"}
#: The acknowledgement curve and the window line (Okabe–Ito black and reddish purple).
CURVE_COLOUR, WINDOW_COLOUR = "#000000", "#CC79A7"
#: Lines other than data: the "volunteers asked" line, axes, grid, a state not listed.
GREY, TEXT_COLOUR = "#555555", "#111111"
#: Dash patterns: the window, the "volunteers asked" line.
WINDOW_DASH, ASKED_DASH = "6 4", "1.5 3"
#: What a zone without an acknowledgement is called in the chart.
NEVER, NOT_YET = "never", "not yet"
#: Chart width, and the room right of, above and below the plot, px (the room left of it
#: depends on its labels).
WIDTH, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 700, 24, 40, 52
#: The most ticks an axis gets (about half as many to this many).
TICKS = 8
#: Zone names longer than this are cut in the chart (whole in its text alternative).
NAME_CHARS = 28
#: Height of one zone's row in the bar chart, px.
ROW = 45


def nice_ticks(upper: float, count: int = TICKS) -> list[int]:
    """Whole-number ticks from 0 to at most `upper`, at a step of 1, 2 or 5 times a power
    of ten, at most `count` + 1 of them."""
    raw = max(upper / count, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return list(range(0, int(upper) + 1, int(step)))


def _num(value: float) -> str:
    """A coordinate, to a tenth of a pixel."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(key: str, height: float, title: str, description: str, body: Iterable[str]) -> str:
    """An `<svg>` with role="img", a <title> and a <desc> (both escaped) around `body`."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_num(height)}" '
            f'viewBox="0 0 {WIDTH} {_num(height)}" role="img" '
            f'aria-labelledby="{key}-title {key}-desc" font-family="sans-serif" '
            f'fill="{TEXT_COLOUR}"><title id="{key}-title">{escape(title)}</title>'
            f'<desc id="{key}-desc">{escape(description)}</desc>'
            f'<rect width="100%" height="100%" fill="#ffffff"/>{"".join(body)}</svg>')


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start",
          extra: str = "") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}"'
            f'{extra}>{escape(text)}</text>')


def _x_axis(left: float, right: float, bottom: float, top: float, end: float,
            label: str) -> list[str]:
    """Ticks, their vertical grid lines and the label of an x axis from 0 to `end`."""
    out = []
    for tick in nice_ticks(end):
        x = left + (right - left) * tick / end
        out.append(f'<line x1="{_num(x)}" y1="{_num(top)}" x2="{_num(x)}" y2="{_num(bottom)}" '
                   f'stroke="{GREY}" stroke-opacity="0.3"/>')
        out.append(_text(x, bottom + 16, f"{tick:,}", 11, "middle"))
    out.append(_text((left + right) / 2, bottom + 38, label, 12, "middle"))
    return out


def ack_curve_svg(curve: list[dict[str, Any]], recipients: int, window: int) -> str:
    """Cumulative acknowledgements over seconds since the alert was sent."""
    height, left = 320, 64
    right, top, bottom = WIDTH - PAD_RIGHT, PAD_TOP, 320 - PAD_BOTTOM
    end = max([window] + [p["seconds"] for p in curve]) * 1.15 or 1.0
    y_max = max(recipients, 1) * 1.1

    def px(seconds: float) -> float:
        return left + (right - left) * seconds / end

    def py(count: float) -> float:
        return bottom - (bottom - top) * count / y_max

    title = "Acknowledgements over time"
    body = [_text(WIDTH / 2, 24, title, 15, "middle")]
    body += _x_axis(left, right, bottom, top, end, "seconds since the alert was sent")
    for tick in nice_ticks(y_max):
        y = py(tick)
        body.append(f'<line x1="{left}" y1="{_num(y)}" x2="{right}" y2="{_num(y)}" '
                    f'stroke="{GREY}" stroke-opacity="0.3"/>')
        body.append(_text(left - 6, y + 4, f"{tick:,}", 11, "end"))
    body.append(_text(16, (top + bottom) / 2, "volunteers", 12, "middle",
                      f' transform="rotate(-90 16 {_num((top + bottom) / 2)})"'))
    body.append(f'<rect id="curve-plot" x="{left}" y="{top}" width="{right - left}" '
                f'height="{bottom - top}" fill="none" stroke="{GREY}"/>')
    # The step holds its last height to the chart's right edge (else the last
    # acknowledgement would be a step nobody sees). Points that fall on the same tenth of
    # a pixel are one step: 60,000 acknowledgements stay a path of a few thousand.
    # Only the last point of a step sets its step_count: its y is the only one worked out.
    path = [f"M{left} {_num(bottom)}"]
    last_x = _num(left)
    step_count = None
    for point in curve:
        x = _num(px(point["seconds"]))
        if x != last_x:
            if step_count is not None:
                path.append(f"V{_num(py(step_count))}")
            path.append(f"H{x}")
            last_x = x
        step_count = point["acknowledged"]
    if step_count is not None:
        path.append(f"V{_num(py(step_count))}")
    path.append(f"H{right}")
    body.append(f'<path id="curve-line" d="{"".join(path)}" fill="none" '
                f'stroke="{CURVE_COLOUR}" stroke-width="2"/>')
    asked_y = _num(py(recipients))
    body.append(f'<line id="curve-asked" x1="{left}" y1="{asked_y}" x2="{right}" '
                f'y2="{asked_y}" stroke="{GREY}" stroke-dasharray="{ASKED_DASH}"/>')
    window_x = _num(px(window))
    body.append(f'<line id="curve-window" x1="{window_x}" y1="{top}" x2="{window_x}" '
                f'y2="{bottom}" stroke="{WINDOW_COLOUR}" stroke-width="1.5" '
                f'stroke-dasharray="{WINDOW_DASH}"/>')
    body += _legend(right - 190, bottom - 66, [
        ("acknowledged", CURVE_COLOUR, "", 2.0),
        ("volunteers asked", GREY, ASKED_DASH, 1.0),
        ("acknowledgement window", WINDOW_COLOUR, WINDOW_DASH, 1.5)])
    if curve:
        desc = (f"{len(curve)} of {recipients} volunteers acknowledged: the first after "
                f"{curve[0]['seconds']:.0f} s, the last after {curve[-1]['seconds']:.0f} s "
                f"(window {window} s).")
    else:
        desc = f"None of {recipients} volunteers acknowledged (window {window} s)."
    return _svg("curve", height, title, desc, body)


def _legend(x: float, y: float, entries: list[tuple[str, str, str, float]]) -> list[str]:
    """A boxed legend: a sample of each line (its colour and dash) and its name."""
    out = [f'<rect x="{_num(x)}" y="{_num(y)}" width="182" height="{18 * len(entries) + 8}" '
           f'fill="#ffffff" fill-opacity="0.9" stroke="{GREY}" stroke-opacity="0.5"/>']
    for i, (label, colour, dash, width) in enumerate(entries):
        ly = y + 15 + 18 * i
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{_num(x + 8)}" y1="{_num(ly - 4)}" x2="{_num(x + 36)}" '
                   f'y2="{_num(ly - 4)}" stroke="{colour}" stroke-width="{width}"{dashed}/>')
        out.append(_text(x + 42, ly, label, 11))
    return out


def zone_label(zone: dict[str, Any]) -> str:
    """A zone's time to first acknowledgement in words: "20 s", "never" or "not yet"."""
    seconds = zone["time_to_ack_seconds"]
    if seconds is not None:
        return f"{seconds:.0f} s"
    return NOT_YET if zone["state"] == ZoneState.WAITING else NEVER


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def zone_bars_svg(zones: list[dict[str, Any]], window: int) -> str:
    """Time to first acknowledgement per zone. A zone never acknowledged has no bar (a
    full-length one would read as "slowest"): a hatched stub and the word "never"."""
    longest = max([z["time_to_ack_seconds"] or 0 for z in zones] + [window, 1])
    end = longest * 1.15
    # The names' column: about 7 px a character at 12 px, the longest name shown.
    left = 16 + 7 * max([len(_short(z["zone"])) for z in zones] + [4])
    right, top = WIDTH - PAD_RIGHT - 40, PAD_TOP
    bottom = top + ROW * len(zones) + 8
    height = bottom + PAD_BOTTOM

    def px(seconds: float) -> float:
        return left + (right - left) * seconds / end

    title = "Time to first acknowledgement, by zone"
    body = [_text(WIDTH / 2, 24, title, 15, "middle"), _hatches()]
    body += _x_axis(left, right, bottom, top, end,
                    f"seconds after the alert was sent (dashed line: the {window} s window)")
    body.append(f'<rect id="zone-bars-plot" x="{left}" y="{top}" width="{right - left}" '
                f'height="{bottom - top}" fill="none" stroke="{GREY}"/>')
    for i, z in enumerate(zones):
        seconds = z["time_to_ack_seconds"]
        colour = STATE_COLOURS.get(z["state"], GREY)
        y = top + 4 + ROW * i + ROW * 0.15
        bar_height = ROW * 0.7
        mid = y + bar_height / 2 + 4
        state = escape(str(z["state"]))
        body.append(_text(left - 6, mid, _short(z["zone"]), 12, "end"))
        if seconds is not None:
            width = px(seconds) - left
            body.append(f'<rect id="zone-bar-{i}" data-state="{state}" x="{left}" '
                        f'y="{_num(y)}" width="{_num(width)}" height="{_num(bar_height)}" '
                        f'fill="{colour}"/>')
            body.append(_text(left + width + 6, mid, zone_label(z), 12))
        else:  # a short hatched outline, then the word: pattern and text, not colour alone
            width = px(longest * 0.03) - left
            hatch = _HATCH_IDS.get(z["state"], "bars-hatch-other")
            body.append(f'<rect id="zone-bar-{i}" data-state="{state}" x="{left}" '
                        f'y="{_num(y)}" width="{_num(width)}" height="{_num(bar_height)}" '
                        f'fill="url(#{hatch})" stroke="{colour}" stroke-width="1.2"/>')
            body.append(_text(px(longest * 0.04), mid, zone_label(z), 12, "start",
                              ' font-weight="bold"'))
    window_x = _num(px(window))
    body.append(f'<line id="zone-bars-window" x1="{window_x}" y1="{top}" x2="{window_x}" '
                f'y2="{bottom}" stroke="{WINDOW_COLOUR}" stroke-width="1.5" '
                f'stroke-dasharray="{WINDOW_DASH}"/>')
    desc = "; ".join(f"{z['zone']}: {zone_label(z)}" for z in zones) + "."
    return _svg("bars", height, title, desc, body)


#: State -> the id of its cross-hatch pattern in the bar chart.
_HATCH_IDS = {state: f"bars-hatch-{state}" for state in STATE_COLOURS}


def _hatches() -> str:
    """A cross-hatch pattern in each state's colour (and grey), for the stubs."""
    out = ["<defs>"]
    for hatch_id, colour in [*((_HATCH_IDS[s], c) for s, c in STATE_COLOURS.items()),
                             ("bars-hatch-other", GREY)]:
        out.append(f'<pattern id="{hatch_id}" width="6" height="6" '
                   f'patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#ffffff"/>'
                   f'<path d="M0 0L6 6M6 0L0 6" stroke="{colour}" stroke-width="1"/></pattern>')
    out.append("</defs>")
    return "".join(out)
