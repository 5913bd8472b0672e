"""Inline SVG charts of the batch page: bar charts of the panel's counts and the trend across runs.

Inline SVG (no script, no external asset) so the page opens offline under its strict CSP. The trend
is readable without colour: each series has its own marker shape and dash pattern and is labelled at
its end, and the page gives the same numbers in a table.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from rls_screen.quantities import format_number
from rls_screen.ruleset import RuleSet

FERRITIN_BINS = ((0, 15), (15, 30), (30, 50), (50, 75), (75, 100), (100, 150), (150, 300), (300, None))


def bar_chart(title: str, items: list[tuple[str, int]], note: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    width, bar_height, label_width = 640, 22, 220
    top = 30
    height = top + bar_height * max(len(items), 1) + 30
    biggest = max((n for _, n in items), default=0) or 1
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="13">',
        f'<text x="0" y="18" font-weight="bold">{html.escape(title)}</text>',
    ]
    for n, (label, count) in enumerate(items):
        y = top + n * bar_height
        length = int((width - label_width - 60) * count / biggest)
        parts.append(f'<text x="0" y="{y + 15}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{length}" height="{bar_height - 6}" fill="#3a6894"/>')
        parts.append(f'<text x="{label_width + length + 6}" y="{y + 15}">{count}</text>')
    if note:
        parts.append(f'<text x="0" y="{height - 8}" fill="#444">{html.escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def ferritin_items(values: list[float], unit: str) -> list[tuple[str, int]]:
    items = []
    for low, high in FERRITIN_BINS:
        label = f"{low}-{high} {unit}" if high is not None else f">= {low} {unit}"
        items.append((label, sum(1 for v in values if v >= low and (high is None or v < high))))
    return items


def short_labels(rules: RuleSet, keys: tuple[str, ...]) -> str:
    return "; ".join(dict.fromkeys(rules.citations[key].short for key in keys))


def chart_notes(rules: RuleSet) -> tuple[str, str]:
    """The thresholds the ferritin and GFR charts mark, in the words and numbers of the rule set."""
    iron, kidney = rules.iron, rules.kidney
    deficiency, band = iron.deficiency, iron.band
    ferritin = (
        f"Thresholds: < {format_number(deficiency.ferritin_below)} iron deficiency "
        f"({short_labels(rules, deficiency.citations)}); <= {format_number(band.oral_or_iv_ferritin_at_most)} and "
        f"{format_number(band.oral_or_iv_ferritin_at_most)}-{format_number(band.iv_only_ferritin_at_most)} "
        f"iron therapy bands ({short_labels(rules, band.citations[:1])})"
    )
    below = {c.category: c.below for c in kidney.gfr_categories}
    reduced, failure = kidney.reduced_function.categories, kidney.failure.categories
    g5 = ", ".join(f"{c} (< {format_number(limit)})" if (limit := below.get(c)) is not None else c for c in failure)
    gfr = (
        f"{reduced[0]}-{reduced[-1]} reduced kidney function; {g5} kidney failure "
        f"({short_labels(rules, kidney.failure.citations)})"
    )
    return ferritin, gfr


# Marker shapes and dash patterns, one per series: the series differ without colour.
def _marker(n: int, x: float, y: float) -> str:
    """Marker shape ``n`` (circle, square, triangle, diamond, cross) centred on (x, y)."""
    shapes = (
        f'<circle cx="{x}" cy="{y}" r="4.5"/>',
        f'<rect x="{x - 4}" y="{y - 4}" width="8" height="8"/>',
        f'<path d="M{x} {y - 5.5}L{x + 5} {y + 4}L{x - 5} {y + 4}Z"/>',
        f'<path d="M{x} {y - 5.5}L{x + 5.5} {y}L{x} {y + 5.5}L{x - 5.5} {y}Z"/>',
        f'<path d="M{x - 4.5} {y - 4.5}L{x + 4.5} {y + 4.5}M{x + 4.5} {y - 4.5}L{x - 4.5} {y + 4.5}" '
        'stroke-width="2"/>',
    )
    return shapes[n % len(shapes)]


_DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 5")
_COLOURS = ("#1f4e79", "#8a3b12", "#2d6a2d", "#5b2c83", "#444444")


def trend_chart(title: str, runs: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> str:
    """A line chart of counts across runs (oldest left); ``runs`` are the x labels."""
    width, height, left, right, top, bottom = 720, 260, 50, 230, 34, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    biggest = max((n for _, values in series for n in values), default=0) or 1
    step = plot_w / max(len(runs) - 1, 1)

    def x(i: int) -> float:
        return round(left + (i * step if len(runs) > 1 else plot_w / 2), 1)

    def y(n: int) -> float:
        return round(top + plot_h - plot_h * n / biggest, 1)

    parts = [
        f'<svg role="img" aria-label="{html.escape(title)} (the table below gives the numbers)" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">',
        f'<text x="0" y="16" font-weight="bold" font-size="13">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#555"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{biggest}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(runs):
        parts.append(f'<text x="{x(i)}" y="{top + plot_h + 18}" text-anchor="middle">{html.escape(label)}</text>')
    label_ys = _spread([y(values[-1]) + 4 if values else top for _, values in series], top + 4, top + plot_h + 4)
    label_x = left + plot_w + 24
    for n, (name, values) in enumerate(series):
        colour, dash = _COLOURS[n % 5], _DASHES[n % 5]
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<g stroke="{colour}" fill="{colour}">')
        parts.append(f'<polyline points="{points}" fill="none" stroke-width="2"{dash_attr}/>')
        parts.extend(_marker(n, x(i), y(v)) for i, v in enumerate(values))
        # the series' marker and name at the right, level with its last point (nudged apart)
        parts.append(_marker(n, label_x, label_ys[n] - 4))
        parts.append("</g>")
        parts.append(
            f'<text x="{label_x + 10}" y="{label_ys[n]}">{html.escape(name)}: {values[-1] if values else 0}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _spread(ys: list[float], low: float, high: float, gap: float = 15) -> list[float]:
    """Label positions near ``ys``, at least ``gap`` apart, kept within [low, high] where they fit."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    last = low - gap
    for i in order:  # downwards: each label below the one above it
        placed[i] = last = max(ys[i], last + gap)
    last = high + gap
    for i in reversed(order):  # then upwards from the bottom edge, for labels pushed past it
        placed[i] = last = min(placed[i], last - gap)
    return [round(p, 1) for p in placed]
