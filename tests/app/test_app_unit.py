"""Pure parts of the SMART app: the id_token check (signature, issuer, audience, nonce), discovery's refusals,
the authorize URL, single-use launches, the Flag and order builders, the chart lines and the page's escaping."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from rls_screen.app import actions, pages
from rls_screen.app.charts import CHARTS, rule_value
from rls_screen.app.sessions import PendingLaunch, SessionStore, UserSession
from rls_screen.app.smart import LaunchError, Pkce, SmartClient, SmartConfiguration, check_id_token
from rls_screen.knowledge import load_knowledge
from rls_screen.urls import Allowlist

pytestmark = [pytest.mark.unit]

ISS = "http://127.0.0.1:8080/fhir"
AUTH = "http://127.0.0.1:8095"
CONFIG = SmartConfiguration(AUTH, f"{AUTH}/auth", f"{AUTH}/token", f"{AUTH}/jwks")


@pytest.fixture(scope="module")
def key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(key: Any) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}


def id_token(key: Any, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": AUTH, "aud": "app", "sub": "dr", "iat": now, "exp": now + 300, "nonce": "n-1", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def client() -> SmartClient:
    return SmartClient("app", None, Allowlist((ISS,)), Allowlist((AUTH,)), requests.Session())


def test_id_token_with_the_right_nonce_is_accepted(key: Any) -> None:
    claims = check_id_token(
        id_token(key, fhirUser=f"{ISS}/Practitioner/p1"), jwks(key), issuer=AUTH, client_id="app", nonce="n-1"
    )
    assert claims["fhirUser"] == f"{ISS}/Practitioner/p1"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"nonce": "n-2"}, "nonce does not match"),
        ({"nonce": None}, "nonce does not match"),
        ({"aud": "another-app"}, "InvalidAudienceError"),
        ({"iss": "http://127.0.0.1:9999"}, "InvalidIssuerError"),
        ({"exp": int(time.time()) - 3600}, "ExpiredSignatureError"),
    ],
)
def test_id_token_refused(key: Any, claims: dict[str, Any], message: str) -> None:
    token = id_token(key, **claims)  # nonce None: sent as null, as good as missing
    with pytest.raises(LaunchError, match=message):
        check_id_token(token, jwks(key), issuer=AUTH, client_id="app", nonce="n-1")


def test_id_token_signed_by_another_key_is_refused(key: Any) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(LaunchError, match="not accepted"):
        check_id_token(id_token(other), jwks(key), issuer=AUTH, client_id="app", nonce="n-1")


def test_iss_off_the_allowlist_is_refused() -> None:
    with pytest.raises(LaunchError, match="not one this app may use") as caught:
        client().check_iss("https://ehr.example.org/fhir")
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"authorization_endpoint": f"{AUTH}/auth", "token_endpoint": f"{AUTH}/token"}, "PKCE S256"),
        (
            {
                "authorization_endpoint": f"{AUTH}/auth",
                "token_endpoint": f"{AUTH}/token",
                "code_challenge_methods_supported": ["plain"],
            },
            "PKCE S256",
        ),
        (
            {
                "authorization_endpoint": "https://phish.example/auth",
                "token_endpoint": f"{AUTH}/token",
                "code_challenge_methods_supported": ["S256"],
            },
            "authorization endpoint is not on an allowed",
        ),
        ({"token_endpoint": f"{AUTH}/token", "code_challenge_methods_supported": ["S256"]}, "no authorization"),
    ],
)
def test_smart_configuration_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        client()._configuration(document)


def test_authorize_url_carries_every_smart_parameter() -> None:
    pkce = Pkce.of("v" * 43)
    url = client().authorize_url(
        CONFIG,
        iss=ISS,
        redirect_uri="http://app/cb",
        scope="launch openid",
        state="s",
        pkce=pkce,
        nonce="n",
        launch="L",
    )
    params = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    assert params == {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": "http%3A%2F%2Fapp%2Fcb",
        "scope": "launch+openid",
        "state": "s",
        "aud": "http%3A%2F%2F127.0.0.1%3A8080%2Ffhir",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "launch": "L",
        "nonce": "n",
    }


def test_a_launch_is_taken_once_and_expires() -> None:
    now = [100.0]
    store = SessionStore(clock=lambda: now[0])
    launch = PendingLaunch(ISS, CONFIG, Pkce.new(), "n", "b", False, expires_at=160.0)
    store.add_launch("s1", launch)
    store.add_launch("s2", launch)
    assert store.take_launch("s1") == launch
    assert store.take_launch("s1") is None
    now[0] = 161.0
    assert store.take_launch("s2") is None


USER = UserSession(ISS, "pat-1", "token", "", f"{ISS}/Practitioner/p1", "Dr A", "csrf", 0.0)


def test_resolving_a_flag_sets_inactive_and_the_end_keeps_the_input() -> None:
    flag = {
        "resourceType": "Flag",
        "id": "f1",
        "status": "active",
        "period": {"start": "2026-01-05"},
        "meta": {"versionId": "2"},
    }
    resolved = actions.changed_flag(flag, "resolve", date(2026, 12, 1))
    assert resolved["status"] == "inactive"
    assert resolved["period"] == {"start": "2026-01-05", "end": "2026-12-01"}
    assert "meta" not in resolved
    assert flag["status"] == "active"
    assert "end" not in flag["period"]
    wrong = actions.changed_flag(flag, "entered-in-error", date(2026, 12, 1))
    assert wrong["status"] == "entered-in-error"
    assert wrong["period"] == {"start": "2026-01-05"}


def test_the_user_is_referenced_relative_to_the_fhir_server() -> None:
    assert actions.user_reference(USER) == {"reference": "Practitioner/p1", "display": "Dr A"}
    elsewhere = UserSession(ISS, "pat-1", "t", "", "https://idp.example/Practitioner/p1", None, "c", 0.0)
    assert actions.user_reference(elsewhere) == {
        "reference": "https://idp.example/Practitioner/p1",
        "display": "the signed-in user",
    }


def test_the_draft_order_is_based_on_the_proposal() -> None:
    proposal = {"resourceType": "ServiceRequest", "id": "sr1", "code": {"text": "Ferritin"}, "intent": "proposal"}
    order = actions.draft_order(proposal, USER, date(2026, 12, 1))
    assert order["intent"] == "order"
    assert order["status"] == "draft"
    assert order["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert order["code"] == {"text": "Ferritin"}
    assert order["requester"]["reference"] == "Practitioner/p1"


def test_every_chart_line_is_a_number_of_the_shipped_rule_set() -> None:
    rules = load_knowledge().ruleset.model_dump(by_alias=True, mode="json")
    values = {line.path: rule_value(rules, line.path) for _, lines in CHARTS for line in lines}
    assert values["iron.band.tsatBelow"] == 20
    assert values["kidney.gfrCategories.3.below"] == 60
    assert all(v > 0 for v in values.values())


def test_csp_allows_no_script_and_no_other_origin() -> None:
    headers = pages.security_headers("'self' https://ehr.example.org")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "unsafe-inline" not in csp
    assert csp.split("; ")[:-1] == [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "base-uri 'none'",
    ]
    assert csp.endswith("frame-ancestors 'self' https://ehr.example.org")
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("value", ["'self'; script-src *", "'self'\r\nSet-Cookie: x", ""])
def test_frame_ancestors_cannot_add_a_directive(value: str) -> None:
    from pydantic import ValidationError

    from rls_screen.app.settings import AppSettings

    with pytest.raises(ValidationError):
        AppSettings(frame_ancestors=value)


def test_page_text_from_fhir_is_escaped() -> None:
    html = pages.problem('<script>alert("x")</script>')
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
