"""The parts of a card that depend only on the rule set, the terminology and the configured link targets.

A card's source, override reasons, rule and DOI links, its guideline cells, its list of sources and its
disclaimer are the same for every call of a process: ``CdsRuntime`` builds one ``CardConstants`` and
every call's ``CardBuilder`` reads from it, so they are worked out once per rule id, topic or citation
list instead of once per card (issue 18: URL quoting, citation look-ups and the pydantic models of these parts were
a fifth of the card's cost). A builder made without one (tests, the golden files) makes its own. The
parts handed out are shared: a card never modifies its source or its links after it is built.
"""

from __future__ import annotations

from collections.abc import Iterable

from rls_screen.cds.card_links import CardLinks, citation_dois
from rls_screen.cds.markdown import md
from rls_screen.cds.models import Coding, Link, Source
from rls_screen.codesets import FINDING_SYSTEM, OVERRIDE_REASON_SYSTEM
from rls_screen.knowledge import Knowledge
from rls_screen.ruledocs import doi_url

DISCLAIMER = (
    "_Decision support from rls-screen (rule set {version}); it supports clinical judgement and makes no diagnosis._"
)


class CardConstants:
    """Memoised per-rule-set card parts; the keys (rule ids, finding codes, citation lists) are bounded by
    the rule set, so the memos stay small. The call threads fill them at once: a dict read or write is
    atomic, so a race only works a part out twice, to the same value."""

    def __init__(self, knowledge: Knowledge, links: CardLinks | None = None) -> None:
        self._knowledge, self._rules = knowledge, knowledge.ruleset
        self.link_targets = links or CardLinks()
        self.disclaimer = DISCLAIMER.format(version=self._rules.version)
        self.source_label = f"rls-screen, rule set {self._rules.version}"
        reasons = knowledge.terminology.override_reasons  # CodeSystem-cds-override-reason.json
        self._override_reasons = tuple(
            Coding(system=OVERRIDE_REASON_SYSTEM, code=code, display=display) for code, display in reasons
        )
        self._sources: dict[str, Source] = {}
        self._rule_urls: dict[str, str | None] = {}
        self._links: dict[tuple[str, tuple[str, ...], bool], tuple[Link, ...]] = {}
        self._guideline_cells: dict[tuple[str, ...], str] = {}
        self._sources_lines: dict[tuple[str, ...], tuple[str, ...]] = {}

    def source(self, topic: str) -> Source:
        source = self._sources.get(topic)
        if source is None:
            source = Source(
                label=self.source_label,
                url=self.link_targets.rule_set_url(self._rules.version),  # omitted without a public URL
                topic=Coding(system=FINDING_SYSTEM, code=topic, display=self._knowledge.terminology.display(topic)),
            )
            self._sources[topic] = source
        return source

    def override_reasons(self) -> list[Coding] | None:
        return list(self._override_reasons) or None  # CDS Hooks: omit, never send empty

    def rule_url(self, rule_id: str) -> str | None:
        if rule_id not in self._rule_urls:
            self._rule_urls[rule_id] = self.link_targets.rule_url(self._rules.version, rule_id)
        return self._rule_urls[rule_id]

    def links(self, rule_id: str, citations: Iterable[str], *, smart: bool) -> list[Link] | None:
        """The rule's page on this service (when its public URL is configured), each guideline's DOI, and
        the clinician app (``smart``, patient-view only, when configured); None when there is none."""
        key = (rule_id, tuple(citations), smart)
        links = self._links.get(key)
        if links is None:
            found: list[Link] = []
            rule_url = self.rule_url(rule_id)
            if rule_url:
                label = f"Rule {rule_id} (rule set {self._rules.version})"
                found.append(Link(label=label, url=rule_url, type="absolute"))
            found += [
                Link(label=f"{label} (guideline, doi.org)", url=url, type="absolute")
                for label, url in citation_dois(self._rules, key[1])
            ]
            app = self.link_targets.smart_link() if smart else None
            if app is not None:
                found.append(app)
            links = self._links[key] = tuple(found)
        return list(links) or None  # CDS Hooks: omit, never send empty

    def guideline_cell(self, citations: Iterable[str]) -> str:
        """The one card's guideline cell: each distinct citation's short label, linked to its DOI when known."""
        key = tuple(citations)
        cell = self._guideline_cells.get(key)
        if cell is None:
            cells = []
            for text in dict.fromkeys(key):
                citation = self._rules.citation_of(text)
                label = citation.short if citation else md(text)
                cells.append(f"[{label}]({doi_url(citation.doi)})" if citation and citation.doi else label)
            cell = self._guideline_cells[key] = "; ".join(dict.fromkeys(cells)) or "-"
        return cell

    def sources(self, citations: Iterable[str]) -> list[str]:
        """The detail's numbered list of the distinct full citations, in order of first mention."""
        key = tuple(citations)
        lines = self._sources_lines.get(key)
        if lines is None:
            unique = list(dict.fromkeys(key))
            listed = [f"{n}. {c}" for n, c in enumerate(unique, 1)]
            lines = self._sources_lines[key] = ("**Sources**", "", *listed, "") if unique else ()
        return list(lines)
