"""A token of the wrong shape is a bare 401, never a 500 and never accepted: each header field and claim
has one accepted type, times are finite and in range. The tokens are signed with the trusted key, so
only the type check can refuse them (a NaN ``iat`` with a valid signature used to pass)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from tests.api.helpers import (
    ES_KID,
    NORMAL,
    PATIENT_VIEW,
    Ehr,
    ServerFactory,
    SigningKey,
    compact_jws,
    full_prefetch,
    labs,
    patient_view_request,
)

pytestmark = pytest.mark.net
SERVICE = f"/cds-services/{PATIENT_VIEW}"
HUGE = "9" * 400  # float() of it overflows


@pytest.fixture
def ehr(cds_server: ServerFactory) -> Ehr:
    return cds_server()[1]


def _body() -> dict[str, Any]:
    return patient_view_request("tt1", full_prefetch("tt1", labs("tt1", **NORMAL)))


def _claims(ehr: Ehr, **replace: str) -> str:
    """The claims as JSON text; ``replace`` gives a claim's raw JSON (NaN, 1e400, a 400-digit int ...)."""
    now = int(time.time())
    values = {
        "iss": json.dumps(ehr.issuer),
        "aud": json.dumps(ehr.base_url + SERVICE),
        "exp": str(now + 300),
        "iat": str(now),
        "jti": json.dumps(str(uuid.uuid4())),
        **replace,
    }
    return "{" + ", ".join(f'"{name}": {raw}' for name, raw in values.items()) + "}"


def _header(**replace: Any) -> str:
    return json.dumps({"alg": "ES384", "kid": ES_KID, "typ": "JWT", **replace})


def _refused(ehr: Ehr, token: str, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    caplog.set_level(logging.INFO, logger="rls_screen.cds")
    response = ehr.post(SERVICE, _body(), token=token)
    assert (response.status_code, response.content) == (401, b""), response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    logged = [r.getMessage() for r in caplog.records if ": 401 on " in r.getMessage()]
    assert logged
    assert reason in logged[-1], logged


def test_a_well_formed_token_built_this_way_passes(ehr: Ehr, es_key: SigningKey) -> None:
    """The control: the same construction with correct types is accepted."""
    assert ehr.post(SERVICE, _body(), token=compact_jws(_header(), _claims(ehr), es_key)).status_code == 200


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": ["ES384"]}, "alg of type list not allowed"),
        ({"alg": {"ES384": True}}, "alg of type dict not allowed"),
        ({"alg": 384}, "alg of type int not allowed"),
        ({"alg": None}, "alg of type NoneType not allowed"),
        ({"kid": 7}, "JWT header unreadable"),
        ({"kid": ""}, "kid is missing or not a string"),
        ({"kid": "k" * 300}, "kid is missing or not a string"),
        ({"typ": 5}, "typ is missing or not JWT"),
        ({"typ": ["JWT"]}, "typ is missing or not JWT"),
        ({"typ": "JOSE+JSON"}, "typ is missing or not JWT"),
        ({"jku": ["https://ehr.example.test/jwks"]}, "jku is not a URL string"),
        ({"jku": {"url": "https://ehr.example.test/jwks"}}, "jku is not a URL string"),
        ({"crit": ["exp"], "exp": 1}, "JWT header unreadable"),
        ({"b64": True}, "extensions (crit, b64)"),
    ],
    ids=repr,
)
def test_header_fields_of_the_wrong_type(
    ehr: Ehr, es_key: SigningKey, caplog: pytest.LogCaptureFixture, header: dict[str, Any], reason: str
) -> None:
    _refused(ehr, compact_jws(_header(**header), _claims(ehr), es_key), caplog, reason)


@pytest.mark.parametrize(
    ("claim", "raw", "reason"),
    [
        ("exp", HUGE, "claim exp is not a finite time"),
        ("exp", "-" + HUGE, "claim exp is not a finite time"),
        ("exp", "1e400", "claim exp is not a finite time"),
        ("exp", "NaN", "claim exp is not a finite time"),
        ("exp", "Infinity", "claim exp is not a finite time"),
        ("exp", '"4102444800"', "claim exp is missing or not a number"),
        ("exp", "true", "claim exp is missing or not a number"),
        ("exp", "null", "claim exp is missing or not a number"),
        ("iat", "NaN", "claim iat is not a finite time"),
        ("iat", "-Infinity", "claim iat is not a finite time"),
        ("iat", HUGE, "claim iat is not a finite time"),
        ("iat", "-1", "claim iat is not a finite time"),
        ("nbf", "NaN", "claim nbf is not a finite time"),
        ("nbf", "Infinity", "claim nbf is not a finite time"),
        ("nbf", '"0"', "claim nbf is missing or not a number"),
        ("iss", "5", "claim iss is missing or not a string"),
        ("iss", '["https://ehr.example.test"]', "claim iss is missing or not a string"),
        ("iss", '{"a": 1}', "claim iss is missing or not a string"),
        ("jti", "12345", "claim jti is missing or not a string"),
        ("jti", '["a"]', "claim jti is missing or not a string"),
        ("jti", '""', "claim jti is missing or not a string"),
        ("aud", "5", "claim aud is neither"),
        ("aud", "[5]", "claim aud is neither"),
        ("aud", "[]", "claim aud is neither"),
        ("aud", '{"a": 1}', "claim aud is neither"),
        ("tenant", "5", "claim tenant is missing or not a string"),
        ("tenant", '["t1"]', "claim tenant is missing or not a string"),
    ],
)
def test_claims_of_the_wrong_type_or_out_of_range(
    ehr: Ehr, es_key: SigningKey, caplog: pytest.LogCaptureFixture, claim: str, raw: str, reason: str
) -> None:
    _refused(ehr, compact_jws(_header(), _claims(ehr, **{claim: raw}), es_key), caplog, reason)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [("[]", "JWT payload unreadable"), ("[" * 4000 + "]" * 4000, "JWT payload unreadable"), ("{", "unreadable")],
    ids=["array", "deeply nested", "broken"],
)
def test_payloads_that_are_not_a_claims_object(
    ehr: Ehr, es_key: SigningKey, caplog: pytest.LogCaptureFixture, payload: str, reason: str
) -> None:
    _refused(ehr, compact_jws(_header(), payload, es_key), caplog, reason)


def test_a_header_without_typ_is_refused(ehr: Ehr, es_key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    header = json.dumps({"alg": "ES384", "kid": ES_KID})  # CDS Hooks 2.0: typ is required, fixed value JWT
    _refused(ehr, compact_jws(header, _claims(ehr), es_key), caplog, "typ is missing or not JWT")
