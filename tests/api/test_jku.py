"""A ``jku`` is trusted only for the issuer whose entry names it: one issuer's keys never verify
another's tokens. URLs are compared after a strict normalisation; the global allowlist is gone."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import (
    ISSUER,
    ISSUER_BY_URI,
    NORMAL,
    PATIENT_VIEW,
    Ehr,
    ServerFactory,
    SigningKey,
    full_prefetch,
    jwk,
    labs,
    patient_view_request,
)
from tests.support.scripted_server import Reply, base_url, scripted_server

from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.engine import Knowledge
from rls_screen.errors import ConfigurationError
from rls_screen.settings import Settings

pytestmark = pytest.mark.net
SERVICE = f"/cds-services/{PATIENT_VIEW}"


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    """Issuer B's key, published only at B's JWK Set URL."""
    private = ec.generate_private_key(ec.SECP384R1())
    return SigningKey("issuer-b-key", "ES384", private, jwk(private.public_key(), "issuer-b-key", "ES384"))


@pytest.fixture
def b_jwks(other_key: SigningKey) -> Iterator[str]:
    with scripted_server(lambda received: Reply(200, {"keys": [other_key.jwk]})) as server:
        yield base_url(server, "/b/jwks.json")


def _two_issuers(tmp_path: Path, es_key: SigningKey, b_url: str) -> Path:
    path = tmp_path / "two-issuers.json"
    path.write_text(
        json.dumps({ISSUER: {"jwks": {"keys": [es_key.jwk]}}, ISSUER_BY_URI: {"jwks_uri": b_url, "jku": [b_url]}})
    )
    return path


def _body() -> dict[str, object]:
    return patient_view_request("jk1", full_prefetch("jk1", labs("jk1", **NORMAL)))


def _refused(ehr: Ehr, token: str, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    response = ehr.post(SERVICE, _body(), token=token)
    assert (response.status_code, response.content) == (401, b"")
    logged = [r.getMessage() for r in caplog.records if ": 401 on " in r.getMessage()]
    assert logged
    assert reason in logged[-1], logged


def test_a_key_of_another_issuer_never_verifies_a_token(
    cds_server: ServerFactory,
    tmp_path: Path,
    es_key: SigningKey,
    other_key: SigningKey,
    b_jwks: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The red team's token: iss = A, signed with B's key, jku = B's JWK Set URL."""
    caplog.set_level(logging.INFO, logger="rls_screen.cds")
    _, ehr = cds_server(issuers=_two_issuers(tmp_path, es_key, b_jwks))
    forged = ehr.token(SERVICE, key=other_key, headers={"jku": b_jwks})
    _refused(ehr, forged, caplog, "jku is not one of the issuer's JWK Set URLs")
    _refused(ehr, ehr.token(SERVICE, key=other_key), caplog, "kid not found")  # nor via A's own set
    # B's own token through its own URL passes: the URL is trusted, for B.
    as_b = Ehr(ehr.base_url, other_key, issuer=ISSUER_BY_URI)
    assert ehr.post(SERVICE, _body(), token=as_b.token(SERVICE, headers={"jku": b_jwks})).status_code == 200


@pytest.mark.parametrize(
    ("spelling", "reason"),
    [
        ("{scheme}://{host}/b/x/../jwks.json", "dot segment"),
        ("{scheme}://{host}/b/x/%2e%2e/jwks.json", "dot segment"),
        ("{scheme}://{host}/b/%2E/jwks.json", "dot segment"),
        ("{scheme}://{host}/b%2f..%2fb/jwks.json", "encoded slash"),
        ("{scheme}://{host}/b/jwks.json?x=1", "query or fragment"),
        ("{scheme}://{host}/b/jwks.json#k", "query or fragment"),
        ("{scheme}://user@{host}/b/jwks.json", "userinfo"),
        ("{scheme}://user:pw@{host}/b/jwks.json", "userinfo"),
        ("ftp://{host}/b/jwks.json", "not https"),
        ("{scheme}://{host}/b/jwks.json/", "jku is not one of the issuer's"),
    ],
)
def test_jku_spellings_are_refused_before_any_fetch(
    cds_server: ServerFactory,
    tmp_path: Path,
    es_key: SigningKey,
    other_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
    spelling: str,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="rls_screen.cds")
    with scripted_server(lambda received: Reply(200, {"keys": [other_key.jwk]})) as server:
        b_url = base_url(server, "/b/jwks.json")
        scheme, host = b_url.split("://")[0], b_url.split("/")[2]
        _, ehr = cds_server(issuers=_two_issuers(tmp_path, es_key, b_url))
        as_b = Ehr(ehr.base_url, other_key, issuer=ISSUER_BY_URI)
        jku = spelling.format(scheme=scheme, host=host)
        _refused(ehr, as_b.token(SERVICE, headers={"jku": jku}), caplog, reason)
        assert server.received == []
        # The same URL in another case of scheme and host is the same URL.
        upper = f"{scheme.upper()}://{host.upper()}/b/jwks.json"
        assert ehr.post(SERVICE, _body(), token=as_b.token(SERVICE, headers={"jku": upper})).status_code == 200


def test_a_jwk_set_url_that_redirects_is_not_followed(
    cds_server: ServerFactory, tmp_path: Path, es_key: SigningKey, other_key: SigningKey, b_jwks: str
) -> None:
    with scripted_server(lambda received: Reply(302, headers={"Location": b_jwks})) as redirecting:
        issuers = tmp_path / "redirect.json"
        issuers.write_text(json.dumps({ISSUER_BY_URI: {"jwks_uri": base_url(redirecting, "/jwks")}}))
        _, ehr = cds_server(issuers=issuers)
        as_b = Ehr(ehr.base_url, other_key, issuer=ISSUER_BY_URI)
        assert ehr.post(SERVICE, _body(), token=as_b.token(SERVICE)).status_code == 401
        assert len(redirecting.received) == 1


def test_the_global_jku_allowlist_is_refused_at_start_up(
    tmp_path: Path, issuers_file: Path, knowledge: Knowledge
) -> None:
    settings = CdsSettings(
        public_url="http://127.0.0.1:1",
        cds_trusted_issuers_file=issuers_file,
        cds_feedback_db=tmp_path / "cds.sqlite3",
        cds_jku_allowlist="https://ehr.example.test/jwks.json",
    )
    with pytest.raises(ConfigurationError, match="'jku' list of the issuer"):
        create_app(settings, Settings(state_dir=tmp_path), knowledge=knowledge)
