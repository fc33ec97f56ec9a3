"""Charts drawn on the server as inline SVG: no script, nothing from a CDN, readable by a
screen reader (role=img with a title and a description giving the total), each bar with a
tooltip (<title>) naming its label and amount.

Amounts are nano-USD ints, shown with ``format_usd`` (exact). Colours come from site.css
(classes ``chart``, ``bar``, ``bar-N``, ``axis``), so the page's theme applies.

The SVG scales with the page and its text with it: site.css caps the chart's width (text of
``FONT`` units stays near 14 px on a desktop) and on a phone sets a larger font in viewBox
units (near 12 px on screen) while every other x label (class ``alt``) is hidden, so labels
neither shrink to 7 px nor collide. The margins below leave room for that larger font.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from gateway.money import format_usd

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 8, 8, 32, 40
MAX_LABELS = 8  # x-axis labels shown at most; every bar keeps its tooltip
_ids = itertools.count(1)


def _amount(nanos: int, unit: str) -> str:
    return f"{format_usd(nanos)} {unit}"


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, unit: str = "USD") -> Markup:
    """One bar per ``(label, nano-USD)`` point, in order. Negative amounts draw as empty."""
    return stacked_bar_chart(
        [(label, {"": amount}) for label, amount in points], title=title, unit=unit
    )


def stacked_bar_chart(
    points: Sequence[tuple[str, Mapping[str, int]]], *, title: str, unit: str = "USD"
) -> Markup:
    """One bar per ``(label, {series: nano-USD})`` point, its series stacked in the order of
    their first appearance (``bar-0``, ``bar-1``, ... colour them); a legend names the series
    when there are several (a series named "" is unnamed)."""
    series = list(dict.fromkeys(name for _, parts in points for name in parts))
    totals = [sum(max(v, 0) for v in parts.values()) for _, parts in points]
    top = max(totals, default=0) or 1
    chart_id = f"chart{next(_ids)}"
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.8, 1.0)
    step = max(1, -(-len(points) // MAX_LABELS))
    total = sum(totals)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{len(points)} bars, total {escape(_amount(total, unit))},'
        f" highest {escape(_amount(max(totals, default=0), unit))}</desc>",
        f'<text class="axis" x="{LEFT}" y="{TOP - 8}">max'
        f" {escape(_amount(max(totals, default=0), unit))}</text>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}"'
        f' y2="{TOP + plot_h}"/>',
    ]
    for i, (label, parts) in enumerate(points):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y: float = TOP + plot_h
        for s, name in enumerate(series):
            value = max(parts.get(name, 0), 0)
            if name not in parts:
                continue
            h = plot_h * value / top
            y -= h
            tip = f"{label}{' ' + name if name else ''}: {_amount(value, unit)}"
            out.append(
                f'<rect class="bar bar-{s % 8}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}"'
                f' height="{h:.1f}"><title>{escape(tip)}</title></rect>'
            )
        if i % step == 0:
            alt = " alt" if (i // step) % 2 else ""
            out.append(
                f'<text class="axis{alt}" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 24}"'
                f' text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    if len(series) > 1:
        out.append('<ul class="legend">')
        out += [
            f'<li><span class="swatch bar-{s % 8}" aria-hidden="true"></span>{escape(name)}</li>'
            for s, name in enumerate(series)
        ]
        out.append("</ul>")
    return Markup("".join(out))
