"""The SMART app as a clinician uses it: Debian's Chromium (headless, driven by Playwright) runs the EHR launch
and the standalone launch against the real authorization server and the shared HAPI server, resolves a Flag
and accepts the iron-studies proposal in the page; the test then reads the server. axe-core, injected into
the page, finds no serious or critical violation. Screenshots go to docs/img/ when UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.app.conftest import PASSWORD, PRACTITIONER, USER, SmartStack

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """The shared system-Chromium page (tests/support/browser.py), allowed to reach the loopback servers;
    it fails the test on any script error or Content-Security-Policy violation in the app's pages."""
    return new_page(allow_network=True)


def sign_in(page: Any, *, patient: str | None = None) -> None:
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    if patient is not None:
        page.get_by_label("Patient id").fill(patient)
    page.get_by_role("button", name="Sign in and allow").click()
    page.wait_for_url("**/app/summary")


def screenshot(page: Any, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / name), full_page=True)


def fhir_get(stack: SmartStack, path: str, **params: str) -> dict[str, Any]:
    response = requests.get(
        f"{stack.fhir_base_url}/{path}", params=params, headers={"Cache-Control": "no-cache"}, timeout=30
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_ehr_launch_in_the_browser_then_resolve_a_flag(
    smart_stack: SmartStack, seed_patient: Callable[..., str], page: Any, axe: Callable[..., list[Any]]
) -> None:
    pid = seed_patient()
    launch = smart_stack.ehr_launch(pid)
    page.goto(f"{smart_stack.app_url}/app/launch?iss={smart_stack.fhir_base_url}&launch={launch}")
    assert page.url.startswith(f"{smart_stack.auth_url}/interaction/")
    sign_in(page)
    assert page.get_by_text(f"record {pid}").is_visible()
    assert page.get_by_role("heading", name="Findings").is_visible()
    assert page.locator("svg[role=img]").count() >= 2  # ferritin and TSAT at least
    assert page.get_by_text("signed in as Dr Alys Rees").is_visible()
    assert page.get_by_text("Results not used for this finding").first.is_visible()
    assert axe(page) == []
    screenshot(page, "smart-app-summary.png")

    flags = [e["resource"] for e in fhir_get(smart_stack, "Flag", subject=f"Patient/{pid}")["entry"]]
    flag_id = next(f["id"] for f in flags if f["status"] == "active")
    form = page.locator(f"form[action='flags/{flag_id}']")
    form.get_by_label("Reason").fill("Iron replaced in clinic; repeat studies booked")
    form.get_by_role("button", name="Resolve").click()
    page.wait_for_url("**/app/summary")

    flag = fhir_get(smart_stack, f"Flag/{flag_id}")
    assert flag["status"] == "inactive"
    assert "end" in flag["period"]
    provenance = fhir_get(smart_stack, "Provenance", target=f"Flag/{flag_id}")["entry"]
    by_user = [e["resource"] for e in provenance if e["resource"]["agent"][0]["who"].get("display") == "Dr Alys Rees"]
    assert len(by_user) == 1
    assert by_user[0]["agent"][0]["who"]["reference"] == f"Practitioner/{PRACTITIONER}"
    assert by_user[0]["reason"][0]["text"] == "Iron replaced in clinic; repeat studies booked"
    assert page.locator(f"form[action='flags/{flag_id}']").count() == 0  # no longer active: no form


def test_standalone_launch_in_the_browser_and_accept_the_proposal(
    smart_stack: SmartStack, seed_patient: Callable[..., str], page: Any, axe: Callable[..., list[Any]]
) -> None:
    pid = seed_patient(iron_studies=False)
    page.goto(f"{smart_stack.app_url}/app/start")
    sign_in(page, patient=pid)
    assert page.get_by_text(f"record {pid}").is_visible()
    proposal = fhir_get(smart_stack, "ServiceRequest", subject=f"Patient/{pid}", intent="proposal")["entry"]
    proposal_id = proposal[0]["resource"]["id"]
    assert axe(page) == []
    screenshot(page, "smart-app-proposal.png")
    page.get_by_role("button", name="Accept as a draft order").click()
    page.wait_for_url("**/app/summary")
    orders = fhir_get(smart_stack, "ServiceRequest", subject=f"Patient/{pid}", intent="order")["entry"]
    assert len(orders) == 1
    order = orders[0]["resource"]
    assert order["status"] == "draft"
    assert order["basedOn"] == [{"reference": f"ServiceRequest/{proposal_id}"}]
    assert order["requester"]["reference"] == f"Practitioner/{PRACTITIONER}"
    # the page says so, and offers no second acceptance
    assert page.get_by_text("accepted as a draft order").is_visible()
    assert page.get_by_role("button", name="Accept as a draft order").count() == 0
    screenshot(page, "smart-app-proposal-accepted.png")
