"""The SMART launch against the real authorization server and the shared HAPI server, over HTTP.

The independent acceptance check: ``GET /app/launch?iss=&launch=`` redirects to the authorization
endpoint with response_type, client_id, redirect_uri, scope, state, aud, launch and PKCE S256.
Then the whole EHR and standalone launch, ``state`` refused when unknown, replayed or from another
browser, a non-allowlisted ``iss`` refused, the security headers, and no token in the logs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable

import pytest
import requests

from tests.app.conftest import CLIENT_ID, SmartStack
from tests.app.flow import query, sign_in

pytestmark = [pytest.mark.fhir]


def launch_url(stack: SmartStack, launch: str | None) -> str:
    params = {"iss": stack.fhir_base_url}
    if launch is not None:
        params["launch"] = launch
    return requests.Request("GET", f"{stack.app_url}/app/launch", params=params).prepare().url or ""


def test_ehr_launch_redirects_to_the_authorization_endpoint_with_pkce_aud_launch_state(smart_stack: SmartStack) -> None:
    launch = smart_stack.ehr_launch("pat-any")
    response = requests.get(launch_url(smart_stack, launch), allow_redirects=False, timeout=30)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{smart_stack.auth_url}/auth?")
    params = query(location)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == f"{smart_stack.app_url}/app/callback"
    assert params["aud"] == smart_stack.fhir_base_url
    assert params["launch"] == launch
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32
    assert params["nonce"]
    assert {"launch", "openid", "fhirUser", "patient/Observation.rs"} <= set(params["scope"].split())
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/app" in cookie
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_a_second_launch_gets_a_fresh_state_and_challenge(smart_stack: SmartStack) -> None:
    first = query(requests.get(launch_url(smart_stack, None), allow_redirects=False, timeout=30).headers["location"])
    second = query(requests.get(launch_url(smart_stack, None), allow_redirects=False, timeout=30).headers["location"])
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]
    assert "launch" not in first
    assert "launch/patient" in first["scope"].split()


def test_iss_not_on_the_allowlist_is_refused_without_a_request(smart_stack: SmartStack) -> None:
    response = requests.get(
        f"{smart_stack.app_url}/app/launch",
        params={"iss": "https://evil.example/fhir", "launch": "x"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 403
    assert "not one this app may use" in response.text
    assert "location" not in response.headers


def test_launch_without_iss_is_refused(smart_stack: SmartStack) -> None:
    response = requests.get(f"{smart_stack.app_url}/app/launch", allow_redirects=False, timeout=30)
    assert response.status_code == 400


def test_whole_ehr_launch_shows_the_patient_in_context_and_logs_no_token(
    smart_stack: SmartStack, seed_patient: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pid = seed_patient()
    browser = requests.Session()
    start = browser.get(launch_url(smart_stack, smart_stack.ehr_launch(pid)), allow_redirects=False, timeout=30)
    callback = sign_in(browser, start.headers["location"], smart_stack.auth_url)
    assert callback.startswith(f"{smart_stack.app_url}/app/callback?")
    finished = browser.get(callback, allow_redirects=False, timeout=30)
    assert finished.status_code == 303, finished.text[:400]
    session_cookie = browser.cookies.get("rls_app_session", path="/app")
    assert session_cookie
    summary = browser.get(f"{smart_stack.app_url}/app/summary", timeout=60)
    assert summary.status_code == 200, summary.text[:400]
    assert f"record {pid}" in summary.text
    assert "ferritin" in summary.text
    assert "IRON-" in summary.text
    assert "<script" not in summary.text
    # the code and state were in a URL; neither, nor the session key, may be in a log line
    # (the module's loggers and the server's; the test's own HTTP client logs the URLs it follows)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("rls_screen", "uvicorn")))
    for secret in (query(callback)["code"], query(callback)["state"], session_cookie):
        assert secret not in logged
    assert "Bearer" not in logged


def test_standalone_launch_asks_for_the_patient(smart_stack: SmartStack, seed_patient: Callable[..., str]) -> None:
    pid = seed_patient()
    browser = requests.Session()
    start = browser.get(f"{smart_stack.app_url}/app/start", allow_redirects=False, timeout=30)
    assert start.status_code == 302
    callback = sign_in(browser, start.headers["location"], smart_stack.auth_url, patient=pid)
    assert browser.get(callback, allow_redirects=False, timeout=30).status_code == 303
    assert f"record {pid}" in browser.get(f"{smart_stack.app_url}/app/summary", timeout=60).text


def test_state_is_single_use_and_bound_to_the_browser(smart_stack: SmartStack) -> None:
    browser = requests.Session()
    start = browser.get(launch_url(smart_stack, smart_stack.ehr_launch("pat-state")), allow_redirects=False, timeout=30)
    callback = sign_in(browser, start.headers["location"], smart_stack.auth_url)
    # another browser (no launch cookie) presenting this callback: refused, and the state is spent
    stranger = requests.get(callback, allow_redirects=False, timeout=30)
    assert stranger.status_code == 400
    assert "another browser" in stranger.text
    replay = browser.get(callback, allow_redirects=False, timeout=30)
    assert replay.status_code == 400
    assert "unknown, used or expired" in replay.text
    forged = browser.get(f"{smart_stack.app_url}/app/callback", params={"code": "x", "state": "forged"}, timeout=30)
    assert forged.status_code == 400


def test_summary_without_a_session_is_refused(smart_stack: SmartStack) -> None:
    response = requests.get(f"{smart_stack.app_url}/app/summary", cookies={"rls_app_session": "made-up"}, timeout=30)
    assert response.status_code == 401


def test_pkce_challenge_is_s256_of_the_verifier() -> None:
    from rls_screen.app.smart import Pkce

    # RFC 7636 appendix B
    assert (
        Pkce.of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").challenge
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    fresh = Pkce.new()
    digest = base64.urlsafe_b64encode(hashlib.sha256(fresh.verifier.encode()).digest()).rstrip(b"=").decode()
    assert fresh.challenge == digest
    assert 43 <= len(fresh.verifier) <= 128
