"""JWT verification as CDS Hooks 2.0 requires, with locally generated ES384 and RS384 keys: bare 401s."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import (
    ISSUER,
    ISSUER_BY_URI,
    NORMAL,
    PATIENT_VIEW,
    ServerFactory,
    SigningKey,
    full_prefetch,
    labs,
    patient_view_request,
)
from tests.support.scripted_server import Reply, base_url, scripted_server

pytestmark = pytest.mark.net

DISCOVERY = "/cds-services"
SERVICE = f"/cds-services/{PATIENT_VIEW}"
# The example JWT of the CDS Hooks 2.0.1 specification (HL7/cds-hooks, input/pagecontent/index.md):
# ES384, kid example-kid, iss https://fhir-ehr.example.com/, exp 1422568860 (January 2015).
SPEC_EXAMPLE_JWT = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0"
    ".eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0"
    ".d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb"
)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _body() -> dict[str, object]:
    return patient_view_request("au1", full_prefetch("au1", labs("au1", **{**NORMAL, "ferritin": 9.0})))


def _assert_bare_401(response: object, caplog: pytest.LogCaptureFixture | None = None, reason: str = "") -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.content == b""  # type: ignore[attr-defined]
    assert response.headers["WWW-Authenticate"] == "Bearer"  # type: ignore[attr-defined]
    if caplog is not None:
        logged = [
            r.getMessage() for r in caplog.records if r.name == "rls_screen.cds" and ": 401 on " in r.getMessage()
        ]
        assert logged
        assert reason in logged[-1], logged


@pytest.fixture
def auth_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="rls_screen.cds")
    return caplog


@pytest.mark.parametrize("key_name", ["es_key", "rs_key"])
def test_valid_es384_and_rs384_tokens_pass(
    cds_server: ServerFactory, key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    _, ehr = cds_server()
    response = ehr.post(SERVICE, _body(), token=ehr.token(SERVICE, key=key))
    assert response.status_code == 200
    assert response.json()["cards"]
    assert ehr.get(DISCOVERY, token=ehr.token(DISCOVERY, key=key)).status_code == 200


def test_audience_may_be_an_array(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    token = ehr.token(SERVICE, aud=[ehr.base_url + SERVICE, "https://other.example"])
    assert ehr.post(SERVICE, _body(), token=token).status_code == 200


def test_extra_claims_such_as_sub_and_nbf_are_tolerated(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    token = ehr.token(SERVICE, sub="ehr-client", nbf=int(time.time()) - 5, tenant="hospital-1")
    assert ehr.post(SERVICE, _body(), token=token).status_code == 200


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing header", "no Authorization header"),
        ("not bearer", "not a Bearer token"),
        ("garbage", "JWT header unreadable"),
        ("expired", "token expired"),
        ("issued in the future", "issued in the future"),
        ("wrong aud", "aud is not this endpoint"),
        ("aud of another endpoint", "aud is not this endpoint"),
        ("unknown kid", "kid not found"),
        ("unlisted issuer", "issuer is not on the trusted-issuers list"),
        ("missing jti", "lacks required claims: jti"),
        ("lifetime too long", "lifetime exceeds"),
        ("wrong key for kid", "signature not valid"),
    ],
)
def test_bad_tokens_get_a_bare_401(
    cds_server: ServerFactory, es_key: SigningKey, auth_log: pytest.LogCaptureFixture, case: str, reason: str
) -> None:
    _, ehr = cds_server()
    now = int(time.time())
    if case in ("missing header", "not bearer"):
        headers = {} if case == "missing header" else {"Authorization": "Basic dXNlcjpwYXNz"}
        response = ehr.session.post(ehr.base_url + SERVICE, json=_body(), headers=headers, timeout=30)
        _assert_bare_401(response, auth_log, reason)
        return
    tokens = {
        "garbage": "not.a.jwt",
        "expired": ehr.token(SERVICE, exp=now - 120, iat=now - 420),
        "issued in the future": ehr.token(SERVICE, iat=now + 600, exp=now + 900),
        "wrong aud": ehr.token(SERVICE, aud="https://somewhere-else.example/cds-services/rls-secondary-causes"),
        "aud of another endpoint": ehr.token(SERVICE, aud=ehr.base_url + DISCOVERY),
        "unknown kid": ehr.token(SERVICE, headers={"kid": "no-such-key"}),
        "unlisted issuer": ehr.token(SERVICE, iss="https://rogue-ehr.example"),
        "missing jti": ehr.token(SERVICE, jti=None),
        "lifetime too long": ehr.token(SERVICE, exp=now + 7 * 24 * 3600),
        "wrong key for kid": jwt.encode(
            {"iss": ehr.issuer, "aud": ehr.base_url + SERVICE, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())},
            ec.generate_private_key(ec.SECP384R1()),
            algorithm="ES384",
            headers={"kid": es_key.kid},
        ),
    }
    _assert_bare_401(ehr.post(SERVICE, _body(), token=tokens[case]), auth_log, reason)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[]", b"\xff\xfe", json.dumps({"hook": "order-sign"}).encode(), b"x" * 300_000],
    ids=["broken json", "empty", "array", "not utf-8", "wrong hook", "over the size limit"],
)
@pytest.mark.parametrize("token", ["none", "expired"])
def test_authentication_comes_before_the_body_is_read(
    cds_server: ServerFactory, auth_log: pytest.LogCaptureFixture, raw: bytes, token: str
) -> None:
    """Without a valid JWT the answer is 401 whatever the body: no 400 or 413 tells a stranger how it was read."""
    _, ehr = cds_server(cds_max_body_bytes=64 * 1024)
    headers = {"Content-Type": "application/json"}
    if token == "expired":
        now = int(time.time())
        headers["Authorization"] = f"Bearer {ehr.token(SERVICE, exp=now - 120, iat=now - 420)}"
    response = ehr.session.post(ehr.base_url + SERVICE, data=raw, headers=headers, timeout=30)
    _assert_bare_401(response, auth_log, "token expired" if token == "expired" else "no Authorization header")
    assert ehr.post(SERVICE, None, raw=b"{not json").status_code == 400  # with a valid JWT: the 400


def test_two_authorization_headers_are_refused(cds_server: ServerFactory, auth_log: pytest.LogCaptureFixture) -> None:
    _, ehr = cds_server()
    parts = urlsplit(ehr.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    payload = json.dumps(_body()).encode()
    connection.putrequest("POST", SERVICE)
    connection.putheader("Authorization", f"Bearer {ehr.token(SERVICE)}")
    connection.putheader("Authorization", f"Bearer {ehr.token(SERVICE)}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(payload)))
    connection.endheaders(payload)
    response = connection.getresponse()
    assert (response.status, response.read()) == (401, b"")
    connection.close()
    assert "more than one Authorization header" in auth_log.records[-1].getMessage()


def test_every_path_but_health_ready_and_the_schema_needs_a_token(cds_server: ServerFactory) -> None:
    server, ehr = cds_server()
    for path in ("/cds-services/no-such-service", "/no-such-path", f"{SERVICE}/feedback"):
        _assert_bare_401(ehr.session.post(server.base_url + path, data=b"{", timeout=10))
    assert ehr.post("/cds-services/no-such-service", {}).status_code == 404  # with a JWT for that path
    assert ehr.session.get(server.base_url + "/openapi.json", timeout=10).status_code == 200


def test_alg_none_is_refused(cds_server: ServerFactory, es_key: SigningKey, auth_log: pytest.LogCaptureFixture) -> None:
    _, ehr = cds_server()
    now = int(time.time())
    claims = {"iss": ehr.issuer, "aud": ehr.base_url + SERVICE, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': es_key.kid})}.{_b64(claims)}."
    _assert_bare_401(ehr.post(SERVICE, _body(), token=unsigned), auth_log, "alg 'none' not allowed")


def test_hs256_signed_with_the_public_key_is_refused(
    cds_server: ServerFactory, es_key: SigningKey, auth_log: pytest.LogCaptureFixture
) -> None:
    """The classic algorithm-confusion attack: HMAC keyed with the (public) JWK must not verify."""
    _, ehr = cds_server()
    now = int(time.time())
    claims = {"iss": ehr.issuer, "aud": ehr.base_url + SERVICE, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": es_key.kid})
    payload = _b64(claims)
    secret = json.dumps(es_key.jwk).encode()
    signature = base64.urlsafe_b64encode(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    token = f"{header}.{payload}.{signature.rstrip(b'=').decode()}"
    _assert_bare_401(ehr.post(SERVICE, _body(), token=token), auth_log, "alg 'HS256' not allowed")


def test_replayed_jti_is_refused(cds_server: ServerFactory, auth_log: pytest.LogCaptureFixture) -> None:
    _, ehr = cds_server()
    token = ehr.token(SERVICE)
    assert ehr.post(SERVICE, _body(), token=token).status_code == 200
    _assert_bare_401(ehr.post(SERVICE, _body(), token=token), auth_log, "replay")


def test_jku_not_named_by_the_issuer_is_refused_without_fetching_it(
    cds_server: ServerFactory, es_key: SigningKey, auth_log: pytest.LogCaptureFixture
) -> None:
    with scripted_server(lambda received: Reply(200, {"keys": [es_key.jwk]})) as jwks_server:
        _, ehr = cds_server()
        token = ehr.token(SERVICE, headers={"jku": base_url(jwks_server, "/jwks.json")})
        _assert_bare_401(ehr.post(SERVICE, _body(), token=token), auth_log, "jku is not one of the issuer's")
        assert jwks_server.received == []


def test_a_jku_the_issuer_names_is_used(cds_server: ServerFactory, es_key: SigningKey, tmp_path: Path) -> None:
    with scripted_server(lambda received: Reply(200, {"keys": [es_key.jwk]})) as jwks_server:
        jku = base_url(jwks_server, "/jwks.json")
        issuers = tmp_path / "with-jku.json"
        issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": []}, "jku": [jku]}}))
        _, ehr = cds_server(issuers=issuers)
        assert ehr.post(SERVICE, _body(), token=ehr.token(SERVICE, headers={"jku": jku})).status_code == 200
        assert ehr.post(SERVICE, _body(), token=ehr.token(SERVICE, headers={"jku": jku})).status_code == 200
        assert len(jwks_server.received) == 1  # the JWK Set is cached


def test_issuer_with_jwks_uri(cds_server: ServerFactory, rs_key: SigningKey, tmp_path: Path) -> None:
    with scripted_server(lambda received: Reply(200, {"keys": [rs_key.jwk]})) as jwks_server:
        issuers = tmp_path / "by-uri.json"
        issuers.write_text(json.dumps({ISSUER_BY_URI: {"jwks_uri": base_url(jwks_server, "/jwks")}}))
        _, ehr = cds_server(issuers=issuers)
        ehr.issuer = ISSUER_BY_URI
        assert ehr.post(SERVICE, _body(), token=ehr.token(SERVICE, key=rs_key)).status_code == 200
        _assert_bare_401(ehr.post(SERVICE, _body(), token=ehr.token(SERVICE, key=rs_key, headers={"kid": "rotated"})))


def test_the_spec_example_jwt_is_rejected_as_expired(
    cds_server: ServerFactory, auth_log: pytest.LogCaptureFixture
) -> None:
    # Its issuer is trusted here (with a key under its kid, and its jku listed), so only time can fail it.
    _, ehr = cds_server()
    _assert_bare_401(ehr.post(SERVICE, _body(), token=SPEC_EXAMPLE_JWT), auth_log, "token expired")
    assert all(SPEC_EXAMPLE_JWT not in r.getMessage() for r in auth_log.records)  # never log the token


def test_tokens_never_reach_the_log(cds_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, ehr = cds_server()
    token = ehr.token(SERVICE)
    ehr.post(SERVICE, _body(), token=token)
    ehr.post(SERVICE, _body(), token=token)  # replay: rejected and logged
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text
    assert token.split(".")[1] not in text
    assert "au1" not in text  # nor the patient id


def test_dev_mode_turns_verification_off_loudly(cds_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rls_screen.cds")
    server, ehr = cds_server(cds_dev_mode=True)
    assert any("DEVELOPMENT MODE" in r.getMessage() for r in caplog.records)
    response = ehr.session.post(server.base_url + SERVICE, json=_body(), timeout=30)
    assert response.status_code == 200


def test_health_and_ready_need_no_token(cds_server: ServerFactory) -> None:
    server, ehr = cds_server()
    assert ehr.session.get(server.base_url + "/health", timeout=10).json() == {"status": "ok"}
    ready = ehr.session.get(server.base_url + "/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"]["jwt"] == "verifying"
    _assert_bare_401(ehr.session.get(server.base_url + DISCOVERY, timeout=10))


def test_a_jti_used_on_one_worker_is_refused_by_another(
    cds_server: ServerFactory, tmp_path: Path, auth_log: pytest.LogCaptureFixture
) -> None:
    """Two app instances on one state file stand for two uvicorn workers behind one URL."""
    shared = {"public_url": "https://cds.example.test", "cds_feedback_db": tmp_path / "shared.sqlite3"}
    _, first = cds_server(**shared)
    _, second = cds_server(**shared)
    token = first.token(SERVICE, aud="https://cds.example.test" + SERVICE)
    assert first.post(SERVICE, _body(), token=token).status_code == 200
    _assert_bare_401(second.post(SERVICE, _body(), token=token), auth_log, "replay")
    fresh = second.token(SERVICE, aud="https://cds.example.test" + SERVICE)
    assert second.post(SERVICE, _body(), token=fresh).status_code == 200
