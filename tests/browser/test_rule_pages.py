"""A clinician follows a card's links in a real browser: the rule pages the service serves open, read
properly (heading, the rule's threshold table) and pass axe-core; the guideline links are DOIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rls_screen.cds.app import create_app
from rls_screen.cds.card_links import card_link_urls
from rls_screen.cds.settings import CdsSettings
from rls_screen.settings import Settings
from tests.api.helpers import NORMAL, PATIENT_VIEW, LiveServer, full_prefetch, labs, patient_view_request

pytestmark = pytest.mark.browser


@pytest.fixture
def cds(tmp_path: Path) -> Iterator[LiveServer]:
    """The CDS service in development mode (no JWT; loopback only) with its own public URL."""
    server = LiveServer()
    settings = CdsSettings(
        public_url=server.base_url,
        cds_dev_mode=True,
        cds_feedback_db=tmp_path / "cds.sqlite3",
        cds_subject_salt="test-salt",
    )
    base = Settings(FHIR_BASE_URL="http://127.0.0.1:8080/fhir", state_dir=tmp_path, fhir_max_retries=0)
    server.start(create_app(settings, base))
    yield server
    server.stop()


def _card(server: LiveServer) -> dict[str, Any]:
    values = {**NORMAL, "ferritin": 9.0, "hb": 100.0, "k": 3.1}
    body = patient_view_request("brl1", full_prefetch("brl1", labs("brl1", **values)))
    answer = requests.post(f"{server.base_url}/cds-services/{PATIENT_VIEW}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    (card,) = answer.json()["cards"]
    return card


def test_a_cards_rule_links_open_readable_accessible_pages(
    cds: LiveServer, new_page: Callable[..., Any], axe: Callable[..., list[dict[str, Any]]]
) -> None:
    urls = card_link_urls(_card(cds))
    rule_pages = sorted({url for url in urls if url.startswith(f"{cds.base_url}/rules/")})
    dois = {url for url in urls if url.startswith("https://doi.org/10.")}
    assert len(rule_pages) >= 3  # iron deficiency, anaemia, low potassium and the rule-set page
    assert set(urls) == set(rule_pages) | dois  # nothing links to a host the site did not configure
    page = new_page(allow_network=True)
    for url in rule_pages:
        response = page.goto(url)
        assert response is not None, url
        assert response.status == 200, url
        assert page.locator("h1").count() == 1, url
        assert page.locator("main").count() == 1, url
        assert axe(page) == [], url
    page.goto(next(url for url in rule_pages if url.endswith("/IRON-DEFICIENCY")))
    assert page.locator("table th").count() > 0
    assert "15" in page.locator("main").inner_text()  # ferritin < 15 µg/L, from the rule-set file
