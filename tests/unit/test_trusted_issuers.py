"""The trusted-issuers file: each issuer's own JWK Set URLs, strictly parsed and normalised, one owner each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rls_screen.cds.auth import load_trusted_issuers
from rls_screen.errors import ConfigurationError

pytestmark = pytest.mark.unit
ISS, OTHER = "https://ehr.example.test", "https://other.example.test"
KEYS: dict[str, Any] = {"keys": []}


def _load(tmp_path: Path, content: dict[str, Any]) -> Any:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(content))
    return load_trusted_issuers(path)


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("https://ehr.example.test/jwks", "https://ehr.example.test/jwks"),
        ("HTTPS://EHR.Example.TEST:443/jwks", "https://ehr.example.test/jwks"),
        ("https://ehr.example.test:8443/a/jwks.json", "https://ehr.example.test:8443/a/jwks.json"),
        ("https://ehr.example.test", "https://ehr.example.test/"),
        ("http://127.0.0.1:8080/jwks", "http://127.0.0.1:8080/jwks"),
        ("http://localhost:80/jwks", "http://localhost/jwks"),
        ("https://[::1]:9443/jwks", "https://[::1]:9443/jwks"),
        ("https://ehr.example.test/a%20b/jwks", "https://ehr.example.test/a%20b/jwks"),
    ],
)
def test_urls_are_normalised(tmp_path: Path, written: str, normalised: str) -> None:
    trusted = _load(tmp_path, {ISS: {"jwks_uri": written}})[ISS]
    assert trusted.jwks_uri == normalised
    assert trusted.jku_urls == {normalised}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://ehr.example.test/jwks", "not https"),
        ("ftp://ehr.example.test/jwks", "not https"),
        ("https://user@ehr.example.test/jwks", "userinfo"),
        ("https://user:secret@ehr.example.test/jwks", "userinfo"),
        ("https://ehr.example.test/a/../jwks", "dot segment"),
        ("https://ehr.example.test/./jwks", "dot segment"),
        ("https://ehr.example.test/a/..", "dot segment"),
        ("https://ehr.example.test/a/%2e%2e/jwks", "dot segment"),
        ("https://ehr.example.test/a/%2E/jwks", "dot segment"),
        ("https://ehr.example.test/a/.%2e/jwks", "dot segment"),
        ("https://ehr.example.test/a%2F..%2Fjwks", "encoded slash"),
        ("https://ehr.example.test/a%5c..%5cjwks", "encoded slash"),
        ("https://ehr.example.test/a\\..\\jwks", "backslash"),
        ("https://ehr.example.test/jwks?kid=1", "query or fragment"),
        ("https://ehr.example.test/jwks?", "query or fragment"),
        ("https://ehr.example.test/jwks#x", "query or fragment"),
        ("https:///jwks", "no host"),
        ("https://ehr_example!.test/jwks", "no host"),
        ("https://ehr.example.test:99999/jwks", "port"),
        ("https://ehr.example.test/j wks", "printable ASCII"),
        ("https://éhr.example.test/jwks", "printable ASCII"),
        ("", "printable ASCII"),
    ],
)
def test_urls_are_refused(tmp_path: Path, url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match="JWK Set URL refused") as raised:
        _load(tmp_path, {ISS: {"jwks": KEYS, "jku": [url]}})
    assert reason in str(raised.value)


def test_jku_urls_hold_the_jwks_uri_and_the_jku_list(tmp_path: Path) -> None:
    trusted = _load(
        tmp_path, {ISS: {"jwks_uri": "https://ehr.example.test/jwks", "jku": ["https://keys.example.test/k"]}}
    )[ISS]
    assert trusted.jku_urls == {"https://ehr.example.test/jwks", "https://keys.example.test/k"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://keys.example.test/jwks", "https://keys.example.test/jwks"),
        ("https://keys.example.test/jwks", "HTTPS://KEYS.example.test:443/jwks"),
    ],
)
def test_one_url_for_two_issuers_is_refused(tmp_path: Path, first: str, second: str) -> None:
    with pytest.raises(ConfigurationError, match="one issuer only"):
        _load(tmp_path, {ISS: {"jwks_uri": first}, OTHER: {"jwks": KEYS, "jku": [second]}})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"jwks": KEYS, "jwks_uri": "https://ehr.example.test/jwks"}, "not both"),
        ({}, "give 'jwks', 'jwks_uri' or a 'jku' list"),
        ({"jwks": KEYS, "jku": "https://ehr.example.test/jwks"}, "'jku' must be a list"),
        ({"jwks": KEYS, "jku": [5]}, "'jku' must be a list"),
        ({"jwks": KEYS, "jku_allowlist": ["https://ehr.example.test/jwks"]}, "unknown field(s) jku_allowlist"),
        ({"jwks_uri": 5}, "'jwks_uri' must be a URL"),
    ],
)
def test_entry_shapes(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        _load(tmp_path, {ISS: entry})
    assert message in str(raised.value)
