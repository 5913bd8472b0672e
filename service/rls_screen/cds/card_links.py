"""Where a card may link: the service's own rule pages, a guideline's DOI, and the clinician app.

Nothing links to a host the site did not configure. With ``RLS_SCREEN_PUBLIC_URL`` set, cards link
to this service's rule pages (``{public_url}/rules/{version}/`` and ``.../{rule_id}``, served by
``cds.rule_pages``); with ``RLS_SCREEN_APP_CLIENT_ID`` set too, they carry a SMART link to
``{public_url}/app/launch``. Without a public URL the only links are https://doi.org/ links for the
citations whose DOI the rule set records (``citations.*.doi``). ``card_link_urls`` lists every
URL a card points at (links, source, markdown in the detail), for tests that follow them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rls_screen.cds.models import Link
from rls_screen.ruledocs import doi_url
from rls_screen.ruleset import RuleSet

_MARKDOWN_LINK = re.compile(r"(?<!\\)\]\((https?://[^)\s]+)\)")


@dataclass(frozen=True)
class CardLinks:
    """The link targets a deployment configured; the default (nothing configured) gives DOI links only."""

    public_url: str | None = None
    app_client_id: str | None = None

    def rule_set_url(self, version: str) -> str | None:
        return f"{self.public_url}/rules/{quote(version)}/" if self.public_url else None

    def rule_url(self, version: str, rule_id: str) -> str | None:
        return f"{self.public_url}/rules/{quote(version)}/{quote(rule_id)}" if self.public_url else None

    def smart_link(self) -> Link | None:
        """The clinician app's launch link (type smart), only when the app and the public URL are configured."""
        if not (self.public_url and self.app_client_id):
            return None
        return Link(label="Open the RLS screen app", url=f"{self.public_url}/app/launch", type="smart")


def citation_dois(rules: RuleSet, citations: Iterable[str]) -> list[tuple[str, str]]:
    """(short label, DOI URL) for each distinct citation text that has a DOI in the rule set."""
    found: dict[str, str] = {}
    for text in citations:
        citation = rules.citation_of(text)
        if citation is not None and citation.doi:
            found.setdefault(citation.short, doi_url(citation.doi))
    return list(found.items())


def card_link_urls(card: Mapping[str, Any], *, smart: bool = False) -> list[str]:
    """Every URL a card (as JSON) points at: links[].url, source.url and markdown links in the detail.

    SMART links are left out unless ``smart``: the EHR launches them (with ``launch`` and ``iss``), a
    browser does not simply open them."""
    urls = [str(link["url"]) for link in card.get("links") or [] if smart or link.get("type") != "smart"]
    source = card.get("source") or {}
    if source.get("url"):
        urls.append(str(source["url"]))
    urls += _MARKDOWN_LINK.findall(str(card.get("detail") or ""))
    return list(dict.fromkeys(urls))
