"""The gaps chart: the share of reports missing each quality item, month by month, as a plain
SVG drawn on the server (no script, nothing fetched; the staff pages' CSP allows neither
inline style nor outside resources, so only presentation attributes are used).

A month without assessed reports is a break in every line and a grey band labelled "no
reports" (or "not yet assessed"): it is never drawn as 0 %.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from tipline.platform_view.service import GapTable

#: Okabe-Ito: told apart with the common colour-vision deficiencies; each line also has its
#: own marker shape, so colour is never the only cue.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("circle", "square", "diamond", "triangle", "cross", "circle-open", "square-open", "diamond-open")

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 56


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    open_ = kind.endswith("-open")
    fill = "#ffffff" if open_ else colour
    base = kind.removesuffix("-open")
    common = f'fill="{fill}" stroke="{colour}" stroke-width="1.5"'
    if base == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" {common}/>'
    if base == "diamond":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4.5:.1f},{y:.1f} {x:.1f},{y + 4.5:.1f} '
                f'{x - 4.5:.1f},{y:.1f}" {common}/>')
    if base == "triangle":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4.5:.1f},{y + 3.5:.1f} {x - 4.5:.1f},{y + 3.5:.1f}" '
                f'{common}/>')
    if base == "cross":
        return (f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},{y + 4:.1f}'
                f'L{x + 4:.1f},{y - 4:.1f}" stroke="{colour}" stroke-width="2" fill="none"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" {common}/>'


def gaps_svg(table: GapTable, *, title_id: str = "gaps-chart-title", desc_id: str = "gaps-chart-desc") -> Markup:
    """The chart as an inline ``<svg>`` element (the page's table holds the same numbers)."""
    months = table.months
    n = len(months)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n

    def x_of(i: int) -> float:
        return LEFT + step * (i + 0.5)

    def y_of(share: float) -> float:
        return TOP + plot_h * (1 - share)

    no_data = [m for m in months if not m.has_data]
    desc = (f"Share of reports missing each quality item, {months[0].month.label()} to {months[-1].month.label()}. "
            + (f"{len(no_data)} month(s) without assessed reports are shown as gaps, not as 0 %. " if no_data else "")
            + "The table below gives every figure with its denominator.")
    out = [f'<svg class="gaps-chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           f'aria-labelledby="{title_id} {desc_id}" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{title_id}">Most common gaps by month</title>',
           f'<desc id="{desc_id}">{escape(desc)}</desc>']
    # Months without data: a band with its reason, under everything else.
    for i, m in enumerate(months):
        if m.has_data:
            continue
        reason = "no reports" if m.filed == 0 else "not yet assessed"
        out.append(f'<rect x="{LEFT + step * i:.1f}" y="{TOP}" width="{step:.1f}" height="{plot_h}" '
                   f'fill="#ececec"/>')
        out.append(f'<text x="{x_of(i):.1f}" y="{TOP + plot_h / 2:.1f}" font-size="10" fill="#444444" '
                   f'text-anchor="middle" transform="rotate(-90 {x_of(i):.1f} {TOP + plot_h / 2:.1f})">{reason}</text>')
    # Axes and grid: 0, 25, 50, 75, 100 %.
    for pct in (0, 25, 50, 75, 100):
        y = y_of(pct / 100)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{"#767676" if pct == 0 else "#d0d0d0"}" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" fill="#333333" '
                   f'text-anchor="end">{pct} %</text>')
    # Month labels: every one when they fit, else every second or third.
    every = 1 if n <= 14 else (2 if n <= 28 else 3)
    for i, m in enumerate(months):
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{x_of(i):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" fill="#333333" '
                       f'text-anchor="middle">{escape(m.month.short())}</text>')
    # One line per item, broken wherever a month has no data.
    for k, g in enumerate(table.items):
        colour, marker = COLOURS[k % len(COLOURS)], MARKERS[k % len(MARKERS)]
        segments: list[list[tuple[float, float]]] = [[]]
        points: list[tuple[float, float]] = []
        for i, m in enumerate(months):
            share = m.shares[g.id].share
            if share is None:
                if segments[-1]:
                    segments.append([])
                continue
            xy = (x_of(i), y_of(share))
            segments[-1].append(xy)
            points.append(xy)
        out.append(f'<g class="series" data-item="{escape(g.id)}">')
        for seg in segments:
            if len(seg) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.extend(_marker(marker, x, y, colour) for x, y in points)
        out.append("</g>")
    # Legend, in two rows under the axis.
    per_row = 3
    for k, g in enumerate(table.items):
        colour, marker = COLOURS[k % len(COLOURS)], MARKERS[k % len(MARKERS)]
        col, row = k % per_row, k // per_row
        lx = LEFT + col * (plot_w / per_row)
        ly = HEIGHT - BOTTOM + 32 + row * 14
        out.append(_marker(marker, lx + 4, ly - 4, colour))
        out.append(f'<text x="{lx + 14:.1f}" y="{ly:.1f}" font-size="11" fill="#222222">{escape(g.title)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
