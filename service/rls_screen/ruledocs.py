"""The rule documentation the service serves: HTML pages made from the rule-set files and docs/rules.md.

One page per shipped rule-set version (``/rules/<version>/``: its rules, citations with their DOIs, and
the clinical specification docs/rules.md when that file describes this version) and one per rule id
(``/rules/<version>/<rule-id>``: every part of the rule-set file that carries the id, its citations, and
the rows and paragraphs of docs/rules.md that name it). Pure: ``RuleDocs.load`` reads the files once;
``page`` returns (status, HTML). The HTML needs nothing from outside (no script, no external style or
font, one inline style sheet), escapes every piece of text it shows, and is built for assistive
technology: ``lang``, one ``h1``, ``header``/``nav``/``main`` landmarks, tables with captions and
``th scope``. Links in docs/rules.md point into the repository, so they are shown as text, not links;
the only links out are https://doi.org/ links of the citations that record a DOI.

The rule-set files are read as plain JSON (not through the typed model), so the page of an older or
newer version still renders whatever fields that version has.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

_INSTALLED_RULES_MD = Path(__file__).resolve().parent / "spec" / "rules.md"  # pyproject ships it as rls_screen.spec
_CHECKOUT_RULES_MD = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
RULES_MD = _INSTALLED_RULES_MD if _INSTALLED_RULES_MD.is_file() else _CHECKOUT_RULES_MD
"""docs/rules.md: in an installed package (wheel, image) beside the code; in a source checkout under docs/."""
DOI_BASE = "https://doi.org/"
_VERSION_IN_TITLE = re.compile(r"^# .*?(\d{4}\.\d+)", re.MULTILINE)
_BACKTICK_RULE_ID = re.compile(r"`([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+)`")
_STYLE = (
    "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0 auto;max-width:60rem;padding:0 1rem;color:#111}"
    "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #999;padding:.3rem .5rem;text-align:left;"
    "vertical-align:top}caption{text-align:left;font-weight:bold}code{background:#eee;padding:0 .2rem}"
    "a{color:#0645ad}a:focus{outline:3px solid #f90}"
)


@dataclass(frozen=True)
class RuleSetDoc:
    version: str
    data: Mapping[str, Any]
    rules: Mapping[str, tuple[tuple[str, Mapping[str, Any]], ...]]
    """Rule id -> (dotted path, node) of every part of the file that carries that ruleId."""


@dataclass(frozen=True)
class RuleDocs:
    rule_sets: Mapping[str, RuleSetDoc]
    spec: str | None
    """docs/rules.md, when present."""
    spec_version: str | None
    """The rule-set version docs/rules.md describes (its title)."""

    @classmethod
    def load(cls, spec_path: Path = RULES_MD, rule_sets_dir: Path | None = None) -> RuleDocs:
        """Every rule-set file shipped in the package (or in ``rule_sets_dir``), and docs/rules.md."""
        rule_sets: dict[str, RuleSetDoc] = {}
        folder = rule_sets_dir or resources.files("rls_screen.ruleset")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                data = json.loads(entry.read_text(encoding="utf-8"))
                rules: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
                for path, node in _rule_nodes(data, ""):
                    rules.setdefault(str(node["ruleId"]), []).append((path, node))
                version = str(data["version"])
                rule_sets[version] = RuleSetDoc(version, data, {k: tuple(v) for k, v in rules.items()})
        spec = spec_path.read_text(encoding="utf-8") if spec_path.is_file() else None
        match = _VERSION_IN_TITLE.search(spec) if spec else None
        return cls(rule_sets, spec, match.group(1) if match else None)

    def rule_ids(self, version: str) -> list[str]:
        """The rule ids of a version: those in its file, and (when docs/rules.md describes it) those it names."""
        found = dict.fromkeys(self.rule_sets[version].rules)
        if self.spec and self.spec_version == version:
            found.update(dict.fromkeys(_BACKTICK_RULE_ID.findall(self.spec)))
            found.update(dict.fromkeys(row[0] for row in _table_rows(self.spec) if row and row[0] in found))
        return list(found)

    # --- pages ------------------------------------------------------------------------------------

    def page(self, version: str | None = None, rule_id: str | None = None) -> tuple[int, str]:
        """(HTTP status, HTML) for the index (no version), a version, or one rule of a version."""
        if version is None:
            return 200, self._index()
        if version not in self.rule_sets:
            return 404, self.not_found(f"There is no rule set {version}.", None)
        if rule_id is None:
            return 200, self._version_page(version)
        if rule_id not in self.rule_ids(version):
            return 404, self.not_found(f"Rule set {version} has no rule {rule_id}.", version)
        return 200, self._rule_page(version, rule_id)

    def _index(self) -> str:
        items = "".join(
            f'<li><a href="{quote(v)}/">Rule set {_e(v)}</a> ({_e(d.data.get("status", ""))})</li>'
            for v, d in self.rule_sets.items()
        )
        body = f"<h1>rls-screen rule sets</h1><ul>{items}</ul>"
        return _document("rls-screen rule sets", body, nav="")  # the index is /rules/: no parent to link

    def _version_page(self, version: str) -> str:
        doc = self.rule_sets[version]
        data = doc.data
        title = f"Rule set {data.get('id', '')} {version}"
        facts = [("Title", data.get("title", "")), ("Status", data.get("status", ""))]
        facts.append(("Specification", data.get("specification", "")))
        rows = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in facts)
        rules = "".join(f'<li><a href="{quote(r)}">{_e(r)}</a></li>' for r in self.rule_ids(version))
        body = [
            f"<h1>{_e(title)}</h1>",
            f"<table><caption>About this rule set</caption>{rows}</table>",
            f'<section aria-labelledby="rules"><h2 id="rules">Rules</h2><ul>{rules}</ul></section>',
            self._citations(doc, list(_citations(data))),
            '<section aria-labelledby="spec"><h2 id="spec">Clinical specification</h2>',
        ]
        if self.spec and self.spec_version == version:
            body.append(markdown_html(self.spec, heading_offset=2))
        else:
            body.append(f"<p>{_e(self._no_spec(version))}</p>")
        body.append("</section>")
        return _document(title, "".join(body), nav=_nav(version))

    def _rule_page(self, version: str, rule_id: str) -> str:
        doc = self.rule_sets[version]
        title = f"Rule {rule_id} (rule set {version})"
        body = [f"<h1>{_e(title)}</h1>"]
        parts = doc.rules.get(rule_id, ())
        body.append('<section aria-labelledby="data"><h2 id="data">In the rule-set file</h2>')
        if not parts:
            body.append("<p>This rule has no thresholds of its own in the rule-set file.</p>")
        cited: list[str] = []
        for path, node in parts:
            cells = "".join(
                f'<tr><th scope="row"><code>{_e(k)}</code></th><td>{_e(_value(v))}</td></tr>'
                for k, v in node.items()
                if k != "ruleId"
            )
            caption = f"<code>{_e(path)}</code>"
            body.append(f'<table><caption>{caption}</caption><tr><th scope="col">Field</th>')
            body.append(f'<th scope="col">Value</th></tr>{cells}</table>')
            cited += _citations(node)
        body.append("</section>")
        body.append(self._citations(doc, cited))
        body.append('<section aria-labelledby="spec"><h2 id="spec">In the clinical specification</h2>')
        if self.spec and self.spec_version == version:
            body.append(_spec_excerpts(self.spec, rule_id))
        else:
            body.append(f"<p>{_e(self._no_spec(version))}</p>")
        body.append("</section>")
        return _document(title, "".join(body), nav=_nav(version))

    def _citations(self, doc: RuleSetDoc, keys: list[str]) -> str:
        known: Mapping[str, Any] = doc.data.get("citations", {})
        rows = []
        for key in dict.fromkeys(keys):
            citation = known.get(key) or {}
            doi = citation.get("doi")
            link = f'<a href="{_e(doi_url(doi))}">doi:{_e(doi)}</a>' if doi else "no DOI recorded"
            rows.append(
                f'<tr><th scope="row">{_e(citation.get("short", key))}</th><td>{_e(citation.get("text", ""))}</td>'
                f"<td>{link}</td></tr>"
            )
        if not rows:
            return ""
        head = '<tr><th scope="col">Source</th><th scope="col">Citation</th><th scope="col">DOI</th></tr>'
        return (
            f'<section aria-labelledby="sources"><h2 id="sources">Sources</h2>'
            f"<table><caption>Citations</caption>{head}{''.join(rows)}</table></section>"
        )

    def _no_spec(self, version: str) -> str:
        if self.spec is None:
            return "docs/rules.md is not installed with this service; the rule-set file above is the specification."
        return f"docs/rules.md describes rule set {self.spec_version}; for {version} see the repository's history."

    def not_found(self, message: str, version: str | None) -> str:
        """A 404 page that says what was not found and which rule sets are served."""
        known = ", ".join(self.rule_sets)
        body = f"<h1>Not found</h1><p>{_e(message)}</p><p>Rule sets served here: {_e(known)}.</p>"
        return _document("Not found", body, nav=_nav(version))


# --- helpers --------------------------------------------------------------------------------------


def doi_url(doi: str) -> str:
    """https://doi.org/<doi>, percent-encoding what a DOI may hold but a URL path may not."""
    return DOI_BASE + quote(doi, safe="/:;()._-")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _document(title: str, body: str, *, nav: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - rls-screen</title><style>{_STYLE}</style></head><body>"
        f'<header><p>rls-screen rule documentation</p>{nav}</header><main id="main">{body}</main>'
        "<footer><p>Decision support; it supports clinical judgement and makes no diagnosis.</p></footer>"
        "</body></html>"
    )


def _nav(version: str | None) -> str:
    """Links relative to the page (every page but the index sits at /rules/<version>/...), so they work
    under any public URL, a proxy's path prefix included."""
    index = '<a href="../">All rule sets</a>'
    if version is None:
        return f'<nav aria-label="Rule documentation">{index}</nav>'
    return f'<nav aria-label="Rule documentation">{index} | <a href="./">Rule set {_e(version)}</a></nav>'


def _rule_nodes(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, dict):
        if isinstance(node.get("ruleId"), str):
            yield path or "(top level)", node
        for key, value in node.items():
            yield from _rule_nodes(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from _rule_nodes(item, f"{path}[{n}]")


def _citations(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("itations") and isinstance(value, list):
                yield from (str(v) for v in value)
            elif key != "citations":
                yield from _citations(value)
    elif isinstance(node, list):
        for item in node:
            yield from _citations(item)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _table_rows(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def _spec_excerpts(spec: str, rule_id: str) -> str:
    """The docs/rules.md blocks that name the rule id, each under its section heading."""
    word = re.compile(rf"(?<![A-Z0-9-]){re.escape(rule_id)}(?![A-Z0-9-])")
    parts: list[str] = []
    section = ""
    for block in re.split(r"\n\s*\n", spec):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("#"):
            section = lines[0].lstrip("#").strip()
            lines = lines[1:]
        if not word.search("\n".join(lines)):
            continue
        if lines and lines[0].startswith("|"):  # a table: its header and the rows that name the rule
            head, rows = lines[:2], [row for row in lines[2:] if word.search(row)]
            chosen = "\n".join([*head, *rows])
        else:
            chosen = "\n".join(lines)
        parts.append(f"<h3>{_e(section)}</h3>" + markdown_html(chosen, heading_offset=2))
    return "".join(parts) or "<p>docs/rules.md does not name this rule.</p>"


# --- a small markdown subset (headings, paragraphs, lists, tables, **bold**, `code`, [text](link)) -----

_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _inline(text: str) -> str:
    text = _LINK.sub(r"\1", text)  # repository links do not resolve on the service: keep their text
    escaped = _e(text)
    escaped = _INLINE_CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def markdown_html(text: str, *, heading_offset: int = 1) -> str:
    """The markdown of docs/rules.md as escaped HTML (a subset: what that file uses)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if not lines:
            continue
        first = lines[0]
        if first.startswith("#"):
            level = min(len(first) - len(first.lstrip("#")) + heading_offset, 6)
            out.append(f"<h{level}>{_inline(first.lstrip('#').strip())}</h{level}>")
            lines = lines[1:]
            if not lines:
                continue
            first = lines[0]
        if first.startswith("|"):
            out.append(_table(lines))
        elif re.match(r"\s*(- |\d+\. )", first):
            out.append(_list(lines))
        else:
            out.append(f"<p>{_inline(' '.join(line.strip() for line in lines))}</p>")
    return "".join(out)


def _table(lines: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
    header = "".join(f'<th scope="col">{_inline(c)}</th>' for c in head)
    cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"


def _list(lines: list[str]) -> str:
    ordered = bool(re.match(r"\s*\d+\. ", lines[0]))
    items: list[str] = []
    for line in lines:
        match = re.match(r"\s*(?:- |\d+\. )(.*)", line)
        if match and not line.startswith("   "):
            items.append(match.group(1))
        elif items:
            items[-1] += " " + line.strip()
    tag = "ol" if ordered else "ul"
    return f"<{tag}>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + f"</{tag}>"
