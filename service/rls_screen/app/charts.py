"""Trend charts: one inline SVG per analyte over the last 3 years, with the rule set's thresholds.

Results are classified by the one classifier (``observations.classify_all``) with the look-back
widened to 3 years, so a chart shows exactly the results the rules could use, in the rule set's
units. Threshold lines are dashed and labelled in words, and the range past an action threshold is
hatched (a pattern, not a colour); each chart is followed by its values as a table, so nothing rests
on colour alone. Every number on a line comes from the rule set (paths into its JSON form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Any

from rls_screen.app.summary import Summary
from rls_screen.knowledge import Knowledge
from rls_screen.model import LabResult
from rls_screen.observations import classify_all
from rls_screen.quantities import format_number
from rls_screen.wording import analyte_text, unit_text

TREND_DAYS = 3 * 365 + 1
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 680, 220, 56, 190, 14, 30


@dataclass(frozen=True)
class Line:
    label: str
    path: str
    """Dotted path into the rule set's JSON (``iron.band.tsatBelow``); a number."""
    comparator: str
    """How the rule compares a value with the line ('<', '<=', '>=', '>'), as the rule-set key says."""
    side: str
    """'below', 'above' or 'none': the side of the line hatched as outside the threshold."""


CHARTS: Sequence[tuple[str, Sequence[Line]]] = (
    (
        "ferritin",
        (
            Line("iron deficiency", "iron.deficiency.ferritinBelow", "<", "below"),
            Line("RLS: oral or IV iron", "iron.band.oralOrIvFerritinAtMost", "<=", "below"),
            Line("RLS: IV iron only", "iron.band.ivOnlyFerritinAtMost", "<=", "none"),
        ),
    ),
    (
        "tsat",
        (
            Line("RLS: iron therapy", "iron.band.tsatBelow", "<", "below"),
            Line("iron overload risk", "iron.overloadRisk.tsatAtLeast", ">=", "above"),
        ),
    ),
    (
        "hemoglobin",
        (
            Line("anaemia (women)", "anemia.adult.female.below", "<", "none"),
            Line("anaemia (men)", "anemia.adult.male.below", "<", "none"),
        ),
    ),
    ("egfr", (Line("reduced (G3a)", "kidney.gfrCategories.3.below", "<", "below"),)),
    (
        "potassium",
        (
            Line("hypokalaemia", "electrolytes.hypokalemia.below", "<", "below"),
            Line("hyperkalaemia", "electrolytes.hyperkalemia.above", ">", "above"),
        ),
    ),
    ("magnesium", (Line("hypomagnesaemia", "electrolytes.hypomagnesemia.below", "<", "below"),)),
    ("calcium-ionized", (Line("hypocalcaemia", "electrolytes.hypocalcemia.ionizedBelow", "<", "below"),)),
    ("calcium-total", ()),
)


def rule_value(rules_json: Mapping[str, Any], path: str) -> float:
    node: Any = rules_json
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    if not isinstance(node, int | float) or isinstance(node, bool):
        raise TypeError(f"rule-set path {path} is not a number")
    return float(node)


def trend_results(summary: Summary, knowledge: Knowledge) -> dict[str, list[LabResult]]:
    """Usable results by analyte over the trend window, oldest first."""
    terminology, units = knowledge.terminology, knowledge.units
    wide = knowledge.ruleset.selection.model_copy(update={"window_days": TREND_DAYS})
    as_of = summary.assessment.as_of
    by_analyte: dict[str, list[LabResult]] = {}
    for observation in summary.data.observations:
        reference = f"Observation/{observation.get('id', '?')}"
        for outcome in classify_all(observation, reference, terminology, units, wide, as_of):
            if isinstance(outcome, LabResult):
                by_analyte.setdefault(outcome.analyte, []).append(outcome)
    for results in by_analyte.values():
        results.sort(key=lambda r: (r.effective_date, r.reference))
    return by_analyte


def _text(x: float, y: float, content: str, *, size: int = 11, anchor: str = "middle") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#1b1b1b">'
        f"{escape(content)}</text>"
    )


def _svg(analyte: str, results: Sequence[LabResult], lines: Sequence[tuple[Line, float]], as_of: date) -> str:
    start = as_of - timedelta(days=TREND_DAYS)
    values = [r.value.value for r in results if r.value is not None]
    levels = values + [v for _, v in lines]
    low, high = min(levels), max(levels)
    pad = (high - low) * 0.12 or max(abs(high) * 0.2, 1.0)
    low, high = max(0.0, low - pad) if low >= 0 else low - pad, high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        return LEFT + plot_w * (day - start).days / TREND_DAYS

    def y(value: float) -> float:
        return TOP + plot_h * (high - value) / (high - low)

    name, unit = analyte_text(analyte), unit_text(results[0].unit)
    title_id = f"chart-{escape(analyte)}"
    hatch = f"hatch-{escape(analyte)}"
    parts = [
        f'<svg role="img" aria-labelledby="{title_id}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}">',
        f'<title id="{title_id}">{escape(name)} ({escape(unit)}), '
        f"{len(values)} results since {start.isoformat()}</title>",
        f'<defs><pattern id="{hatch}" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="8" stroke="#6b7785" stroke-width="2"/>'
        "</pattern></defs>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#5a6572"/>',
    ]
    for line, level in lines:
        ly = y(level)
        band = {"below": (ly, TOP + plot_h - ly), "above": (TOP, ly - TOP)}.get(line.side)
        if band is not None:
            parts.append(
                f'<rect x="{LEFT}" y="{band[0]:.1f}" width="{plot_w}" height="{band[1]:.1f}" '
                f'fill="url(#{hatch})" opacity="0.35"/>'
            )
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ly:.1f}" y2="{ly:.1f}" '
            'stroke="#1b1b1b" stroke-dasharray="6 4"/>'
        )
        parts.append(
            _text(
                LEFT + plot_w + 6,
                ly + 4,
                f"{line.label}: {line.comparator} {format_number(level)}",
                size=12,
                anchor="start",
            )
        )
    for tick in (low, (low + high) / 2, high):
        parts.append(_text(LEFT - 6, y(tick) + 4, format_number(round(tick, 2)), anchor="end"))
    for year_back in (3, 2, 1, 0):
        day = as_of - timedelta(days=365 * year_back)
        parts.append(_text(x(day), HEIGHT - 10, day.isoformat()))
    shown = [r for r in results if r.value is not None]
    points = [(x(r.effective_date), y(r.value.value)) for r in shown if r.value is not None]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1d4f91" stroke-width="2"/>')
    for (px, py), result in zip(points, shown, strict=True):
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="#1d4f91"/>')
        parts.append(_text(px, py - 8, result.value.display() if result.value else ""))
    parts.append("</svg>")
    return "".join(parts)


def _table(analyte: str, results: Sequence[LabResult]) -> str:
    rows = "".join(
        f"<tr><td>{escape(r.effective_date.isoformat())}</td>"
        f"<td>{escape(r.value.display() if r.value else '')} {escape(unit_text(r.unit))}</td></tr>"
        for r in results
    )
    return (
        f"<table><caption>{escape(analyte_text(analyte))} values</caption><thead><tr><th scope=col>Date</th>"
        f"<th scope=col>Value</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def trend_charts(summary: Summary, knowledge: Knowledge) -> str:
    results = trend_results(summary, knowledge)
    rules_json = knowledge.ruleset.model_dump(by_alias=True, mode="json")
    figures = []
    for analyte, lines in CHARTS:
        found = results.get(analyte, [])
        if not found:
            figures.append(f"<p>{escape(analyte_text(analyte))}: no result in the last 3 years.</p>")
            continue
        levels = [(line, rule_value(rules_json, line.path)) for line in lines]
        figures.append(
            f"<figure><figcaption>{escape(analyte_text(analyte))} ({escape(unit_text(found[0].unit))})</figcaption>"
            f"{_svg(analyte, found, levels, summary.assessment.as_of)}{_table(analyte, found)}</figure>"
        )
    return "".join(figures)
