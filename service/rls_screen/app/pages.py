"""The app's HTML: one layout, the summary sections, the forms. Server-rendered, no script.

Every value from a FHIR resource is escaped (``html.escape``). Clinician words come from
``rls_screen.wording`` and the rule set; the labels of the page itself are here. The CSP allows
nothing but this origin's stylesheet, forms posting to this origin and inline SVG (no script at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from rls_screen.app.charts import trend_charts
from rls_screen.app.sessions import UserSession
from rls_screen.app.summary import Summary
from rls_screen.knowledge import Knowledge
from rls_screen.model import Finding, NotEvaluable
from rls_screen.ruleset import RuleSet
from rls_screen.wording import (
    advice_for,
    advisory_text,
    analyte_text,
    display_units,
    finding_head,
    iron_band_text,
    sources_text,
    thresholds_text,
    value_text,
)


def security_headers(frame_ancestors: str = "'self'") -> dict[str, str]:
    """The headers of every /app answer: a CSP with no script and no other origin but the embedding EHR's."""
    return {
        "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # the callback URL holds the code and state
        "Cache-Control": "no-store",
    }


STYLESHEET = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fff; line-height: 1.45; }
header, main { padding: 0.75rem 1.25rem; max-width: 72rem; }
header { background: #eef2f6; border-bottom: 1px solid #8a97a6; }
h1 { font-size: 1.4rem; margin: 0.2rem 0; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: 0.4rem 0; }
th, td { border: 1px solid #8a97a6; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
.finding { border-left: 4px solid #1d4f91; padding: 0.2rem 0.8rem; margin: 0.8rem 0; }
.muted { color: #4a4a4a; } form.inline { display: inline; margin-right: 0.5rem; }
button { font: inherit; padding: 0.25rem 0.7rem; } input[type=text] { font: inherit; width: 18rem; }
figure { margin: 0.8rem 0; } figcaption { font-weight: 600; }
"""


def layout(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="app.css"></head>'
        f"<body>{body}</body></html>"
    )


def problem(message: str) -> str:
    return f'<main><h1>RLS workup summary</h1><p role="alert">{escape(message)}</p></main>'


def _name(patient: Mapping[str, Any]) -> str:
    for name in patient.get("name") or []:
        if isinstance(name, Mapping):
            if name.get("text"):
                return str(name["text"])
            given = " ".join(str(g) for g in name.get("given") or [])
            return f"{given} {name.get('family', '')}".strip()
    return "Name not recorded"


def banner(summary: Summary, user: UserSession) -> str:
    patient = summary.patient
    facts = [f"born {patient['birthDate']}" if patient.get("birthDate") else "birth date not recorded"]
    if patient.get("gender"):
        facts.append(str(patient["gender"]))
    signed_in = user.user_name or "signed-in user"
    return (
        f'<header><p class="muted">RLS workup summary · signed in as {escape(signed_in)}</p>'
        f"<h1>{escape(_name(patient))}</h1><p>{escape(', '.join(facts))} · record {escape(user.patient)}</p>"
        '<form class="inline" method="post" action="logout">'
        f'<input type="hidden" name="csrf" value="{escape(user.csrf_token)}"><button type="submit">Sign out</button>'
        "</form></header>"
    )


def _values_table(finding: Finding) -> str:
    if not finding.values:
        return ""
    rows = "".join(
        f"<tr><td>{escape(analyte_text(v.analyte))}</td><td>{escape(value_text(v))}</td>"
        f"<td>{escape(v.effective.isoformat())}</td><td>{escape(', '.join(v.observations))}</td></tr>"
        for v in finding.values
    )
    return (
        "<table><caption>Values used</caption><thead><tr><th scope=col>Test</th><th scope=col>Value</th>"
        f"<th scope=col>Date</th><th scope=col>Result</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _not_used_for(finding: Finding, items: Sequence[NotEvaluable]) -> str:
    """The results of this finding's analytes that were not used, and why (the whole list is further down)."""
    analytes = {v.analyte for v in finding.values}
    mine = [n for n in items if n.analyte in analytes and n.reason != "missing"]
    if not mine:
        return ""
    lines = "".join(
        f"<li>{escape(analyte_text(n.analyte or 'result'))}"
        f"{' on ' + escape(n.effective.isoformat()) if n.effective else ''}: {escape(n.reason)}: "
        f"{escape(display_units(n.detail))}</li>"
        for n in mine
    )
    return f"<p>Results not used for this finding:</p><ul>{lines}</ul>"


def finding_block(finding: Finding, rules: RuleSet, not_evaluable: Sequence[NotEvaluable] = ()) -> str:
    parts = [f"<h3>{escape(finding_head(finding))}</h3>", _values_table(finding)]
    if finding.thresholds:
        parts.append(f"<p>Threshold: {escape(thresholds_text(finding.thresholds))}</p>")
    parts.append(
        f"<p>Guideline: {escape(sources_text(rules, finding.citations))}; "
        f"rule {escape(finding.rule_id)} version {escape(finding.rule_set_version)}</p>"
    )
    if finding.note:
        parts.append(f"<p>{escape(display_units(finding.note))}</p>")
    advice = advice_for(finding, rules.advice)
    if advice:
        parts.append(f"<p><strong>To consider:</strong> {escape(advice)}</p>")
    parts.append(_not_used_for(finding, not_evaluable))
    return f'<section class="finding">{"".join(parts)}</section>'


def not_used(items: Iterable[NotEvaluable]) -> str:
    rows = "".join(
        f"<tr><td>{escape(analyte_text(n.analyte) if n.analyte else 'result')}</td><td>{escape(n.reason)}</td>"
        f"<td>{escape(display_units(n.detail))}</td>"
        f"<td>{escape(n.effective.isoformat() if n.effective else '')}</td></tr>"
        for n in items
    )
    if not rows:
        return "<p>Every result in the window was usable.</p>"
    return (
        "<table><thead><tr><th scope=col>Test</th><th scope=col>Why not used</th><th scope=col>Detail</th>"
        f"<th scope=col>Date</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _period(resource: Mapping[str, Any]) -> str:
    period = resource.get("period") or {}
    start, end = period.get("start", ""), period.get("end", "")
    return f"{str(start)[:10]} to {str(end)[:10] if end else 'now'}"


def _concept(value: Any) -> str:
    if isinstance(value, Mapping):
        if value.get("text"):
            return str(value["text"])
        for coding in value.get("coding") or []:
            if isinstance(coding, Mapping) and coding.get("display"):
                return str(coding["display"])
    return "not named"


def flags_table(summary: Summary, user: UserSession) -> str:
    if not summary.flags:
        return "<p>No flags written for this patient.</p>"
    rows = []
    for flag in summary.flags:
        fid = escape(str(flag.get("id", "")))
        actions = ""
        if flag.get("status") == "active":
            actions = (
                f'<form method="post" action="flags/{fid}">'
                f'<input type="hidden" name="csrf" value="{escape(user.csrf_token)}">'
                f'<label for="reason-{fid}">Reason</label> '
                f'<input type="text" id="reason-{fid}" name="reason" maxlength="500"> '
                '<button type="submit" name="action" value="resolve">Resolve</button> '
                '<button type="submit" name="action" value="entered-in-error">Mark entered in error</button></form>'
            )
        rows.append(
            f"<tr><td>{escape(_concept(flag.get('code')))}</td><td>{escape(str(flag.get('status', '')))}</td>"
            f"<td>{escape(_period(flag))}</td><td>{actions}</td></tr>"
        )
    return (
        "<table><thead><tr><th scope=col>Flag</th><th scope=col>Status</th><th scope=col>Period</th>"
        f"<th scope=col>Action</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _outcomes(risk: Mapping[str, Any]) -> str:
    return ", ".join(_concept(p.get("outcome")) for p in risk.get("prediction") or []) or "no finding"


def risk_history(summary: Summary) -> str:
    if not summary.risk_assessments:
        return "<p>No screening result written for this patient.</p>"
    rows = "".join(
        f"<tr><td>{escape(str(ra.get('occurrenceDateTime', ''))[:10])}</td>"
        f"<td>{escape(str(ra.get('status', '')))}</td><td>{escape(_outcomes(ra))}</td></tr>"
        for ra in summary.risk_assessments
    )
    return (
        "<table><thead><tr><th scope=col>Screened on</th><th scope=col>Status</th><th scope=col>Findings</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def proposals(summary: Summary, user: UserSession) -> str:
    if not summary.proposals:
        return "<p>No iron-studies proposal for this patient.</p>"
    items = []
    for sr in summary.proposals:
        sid = escape(str(sr.get("id", "")))
        form = ""
        accepted = summary.orders.get(str(sr.get("id")), ())
        if accepted:
            form = "".join(
                f"; accepted as a {escape(str(o.get('status', '')))} order on {escape(str(o.get('authoredOn', '')))}"
                f" by {escape(str((o.get('requester') or {}).get('display', 'a clinician')))}"
                for o in accepted
            )
        elif sr.get("status") == "active" and sr.get("intent") == "proposal":
            form = (
                f' <form class="inline" method="post" action="proposal/{sid}">'
                f'<input type="hidden" name="csrf" value="{escape(user.csrf_token)}">'
                '<button type="submit">Accept as a draft order</button></form>'
            )
        items.append(
            f"<li>{escape(_concept(sr.get('code')))}: {escape(str(sr.get('intent', '')))}, "
            f"{escape(str(sr.get('status', '')))}{form}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def summary(data: Summary, user: UserSession, knowledge: Knowledge) -> str:
    rules, assessment = knowledge.ruleset, data.assessment
    findings = [f for f in assessment.findings if f.code != "aggravating-medication"]
    medicines = [f for f in (*assessment.findings, *assessment.advisories) if f.code == "aggravating-medication"]
    sections = [
        banner(data, user),
        "<main>",
        f"<p>As of {escape(assessment.as_of.isoformat())}; rule set {escape(assessment.rule_set_id)} "
        f"version {escape(assessment.rule_set_version)}.</p>",
        "<h2>Findings</h2>",
        "".join(finding_block(f, rules, assessment.not_evaluable) for f in findings)
        or "<p>No findings on the usable results.</p>",
        f"<p>Iron therapy band: {escape(iron_band_text(assessment, rules.advice))}</p>",
        "<h2>Medicines that may aggravate RLS</h2>",
        "".join(finding_block(f, rules) for f in medicines) or "<p>None found in the medication list.</p>",
        "<h2>Advisories</h2>",
        "<ul>"
        + "".join(
            f"<li>{escape(advisory_text(a, rules.advice))}</li>"
            for a in assessment.advisories
            if a.code != "aggravating-medication"
        )
        + "</ul>",
        "<h2>Results not used, and why</h2>",
        not_used(assessment.not_evaluable),
        "<h2>Trends over 3 years</h2>",
        trend_charts(data, knowledge),
        "<h2>Flags</h2>",
        flags_table(data, user),
        "<h2>Iron-studies proposal</h2>",
        proposals(data, user),
        "<h2>Screening history</h2>",
        risk_history(data),
        "</main>",
    ]
    return "".join(sections)
