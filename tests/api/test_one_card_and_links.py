"""The one patient-view card, its links, the rule pages they point at, and the Flag banner text.

For every golden scenario (the synthetic panel of tests/unit/test_golden.py): one card per call (per-finding
mode: one per finding, as before), a summary under 140 characters, the highest indicator of the findings,
the table in ``rls_screen.priority`` order. Every link of every card is either answered 200 by the running
service (real uvicorn) or a DOI the rule set lists; the SMART link appears only when configured; the rule
pages exist per version and rule id, and unknown ones get a clear 404 page.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.api.helpers import (
    NORMAL,
    ORDER_SIGN,
    PATIENT_VIEW,
    ServerFactory,
    full_prefetch,
    labs,
    medication_request,
    order_request,
    patient_view_request,
)

import rls_screen.ruleset
from rls_screen import synth
from rls_screen.assessment import assess
from rls_screen.cds.card_links import CardLinks, card_link_urls
from rls_screen.cds.card_parts import INDICATOR_ORDER
from rls_screen.cds.cards import CardBuilder
from rls_screen.cds.services import discovery
from rls_screen.knowledge import load_knowledge
from rls_screen.model import Assessment
from rls_screen.patient_data import from_bundle
from rls_screen.priority import by_priority
from rls_screen.ruledocs import RuleDocs, doi_url
from rls_screen.wording import FLAG_BANNER_MAX, finding_head
from rls_screen.writeback import build_flag, build_service_request, flag_text, to_json

AS_OF = date(2026, 11, 25)
KNOWLEDGE = load_knowledge()
PUBLIC = "https://cds.example.org"


def _scenarios() -> dict[str, Assessment]:
    """The first patient of each scenario in the golden panel (seed 3, 120 patients), assessed."""
    panel = synth.generate_panel(120, seed=3, as_of=AS_OF, id_prefix="gold")
    chosen: dict[str, synth.PatientRecord] = {}
    for record in panel.patients:
        chosen.setdefault(record.manifest.scenario, record)
    return {
        name: assess(from_bundle(synth.urn_uuid_bundle(r, bundle_type="collection")), knowledge=KNOWLEDGE, as_of=AS_OF)
        for name, r in sorted(chosen.items())
    }


SCENARIOS = _scenarios()
DOIS = {doi_url(c.doi) for c in KNOWLEDGE.ruleset.citations.values() if c.doi}


def _cards(assessment: Assessment, *, links: CardLinks | None = None, mode: str = "one-card") -> list[dict[str, Any]]:
    builder = CardBuilder(KNOWLEDGE, PATIENT_VIEW, "hook-1", "subject-1", links=links, mode=mode)  # type: ignore[arg-type]
    return [d.card.model_dump(mode="json", by_alias=True, exclude_none=True) for d in builder.patient_view(assessment)]


def _items(assessment: Assessment) -> list[Any]:
    medicines = [a for a in assessment.advisories if a.code == "aggravating-medication"]
    return [*assessment.findings, *medicines]


def _table_names(card: dict[str, Any]) -> list[str]:
    """The Finding column of the detail table, in order (continuation rows leave it empty)."""
    rows = [line for line in card["detail"].splitlines() if line.startswith("| ") and not line.startswith("| Finding")]
    names = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    return [re.sub(r"^\[(.*)\]\(.*\)$", r"\1", name) for name in names if name]


# --- the card (pure) ----------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_one_card_per_call_and_per_finding_mode_as_before(scenario: str) -> None:
    assessment = SCENARIOS[scenario]
    items = _items(assessment)
    assert len(_cards(assessment)) == (1 if items else 0)
    assert len(_cards(assessment, mode="per-finding")) == len(items)


@pytest.mark.unit
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_summary_is_under_140_characters_in_both_modes(scenario: str) -> None:
    for mode in ("one-card", "per-finding"):
        for card in _cards(SCENARIOS[scenario], links=CardLinks(PUBLIC, "app"), mode=mode):
            assert 0 < len(card["summary"]) < 140, card["summary"]


@pytest.mark.unit
@pytest.mark.parametrize("scenario", sorted(s for s, a in SCENARIOS.items() if _items(a)))
def test_indicator_is_the_highest_and_the_table_follows_priority(scenario: str) -> None:
    assessment = SCENARIOS[scenario]
    (card,) = _cards(assessment)
    per_finding = _cards(assessment, mode="per-finding")
    assert card["indicator"] == max((c["indicator"] for c in per_finding), key=INDICATOR_ORDER.index)
    expected = [finding_head(f) for f in by_priority(_items(assessment), KNOWLEDGE.terminology.concepts)]
    assert _table_names(card) == expected
    if len(expected) > 1:
        count = len(expected) - 1
        assert f"+ {count} more" in card["summary"]


@pytest.mark.unit
def test_missing_iron_studies_keep_their_suggestion_on_the_one_card() -> None:
    with_gap = [a for a in SCENARIOS.values() if any(f.code == "missing-iron-studies" for f in a.findings)]
    assert with_gap
    for assessment in with_gap:
        (card,) = _cards(assessment)
        (suggestion,) = card["suggestions"]
        assert card["selectionBehavior"] == "at-most-one"
        assert suggestion["actions"][0]["resource"]["resourceType"] == "ServiceRequest"


@pytest.mark.unit
def test_pregnancy_is_said_once_on_the_one_card() -> None:
    pregnant = [a for a in SCENARIOS.values() if any(x.code == "pregnancy-aggravator" for x in a.advisories)]
    assert pregnant
    for assessment in pregnant:
        for card in _cards(assessment):
            assert card["detail"].count("Pregnancy is an established aggravator of RLS") == 1


@pytest.mark.unit
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_without_a_public_url_cards_link_only_to_listed_dois(scenario: str) -> None:
    for mode in ("one-card", "per-finding"):
        for card in _cards(SCENARIOS[scenario], links=CardLinks(None, "app"), mode=mode):
            assert "url" not in card["source"]
            assert all(link["type"] == "absolute" for link in card.get("links", []))  # no smart link either
            assert set(card_link_urls(card)) <= DOIS


@pytest.mark.unit
def test_the_smart_link_only_when_the_app_is_configured() -> None:
    assessment = SCENARIOS["multi-cause"]
    (plain,) = _cards(assessment, links=CardLinks(PUBLIC, None))
    assert [link for link in plain["links"] if link["type"] == "smart"] == []
    (with_app,) = _cards(assessment, links=CardLinks(PUBLIC, "rls-app"))
    (smart,) = [link for link in with_app["links"] if link["type"] == "smart"]
    assert smart["url"] == f"{PUBLIC}/app/launch"
    assert "appContext" not in smart


@pytest.mark.unit
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_flag_code_text_fits_a_banner_and_the_narrative_keeps_the_detail(scenario: str) -> None:
    assessment = SCENARIOS[scenario]
    for finding in assessment.findings:
        flag = to_json(
            build_flag(
                assessment,
                finding,
                KNOWLEDGE.terminology,
                KNOWLEDGE.ruleset,
                device_ref="Device/d",
                risk_assessment_ref="RiskAssessment/r",
                start=AS_OF,
            )
        )
        text = flag["code"]["text"]
        assert len(text) <= FLAG_BANNER_MAX, text
        assert text.startswith(f"RLS: {finding.display}")
        detail = flag_text(finding, KNOWLEDGE.ruleset).replace("<", "&lt;").replace(">", "&gt;")
        assert detail in flag["text"]["div"]


@pytest.mark.unit
def test_guideline_names_in_the_service_request_and_discovery_come_from_the_rule_set() -> None:
    rules = KNOWLEDGE.ruleset
    renamed = {k: c.model_copy(update={"short": f"{c.short} (renamed)"}) for k, c in rules.citations.items()}
    knowledge = dataclasses.replace(KNOWLEDGE, ruleset=rules.model_copy(update={"citations": renamed}))
    assessment = SCENARIOS["low-total-calcium-low-albumin"]
    request = to_json(
        build_service_request(
            assessment, rules=knowledge.ruleset, device_ref="D/1", risk_assessment_ref="R/1", status="draft"
        )
    )
    assert "AASM 2024 (renamed)" in request["text"]["div"]
    assert "AASM 2024 (renamed)" in request["reasonCode"][0]["text"]
    descriptions = [s.description for s in discovery(knowledge).services if "order" in s.id]
    assert all("AASM 2024 (renamed)" in d for d in descriptions)


# --- the running service ------------------------------------------------------------------------------


def _follow(server_url: str, urls: list[str]) -> None:
    for url in urls:
        if url.startswith(server_url):
            response = requests.get(url, timeout=30, allow_redirects=False)  # no JWT: a clinician's browser
            assert response.status_code == 200, url
            assert response.headers["content-type"].startswith("text/html")
        else:
            assert url in DOIS, url  # nothing links to a host the site did not configure


@pytest.mark.net
def test_every_link_of_every_card_is_answered_by_the_service_or_is_a_listed_doi(cds_server: ServerFactory) -> None:
    server, _ = cds_server()
    links = CardLinks(server.base_url, "rls-app")
    followed = 0
    for assessment in SCENARIOS.values():
        for mode in ("one-card", "per-finding"):
            for card in _cards(assessment, links=links, mode=mode):
                urls = card_link_urls(card)
                assert f"{server.base_url}/app/launch" not in urls  # the SMART link is launched by the EHR
                _follow(server.base_url, urls)
                followed += len(urls)
    assert followed > 50


@pytest.mark.net
def test_links_of_cards_sent_over_http_resolve(cds_server: ServerFactory) -> None:
    server, ehr = cds_server(app_client_id="rls-app")
    values = {**NORMAL, "ferritin": 9.0, "hb": 100.0, "k": 3.1}
    (card,) = ehr.call(PATIENT_VIEW, patient_view_request("ln1", full_prefetch("ln1", labs("ln1", **values)))).json()[
        "cards"
    ]
    assert [link["type"] for link in card["links"]].count("smart") == 1
    _follow(server.base_url, card_link_urls(card))
    prefetch = {**full_prefetch("ln2", []), "observations": None}
    order = medication_request("ln2", 1, code="746741", display="pramipexole", reason=True)
    cards = ehr.call(ORDER_SIGN, order_request("order-sign", "ln2", [order], prefetch)).json()["cards"]
    assert cards
    for order_card in cards:
        assert all(link["type"] == "absolute" for link in order_card["links"])  # the app link is patient-view only
        _follow(server.base_url, card_link_urls(order_card))


@pytest.mark.net
def test_rule_pages_per_version_and_rule_id(cds_server: ServerFactory) -> None:
    server, _ = cds_server()
    docs = RuleDocs.load()
    version = KNOWLEDGE.ruleset.version
    base = f"{server.base_url}/rules"
    index = requests.get(f"{base}/", timeout=30)
    assert index.status_code == 200
    assert f'href="{version}/"' in index.text
    page = requests.get(f"{base}/{version}/", timeout=30)
    assert page.status_code == 200
    for rule_id in docs.rule_ids(version):
        assert f'href="{rule_id}"' in page.text
        response = requests.get(f"{base}/{version}/{rule_id}", timeout=30)
        assert response.status_code == 200, rule_id
        html = response.text
        assert html.startswith('<!DOCTYPE html><html lang="en">')
        assert html.count("<h1>") == 1
        assert "<main" in html
        assert "<nav" in html
        assert f"<h1>Rule {rule_id} (rule set {version})</h1>" in html
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert not re.search(r"""(src|href)=["']?(https?:)?//(?!doi\.org/)""", html)  # no external assets or hosts
    iron = requests.get(f"{base}/{version}/IRON-DEFICIENCY", timeout=30).text
    assert '<th scope="row"><code>ferritinBelow</code></th><td>15</td>' in iron
    assert 'href="https://doi.org/10.5664/jcsm.11390"' in iron
    assert "<td>IRON-DEFICIENCY</td>" in iron  # its row of docs/rules.md


@pytest.mark.net
@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/rules/2026.3/NO-SUCH-RULE", "Rule set 2026.3 has no rule NO-SUCH-RULE."),
        ("/rules/1999.1/", "There is no rule set 1999.1."),
        ("/rules/1999.1/IRON-DEFICIENCY", "There is no rule set 1999.1."),
        ("/rules/2026.3/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "has no rule &lt;script&gt;alert(1)&lt;/script&gt;."),
        ("/rules/2026.3/%3Cb%3Ebold%3C%2Fb%3E", "has no rule &lt;b&gt;bold&lt;/b&gt;."),
    ],
)
def test_unknown_versions_and_rules_get_a_clear_404_page(cds_server: ServerFactory, path: str, says: str) -> None:
    server, _ = cds_server()
    response = requests.get(server.base_url + path, timeout=30)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert says in response.text
    assert "<script>" not in response.text
    assert "Rule sets served here: 2026.3" in response.text


@pytest.mark.net
def test_rule_paths_without_a_trailing_slash_redirect_relatively(cds_server: ServerFactory) -> None:
    server, _ = cds_server()
    assert requests.get(f"{server.base_url}/rules/2026.3", timeout=30, allow_redirects=False).headers["location"] == (
        "2026.3/"
    )
    followed = requests.get(f"{server.base_url}/rules", timeout=30)
    assert (followed.status_code, followed.url) == (200, f"{server.base_url}/rules/")


@pytest.mark.net
def test_other_paths_still_need_a_jwt(cds_server: ServerFactory) -> None:
    server, _ = cds_server()
    assert requests.get(f"{server.base_url}/rulesx", timeout=30).status_code == 401
    assert requests.get(f"{server.base_url}/cds-services", timeout=30).status_code == 401


@pytest.mark.unit
def test_each_rule_set_version_has_its_own_pages(tmp_path: Path) -> None:
    """A second version's file gets its own pages; docs/rules.md is shown only for the version it describes."""
    shipped = Path(rls_screen.ruleset.__file__).parent / rls_screen.ruleset.DEFAULT_RULESET
    data = json.loads(shipped.read_text(encoding="utf-8"))
    (tmp_path / shipped.name).write_text(json.dumps(data), encoding="utf-8")
    data["version"] = "2099.1"
    data["iron"]["deficiency"]["ferritinBelow"] = 16
    (tmp_path / "rls-secondary-causes-2099.1.json").write_text(json.dumps(data), encoding="utf-8")
    docs = RuleDocs.load(rule_sets_dir=tmp_path)
    assert list(docs.rule_sets) == ["2026.3", "2099.1"]
    current, other = docs.page("2026.3", "IRON-DEFICIENCY"), docs.page("2099.1", "IRON-DEFICIENCY")
    assert current[0] == other[0] == 200
    assert "<td>15</td>" in current[1]
    assert "<td>16</td>" in other[1]
    assert "<td>IRON-DEFICIENCY</td>" in current[1]  # docs/rules.md describes 2026.3 ...
    assert "docs/rules.md describes rule set 2026.3; for 2099.1 see the repository" in other[1]  # ... not 2099.1
    assert "ELECTROLYTE-CAVEAT" in docs.rule_ids("2026.3")  # named only in docs/rules.md
    assert docs.page("2099.1", "ELECTROLYTE-CAVEAT")[0] == 404
    assert docs.page("2099.2")[0] == 404
