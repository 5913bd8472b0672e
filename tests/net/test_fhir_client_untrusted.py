"""FhirClient against allowlisted loopback servers that answer in hostile or broken ways.

Redirects (never followed), URLs that a string-prefix allowlist let through (dot segments, raw or
percent-encoded), Bundles whose entry or link is not an array of objects, bodies that are not in
their Content-Encoding or are nested too deeply to parse, and tokens that an HTTP header cannot
carry. Each must be a typed FhirError before or instead of anything else; no patched functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.errors import (
    ConfigurationError,
    FhirAuthError,
    FhirOperationError,
    FhirRedirectError,
    FhirRequestError,
    FhirResponseError,
    ServerNotAllowedError,
)
from rls_screen.fhir_client import (
    Allowlist,
    BearerAuth,
    FhirClient,
    SmartBackendAuth,
    auth_from_settings,
    validation_errors,
)
from rls_screen.settings import Settings

PATIENT = {"resourceType": "Patient", "id": "p1"}
TOKEN = "s3cr3t-token"
DEEP = b"[" * 100_000 + b"]" * 100_000


def _client(url: str, **kwargs: Any) -> FhirClient:
    return FhirClient(url, allowlist=Allowlist((url,)), sleep=lambda s: None, **kwargs)


def _paths(server: Any) -> list[str]:
    return [r.path for r in server.received]


def _smart(token_url: str) -> SmartBackendAuth:
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return SmartBackendAuth(
        token_url=token_url,
        client_id="c",
        private_key_pem=pem,
        algorithm="ES384",
        key_id="k",
        scope="system/*.rs",
        session=requests.Session(),
        timeout=(2, 5),
    )


# --- redirects are never followed ---------------------------------------------------------------------


def _calls(client: FhirClient, tmp_path: Path) -> dict[str, Callable[[], object]]:
    """Every kind of FHIR call, each to a path the redirecting server redirects."""
    return {
        "read": lambda: client.read("Patient", "p1"),
        "search": lambda: list(client.search("Observation", {"subject": "Patient/p1"})),
        "transaction": lambda: client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []}),
        "bulk status poll": lambda: client.request("GET", "bulkstatus/1", headers={"Accept": "application/json"}),
        "download": lambda: client.download(f"{client.base_url}/output/1.ndjson", tmp_path / "out.ndjson"),
    }


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_off_the_allowlist_is_a_typed_error_and_never_followed(tmp_path: Path, status: int) -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Bundle", "type": "searchset"})) as elsewhere:
        location = {"Location": f"{base_url(elsewhere)}/Observation?subject=Patient/p1"}
        with scripted_server(lambda r: Reply(status, None, headers=location)) as server:
            client = _client(base_url(server), auth=BearerAuth(TOKEN))
            for name, call in _calls(client, tmp_path).items():
                server.received.clear()
                with pytest.raises(FhirRedirectError, match=f"redirect \\(HTTP {status}\\)") as raised:
                    call()
                assert len(server.received) == 1, name  # not retried
                assert "Patient/p1" not in str(raised.value)  # the Location is not quoted
        assert elsewhere.received == []
    assert not (tmp_path / "out.ndjson").exists()


def test_a_same_host_redirect_outside_the_fhir_base_never_carries_the_token() -> None:
    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/"):
            return Reply(307, None, headers={"Location": "/outside/collect"})
        return Reply(200, PATIENT)

    with scripted_server(script) as server:
        client = _client(base_url(server), auth=BearerAuth(TOKEN))
        with pytest.raises(FhirRedirectError):
            client.read("Patient", "p1")
        assert _paths(server) == ["/fhir/Patient/p1"]


def test_a_redirect_loop_ends_after_one_request() -> None:
    with scripted_server(lambda r: Reply(302, None, headers={"Location": r.path})) as server:
        client = _client(base_url(server))
        with pytest.raises(FhirRedirectError):
            client.read("Patient", "p1")
        assert len(server.received) == 1


def test_the_token_endpoint_is_not_followed_through_a_redirect() -> None:
    """The signed client assertion goes to the configured token URL only."""
    with scripted_server(lambda r: Reply(200, {"access_token": "x", "expires_in": 300})) as elsewhere:
        location = {"Location": base_url(elsewhere, "/token")}
        with scripted_server(lambda r: Reply(307, None, headers=location)) as idp:
            auth = _smart(base_url(idp, "/token"))
            with pytest.raises(FhirRedirectError, match="token request"):
                auth.header()
        assert elsewhere.received == []


def test_a_token_url_with_a_dot_segment_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="RLS_SCREEN_SMART_TOKEN_URL"):
        _smart("https://idp.example/oauth/../token")


# --- URLs are compared in normal form, by path segment ----------------------------------------------------


@pytest.mark.parametrize("tail", ["/../outside", "/%2e%2e/outside", "/%2E%2e/outside", "/.%2e/outside", "evil/x"])
def test_a_url_that_only_looks_like_it_is_under_the_base_is_refused_before_any_request(tail: str) -> None:
    with scripted_server(lambda r: Reply(200, PATIENT)) as server:
        client = _client(base_url(server), auth=BearerAuth(TOKEN))
        with pytest.raises(ServerNotAllowedError):
            client.request("GET", base_url(server) + tail)
        assert server.received == []


@pytest.mark.parametrize("tail", ["/../outside?page=2", "/%2e%2e/outside?page=2", "//Observation?page=2"])
def test_a_next_link_out_of_the_base_is_refused(tail: str) -> None:
    def script(received: Received) -> Reply:
        link = [{"relation": "next", "url": base_url(server) + tail}]
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "link": link})

    with scripted_server(script) as server:
        client = _client(base_url(server), auth=BearerAuth(TOKEN))
        with pytest.raises(ServerNotAllowedError):
            list(client.search("Observation", {"subject": "Patient/p1"}))
        assert len(server.received) == 1


def test_what_is_checked_is_what_is_sent() -> None:
    with scripted_server(lambda r: Reply(200, PATIENT)) as server:
        host, port = server.server_address[:2]
        client = _client(f"HTTP://{host}:{port}/fhir/")
        client.request("GET", f"http://{host}:{port}/fhir/Patient/p1#fragment")
        assert _paths(server) == ["/fhir/Patient/p1"]


# --- bad answers from an allowed server are typed errors ------------------------------------------------

BAD_BUNDLES = {
    "entry null": {"resourceType": "Bundle", "type": "searchset", "entry": None},
    "entry an object": {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": PATIENT}},
    "entry a list of strings": {"resourceType": "Bundle", "type": "searchset", "entry": ["x"]},
    "link a string": {"resourceType": "Bundle", "type": "searchset", "link": "next"},
    "link a list of strings": {"resourceType": "Bundle", "type": "searchset", "link": ["next", "self"]},
    "next url a number": {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": 7}]},
}


@pytest.mark.parametrize("bundle", BAD_BUNDLES.values(), ids=BAD_BUNDLES.keys())
def test_a_bundle_whose_entry_or_link_is_not_a_list_of_objects_is_a_typed_error(bundle: dict[str, Any]) -> None:
    with scripted_server(lambda r: Reply(200, bundle)) as server, pytest.raises(FhirResponseError, match="Bundle"):
        list(_client(base_url(server)).search("Observation", {"subject": "Patient/p1"}))


def test_a_body_that_is_not_the_gzip_its_header_says_is_a_typed_error(tmp_path: Path) -> None:
    body = json.dumps(PATIENT).encode()
    with scripted_server(lambda r: Reply(200, body, headers={"Content-Encoding": "gzip"})) as server:
        client = _client(base_url(server))
        with pytest.raises(FhirResponseError, match="Content-Encoding"):
            client.read("Patient", "p1")
        with pytest.raises(FhirResponseError, match="Content-Encoding"):
            client.download(f"{client.base_url}/out.ndjson", tmp_path / "out.ndjson")


def test_json_nested_too_deeply_is_a_typed_error_on_success_and_on_error_answers() -> None:
    outcome = b'{"resourceType": "OperationOutcome", "issue": ' + DEEP + b"}"
    with scripted_server(lambda r: Reply(200 if r.path.endswith("/ok") else 400, outcome)) as server:
        client = _client(base_url(server))
        with pytest.raises(FhirResponseError, match="nested too deeply"):
            client.read("Patient", "ok")
        with pytest.raises(FhirOperationError, match="HTTP 400"):
            client.read("Patient", "p1")


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "abc\ndef", "tökén", "☃", "a b", ""])
def test_a_token_an_http_header_cannot_carry_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(FhirRequestError, match="access token") as raised:
        BearerAuth(token)
    assert not token or token not in str(raised.value)
    with pytest.raises(ConfigurationError, match="RLS_SCREEN_FHIR_BEARER_TOKEN"):
        auth_from_settings(Settings(fhir_bearer_token=token), requests.Session())


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "tökén-☃"])
def test_a_header_requests_cannot_send_is_a_typed_error_and_nothing_is_sent(value: str) -> None:
    with scripted_server(lambda r: Reply(200, PATIENT)) as server:
        with pytest.raises(FhirRequestError, match="not sent") as raised:
            _client(base_url(server)).request("GET", "Patient/p1", headers={"X-Trace": value})
        assert value not in str(raised.value)
        assert server.received == []


def test_a_token_endpoint_handing_out_a_token_with_a_line_break_is_an_auth_error() -> None:
    answer = {"access_token": "abc\r\nX-Injected: 1", "expires_in": 300}
    with scripted_server(lambda r: Reply(200, answer)) as idp:
        with pytest.raises(FhirAuthError, match="cannot carry") as raised:
            _smart(base_url(idp, "/token")).header()
        assert "abc" not in str(raised.value)


@pytest.mark.parametrize(
    ("outcome", "errors"),
    [
        ({"resourceType": "OperationOutcome", "issue": "invalid"}, []),
        ({"resourceType": "OperationOutcome", "issue": None}, []),
        (
            {"resourceType": "OperationOutcome", "issue": ["x", {"severity": "error", "details": "y", "code": "a"}]},
            ["a"],
        ),
        ({"issue": [{"severity": "fatal", "details": {"text": "t"}}]}, ["t"]),
    ],
)
def test_a_malformed_validate_outcome_gives_what_it_can_instead_of_an_attribute_error(
    outcome: dict[str, Any], errors: list[str]
) -> None:
    assert validation_errors(outcome) == errors
