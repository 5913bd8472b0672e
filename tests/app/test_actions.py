"""The app's actions over HTTP with the user's session: CSRF refused, entered-in-error written with its
Provenance, another patient's Flag refused, and a stale form (Flag no longer active) refused."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import requests

from tests.app.conftest import SmartStack
from tests.app.flow import sign_in

pytestmark = [pytest.mark.fhir]


def signed_in(stack: SmartStack, pid: str) -> tuple[requests.Session, str]:
    """A browser session signed in for ``pid`` by EHR launch; its CSRF token from the summary page."""
    browser = requests.Session()
    start = browser.get(
        f"{stack.app_url}/app/launch",
        params={"iss": stack.fhir_base_url, "launch": stack.ehr_launch(pid)},
        allow_redirects=False,
        timeout=30,
    )
    assert browser.get(sign_in(browser, start.headers["location"], stack.auth_url), timeout=60).status_code == 200
    page = browser.get(f"{stack.app_url}/app/summary", timeout=60).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    return browser, csrf.group(1)


def active_flag(stack: SmartStack, pid: str) -> str:
    bundle = requests.get(
        f"{stack.fhir_base_url}/Flag",
        params={"subject": f"Patient/{pid}"},
        headers={"Cache-Control": "no-cache"},
        timeout=30,
    ).json()
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["status"] == "active")


def flag_status(stack: SmartStack, flag_id: str) -> str:
    return str(requests.get(f"{stack.fhir_base_url}/Flag/{flag_id}", timeout=30).json()["status"])


def test_form_without_the_csrf_token_changes_nothing(smart_stack: SmartStack, seed_patient: Callable[..., str]) -> None:
    pid = seed_patient()
    browser, _ = signed_in(smart_stack, pid)
    flag_id = active_flag(smart_stack, pid)
    for csrf in ("", "guessed"):
        answer = browser.post(
            f"{smart_stack.app_url}/app/flags/{flag_id}",
            data={"csrf": csrf, "action": "resolve", "reason": "x"},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 403
    assert flag_status(smart_stack, flag_id) == "active"


def test_entered_in_error_is_written_with_a_provenance(
    smart_stack: SmartStack, seed_patient: Callable[..., str]
) -> None:
    pid = seed_patient()
    browser, csrf = signed_in(smart_stack, pid)
    flag_id = active_flag(smart_stack, pid)
    answer = browser.post(
        f"{smart_stack.app_url}/app/flags/{flag_id}",
        data={"csrf": csrf, "action": "entered-in-error", "reason": "result belonged to another episode"},
        allow_redirects=False,
        timeout=60,
    )
    assert answer.status_code == 303, answer.text[:300]
    assert flag_status(smart_stack, flag_id) == "entered-in-error"
    provenance = requests.get(
        f"{smart_stack.fhir_base_url}/Provenance", params={"target": f"Flag/{flag_id}"}, timeout=30
    ).json()["entry"]
    mine = [e["resource"] for e in provenance if e["resource"].get("reason")]
    assert [p["reason"][0]["text"] for p in mine] == ["result belonged to another episode"]
    # the same form again: the Flag is no longer active, nothing more is written
    again = browser.post(
        f"{smart_stack.app_url}/app/flags/{flag_id}",
        data={"csrf": csrf, "action": "resolve", "reason": "again"},
        allow_redirects=False,
        timeout=60,
    )
    assert again.status_code == 400
    assert "no longer active" in again.text


def test_another_patients_flag_is_refused(smart_stack: SmartStack, seed_patient: Callable[..., str]) -> None:
    other = seed_patient()
    other_flag = active_flag(smart_stack, other)
    mine = f"{other}-b"
    requests.put(
        f"{smart_stack.fhir_base_url}/Patient/{mine}", json={"resourceType": "Patient", "id": mine}, timeout=30
    ).raise_for_status()
    browser, csrf = signed_in(smart_stack, mine)
    answer = browser.post(
        f"{smart_stack.app_url}/app/flags/{other_flag}",
        data={"csrf": csrf, "action": "resolve", "reason": "not mine"},
        allow_redirects=False,
        timeout=60,
    )
    assert answer.status_code == 400
    assert "not one of this patient" in answer.text
    assert flag_status(smart_stack, other_flag) == "active"
