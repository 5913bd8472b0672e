"""The worklist page: one self-contained HTML file (inline CSS, JS, data and SVG; a strict CSP).

The page opens offline from a file and can be e-mailed: nothing is fetched, and its Content-Security-
Policy meta tag allows only its own inline style and script (by hash) and forbids every network load.
The worklist rows travel as one JSON block that the inline script renders a page at a time, so the
page stays usable at 100,000 patients (docs/benchmarks.md). The layout, script and style are package
data files (``templates/``); this module fills them in. Patients are named by id only; a link per
patient comes from the site's URL template (setting ``RLS_SCREEN_PATIENT_LINK_TEMPLATE``), with the id
URL-encoded, and only to http(s).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from rls_screen.batch.worklist import CHANGE_KINDS, WRITTEN_KINDS, Worklist
from rls_screen.codesets import CodeConcept
from rls_screen.errors import ConfigurationError
from rls_screen.priority import ROLE_ORDER, SEVERITY_ORDER, role_of
from rls_screen.wording import CHANGE_NAMES, ROLE_NAMES, WRITTEN_NAMES, severity_name

LINK_PLACEHOLDER = "{patient_id}"


def check_link_template(template: str | None) -> str | None:
    """The template when it is usable: an absolute http(s) URL with ``{patient_id}`` and no other braces."""
    if not template:
        return None
    parts = urlsplit(template.replace(LINK_PLACEHOLDER, "x"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("RLS_SCREEN_PATIENT_LINK_TEMPLATE must be an absolute http(s) URL")
    if LINK_PLACEHOLDER not in template or "{" in template.replace(LINK_PLACEHOLDER, ""):
        raise ConfigurationError("RLS_SCREEN_PATIENT_LINK_TEMPLATE must hold {patient_id} and no other {...}")
    return template


def patient_link(template: str | None, patient_id: str) -> str:
    """The patient's link ('' without a template); the id is URL-encoded, so it cannot leave its place.
    The page's script makes the same links (``encodeURIComponent`` and ``!'()*``, as ``quote(safe="")``)."""
    return template.replace(LINK_PLACEHOLDER, quote(patient_id, safe="")) if template else ""


def page_data(
    worklist: Worklist, concepts: Mapping[str, CodeConcept], link_template: str | None, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """What the script renders: lookups once, then one compact array per row (most important first).

    A row is [patient id, [[code, severity, values], ...], [[code, change, before, after], ...], written,
    what was written]; ``before`` is empty for a new finding and ``after`` for a resolved or new one (the
    row's values show it). Links are made in the page from ``linkTemplate`` with the id encoded as
    ``patient_link`` encodes it (the template checked here), which keeps 100,000 links out of the file.
    """
    codes = sorted(
        {f.code for row in worklist.rows for f in row.ranked} | {c.code for row in worklist.rows for c in row.changes},
        key=lambda code: list(concepts).index(code) if code in concepts else len(concepts),
    )
    severities = {f.severity for row in worklist.rows for f in row.ranked if f.severity}
    return {
        "previousRun": previous,
        "linkTemplate": link_template or "",
        "findings": {
            code: [concepts[code].display if code in concepts else code, role_of(code, concepts)] for code in codes
        },
        "roles": [[role, ROLE_NAMES[role]] for role in ROLE_ORDER],
        "severities": [
            [code, severity_name(code)]
            for code in sorted(severities, key=lambda s: SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 99)
        ],
        "changeKinds": [[kind, CHANGE_NAMES[kind]] for kind in CHANGE_KINDS],
        "writtenKinds": [[kind, WRITTEN_NAMES[kind]] for kind in WRITTEN_KINDS],
        "rows": [
            [
                row.entry.patient_id,
                [[f.code, f.severity or "", f.text()] for f in row.ranked],
                [[c.code, c.kind, c.before, c.after if c.kind == "changed" else ""] for c in row.changes],
                row.entry.written,
                "; ".join(row.entry.changes),
            ]
            for row in worklist.rows
        ],
    }


def data_json(data: Mapping[str, Any]) -> str:
    """JSON safe inside <script type="application/json">: no '</' or '<!--' can end the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _asset(name: str) -> str:
    return resources.files("rls_screen.batch").joinpath("templates", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_page(*, title: str, sections: Mapping[str, str], data: Mapping[str, Any]) -> str:
    """The page: ``sections`` are HTML fragments for the template's slots (already escaped)."""
    style, script = _asset("worklist.css"), _asset("worklist.js")
    csp = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    page = _asset("worklist.html")
    slots = {
        "title": html.escape(title),
        "csp": html.escape(csp),
        "style": style,
        "script": script,
        "data": data_json(data),
        **sections,
    }
    for name, value in slots.items():
        page = page.replace(f"<!--slot:{name}-->", value)
    return page
