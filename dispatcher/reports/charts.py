"""Charts as inline SVG (matplotlib, Agg backend): no external asset, printable, and each
one an image with a title and a text alternative for a screen reader.

Colours are the Okabe–Ito palette (told apart by every common colour blindness), and no
chart says anything by colour alone: a zone never acknowledged is written "never", a line
has its own dash pattern."""

from __future__ import annotations

import io
from html import escape
from typing import Any

from dispatcher.domain import ZoneState

#: Colours of zone states in the charts (Okabe–Ito: blue, orange, vermillion).
STATE_COLOURS = {"acknowledged": "#0072B2", "waiting": "#E69F00", "unreached": "#D55E00"}
#: The acknowledgement curve and the window line (Okabe–Ito black and reddish purple).
CURVE_COLOUR, WINDOW_COLOUR = "#000000", "#CC79A7"
#: What a zone without an acknowledgement is called in the chart.
NEVER, NOT_YET = "never", "not yet"


def _svg(fig: Any, key: str, title: str, description: str) -> str:
    """The figure as SVG markup with role="img", a <title> and a <desc>."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    head_end = text.index(">")
    return (f'{text[:head_end]} role="img" aria-labelledby="{key}-title {key}-desc">'
            f'<title id="{key}-title">{escape(title)}</title>'
            f'<desc id="{key}-desc">{escape(description)}</desc>{text[head_end + 1:]}')


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ack_curve_svg(curve: list[dict[str, Any]], recipients: int, window: int) -> str:
    """Cumulative acknowledgements over seconds since the alert was sent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    end = max([window] + [p["seconds"] for p in curve]) * 1.15 or 1.0
    # The step holds its last height to the chart's right edge (else the last
    # acknowledgement would be a step nobody sees).
    xs = [0.0] + [p["seconds"] for p in curve] + [end]
    ys = [0] + [p["acknowledged"] for p in curve] + [len(curve)]
    ax.step(xs, ys, where="post", color=CURVE_COLOUR, linewidth=2, label="acknowledged")
    ax.axhline(recipients, color="#555555", linestyle=":", linewidth=1, label="volunteers asked")
    ax.axvline(window, color=WINDOW_COLOUR, linestyle="--", linewidth=1.5,
               label="acknowledgement window")
    title = "Acknowledgements over time"
    ax.set_title(title)
    ax.set_xlabel("seconds since the alert was sent")
    ax.set_ylabel("volunteers")
    ax.set_xlim(0, end)
    ax.set_ylim(0, max(recipients, 1) * 1.1)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if curve:
        desc = (f"{len(curve)} of {recipients} volunteers acknowledged: the first after "
                f"{curve[0]['seconds']:.0f} s, the last after {curve[-1]['seconds']:.0f} s "
                f"(window {window} s).")
    else:
        desc = f"None of {recipients} volunteers acknowledged (window {window} s)."
    return _svg(fig, "curve", title, desc)


def zone_label(zone: dict[str, Any]) -> str:
    """A zone's time to first acknowledgement in words: "20 s", "never" or "not yet"."""
    seconds = zone["time_to_ack_seconds"]
    if seconds is not None:
        return f"{seconds:.0f} s"
    return NOT_YET if zone["state"] == ZoneState.WAITING else NEVER


def zone_bars_svg(zones: list[dict[str, Any]], window: int) -> str:
    """Time to first acknowledgement per zone. A zone never acknowledged has no bar (a
    full-length one would read as "slowest"): a hatched stub and the word "never"."""
    plt = _pyplot()
    names = [z["zone"] for z in zones]
    longest = max([z["time_to_ack_seconds"] or 0 for z in zones] + [window, 1])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(zones) + 1.2))
    for i, z in enumerate(zones):
        seconds = z["time_to_ack_seconds"]
        colour = STATE_COLOURS.get(z["state"], "#555555")
        if seconds is not None:
            bars = ax.barh(i, seconds, color=colour)
            ax.text(seconds + longest * 0.01, i, zone_label(z), va="center", fontsize=9)
        else:  # a short hatched outline, then the word: pattern and text, not colour alone
            bars = ax.barh(i, longest * 0.03, color="white", edgecolor=colour, hatch="xx",
                           linewidth=1.2)
            ax.text(longest * 0.04, i, zone_label(z), va="center", fontsize=9,
                    fontweight="bold", color="#111111")
        bars.patches[0].set_gid(f"zone-bar-{i}")  # the SVG element's id, for the tests
    ax.patch.set_gid("zone-bars-plot")
    ax.set_yticks(range(len(zones)), names)
    ax.set_xlim(0, longest * 1.15)
    ax.axvline(window, color=WINDOW_COLOUR, linestyle="--", linewidth=1.5)
    ax.invert_yaxis()
    title = "Time to first acknowledgement, by zone"
    ax.set_title(title)
    ax.set_xlabel(f"seconds after the alert was sent (dashed line: the {window} s window)")
    ax.grid(axis="x", alpha=0.3)
    desc = "; ".join(f"{z['zone']}: {zone_label(z)}" for z in zones) + "."
    return _svg(fig, "bars", title, desc)
