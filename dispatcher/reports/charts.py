"""Charts as inline SVG (matplotlib, Agg backend): no external asset, printable."""

from __future__ import annotations

import io
from typing import Any

#: Colours of zone states, shared by the bars and the tables.
STATE_COLOURS = {"acknowledged": "#1b7f3b", "waiting": "#c98a00", "unreached": "#b00020"}


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def ack_curve_svg(curve: list[dict[str, Any]], recipients: int, window: int) -> str:
    """Cumulative acknowledgements over seconds since the alert was sent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = [0.0] + [p["seconds"] for p in curve]
    ys = [0] + [p["acknowledged"] for p in curve]
    ax.step(xs, ys, where="post", color="#0b5394", linewidth=2, label="acknowledged")
    ax.axhline(recipients, color="#888", linestyle=":", linewidth=1, label="volunteers asked")
    ax.axvline(window, color="#c98a00", linestyle="--", linewidth=1, label="window")
    ax.set_xlabel("seconds since the alert was sent")
    ax.set_ylabel("volunteers")
    ax.set_ylim(0, max(recipients, 1) * 1.1)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _svg(fig)


def zone_bars_svg(zones: list[dict[str, Any]], window: int) -> str:
    """Time to first acknowledgement per zone; unreached zones drawn at full width in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [z["zone"] for z in zones]
    longest = max([z["time_to_ack_seconds"] or 0 for z in zones] + [window, 1])
    values = [z["time_to_ack_seconds"] if z["time_to_ack_seconds"] is not None else longest
              for z in zones]
    colours = [STATE_COLOURS.get(z["state"], "#888") for z in zones]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(zones) + 1))
    ax.barh(names, values, color=colours)
    ax.axvline(window, color="#c98a00", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("seconds to first acknowledgement (red: never)")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)
