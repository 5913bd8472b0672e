"""FhirClient against real loopback HTTP servers that misbehave on purpose (no HAPI needed)."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.errors import (
    FhirAuthError,
    FhirNotFoundError,
    FhirOperationError,
    FhirUnavailableError,
    ServerNotAllowedError,
)
from rls_screen.fhir_client import Allowlist, BearerAuth, FhirClient, SmartBackendAuth
from rls_screen.settings import Settings

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "invalid", "diagnostics": "subject is required"}],
}


def client_for(url: str, **kwargs: object) -> tuple[FhirClient, list[float]]:
    slept: list[float] = []
    client = FhirClient(url, allowlist=Allowlist((url,)), sleep=slept.append, **kwargs)  # type: ignore[arg-type]
    return client, slept


def test_a_server_off_the_allowlist_is_refused_before_any_request() -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Patient", "id": "x"})) as server:
        allowed = "http://127.0.0.1:9/fhir"
        with pytest.raises(ServerNotAllowedError, match="not on the allowlist"):
            FhirClient(base_url(server), allowlist=Allowlist((allowed,)))
        client = FhirClient(allowed, allowlist=Allowlist((allowed,)))
        with pytest.raises(ServerNotAllowedError):
            client.request("GET", base_url(server) + "/Patient/x")
        assert server.received == []


def test_allowlist_comes_from_fhir_base_url_and_the_setting() -> None:
    settings = Settings(FHIR_BASE_URL="https://a.example/fhir/", fhir_allowlist=" https://b.example/r4 ,")
    allowlist = Allowlist.from_settings(settings)
    assert allowlist.allows("https://a.example/fhir/Patient/1")
    assert allowlist.allows("https://b.example/r4")
    assert not allowlist.allows("https://b.example/r4evil/Patient")
    assert not allowlist.allows("https://c.example/fhir")


def test_plain_http_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ServerNotAllowedError, match="only for loopback"):
        FhirClient("http://fhir.example.org/r4", allowlist=Allowlist(("http://fhir.example.org/r4",)))


def test_reads_retry_on_503_and_honour_retry_after() -> None:
    replies = iter(
        [
            Reply(503, headers={"Retry-After": "2"}),
            Reply(429, headers={"Retry-After": "1"}),
            Reply(200, {"resourceType": "Patient", "id": "p1"}),
        ]
    )
    with scripted_server(lambda r: next(replies)) as server:
        client, slept = client_for(base_url(server))
        assert client.read("Patient", "p1")["id"] == "p1"
        assert slept == [2.0, 1.0]
        assert len(server.received) == 3


def test_reads_give_up_after_max_retries_with_a_clear_error() -> None:
    with scripted_server(lambda r: Reply(503, OUTCOME)) as server:
        client, slept = client_for(base_url(server), max_retries=2)
        with pytest.raises(FhirUnavailableError, match="HTTP 503"):
            client.read("Patient", "p1")
        assert len(server.received) == 3
        assert slept == [0.5, 1.0]


def test_a_transaction_is_retried_on_429_but_not_on_500() -> None:
    replies = iter([Reply(429, headers={"Retry-After": "0"}), Reply(200, {"resourceType": "Bundle"})])
    with scripted_server(lambda r: next(replies)) as server:
        client, _ = client_for(base_url(server))
        assert client.transaction({"resourceType": "Bundle", "type": "transaction"})["resourceType"] == "Bundle"
        assert len(server.received) == 2
    with scripted_server(lambda r: Reply(500, OUTCOME)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirUnavailableError):
            client.transaction({"resourceType": "Bundle", "type": "transaction"})
        assert len(server.received) == 1


def test_401_says_authorization_failed_without_the_token() -> None:
    with scripted_server(lambda r: Reply(401, OUTCOME)) as server:
        client, _ = client_for(base_url(server), auth=BearerAuth("s3cr3t-token-value"))
        with pytest.raises(FhirAuthError) as caught:
            client.read("Patient", "p1")
        assert "authorization failed" in str(caught.value)
        assert "s3cr3t" not in str(caught.value)
        assert "s3cr3t" not in repr(client._auth)
        assert server.received[0].headers["Authorization"] == "Bearer s3cr3t-token-value"


def test_operation_outcome_and_not_found_become_typed_errors() -> None:
    with scripted_server(lambda r: Reply(404 if "Patient" in r.path else 400, OUTCOME)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirNotFoundError):
            client.read("Patient", "nope")
        with pytest.raises(FhirOperationError, match="subject is required"):
            client.request("POST", "Observation", json_body={"resourceType": "Observation"})


def test_a_slow_server_times_out_within_the_configured_bound() -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Patient"}, delay_s=3)) as server:
        client, _ = client_for(base_url(server), read_timeout_s=0.3, max_retries=1)
        started = time.monotonic()
        with pytest.raises(FhirUnavailableError, match="did not answer"):
            client.read("Patient", "p1")
        assert time.monotonic() - started < 2.5


def test_a_closed_port_fails_fast_with_a_clear_message() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fhir"
    client, _ = client_for(url, max_retries=0)
    with pytest.raises(FhirUnavailableError, match=f"127.0.0.1:{port} did not answer"):
        client.read("Patient", "p1")


def test_search_follows_next_links_and_is_bounded() -> None:
    def page(received: Received) -> Reply:
        number = int(parse_qs(received.path.split("?", 1)[1]).get("page", ["1"])[0])
        links = [{"relation": "next", "url": f"{root}/Observation?page={number + 1}"}] if number < 3 else []
        return Reply(
            200,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": links,
                "entry": [{"resource": {"resourceType": "Observation", "id": f"o{number}"}}],
            },
        )

    with scripted_server(page) as server:
        root = base_url(server)
        client, _ = client_for(root)
        assert [r["id"] for r in client.search("Observation", {"page": "1"})] == ["o1", "o2", "o3"]
        bounded, _ = client_for(root, max_pages=2)
        with pytest.raises(FhirOperationError, match="more than 2 pages"):
            list(bounded.search("Observation", {"page": "1"}))


def test_a_next_link_to_another_server_is_refused() -> None:
    with scripted_server(
        lambda r: Reply(
            200,
            {
                "resourceType": "Bundle",
                "link": [{"relation": "next", "url": "https://elsewhere.example/fhir/Observation?page=2"}],
            },
        )
    ) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(ServerNotAllowedError):
            list(client.search("Observation", {}))


def _rsa_pem() -> tuple[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def _ec_pem() -> tuple[str, object]:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


@pytest.mark.parametrize(("algorithm", "make_key"), [("RS384", _rsa_pem), ("ES384", _ec_pem)])
def test_smart_backend_services_token_is_verified_cached_and_sent(algorithm: str, make_key: object) -> None:
    private_pem, public_key = make_key()  # type: ignore[operator]
    issued: list[str] = []

    def token_endpoint(received: Received) -> Reply:
        form = {k: v[0] for k, v in parse_qs(received.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form["client_assertion"],
                public_key,
                algorithms=[algorithm],  # type: ignore[arg-type]
                audience=token_url,
                issuer="rls-client",
            )
        except jwt.PyJWTError:
            return Reply(401, {"error": "invalid_client"})
        assert claims["sub"] == "rls-client"
        assert claims["jti"]
        assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "key-1"
        issued.append(f"token-{len(issued) + 1}")
        return Reply(
            200,
            {"access_token": issued[-1], "token_type": "bearer", "expires_in": 300},
            headers={"Content-Type": "application/json"},
        )

    with (
        scripted_server(token_endpoint) as auth_server,
        scripted_server(lambda r: Reply(200, {"resourceType": "Patient", "id": "p1"})) as fhir_server,
    ):
        token_url = base_url(auth_server, "/token")
        import requests

        auth = SmartBackendAuth(
            token_url=token_url,
            client_id="rls-client",
            private_key_pem=private_pem,
            algorithm=algorithm,
            key_id="key-1",
            scope="system/Patient.rs",
            session=requests.Session(),
            timeout=(2, 5),
        )
        client, _ = client_for(base_url(fhir_server), auth=auth)
        client.read("Patient", "p1")
        client.read("Patient", "p1")
        assert issued == ["token-1"]  # cached until expiry
        assert [r.headers["Authorization"] for r in fhir_server.received] == ["Bearer token-1"] * 2


def test_smart_backend_services_rejects_a_wrong_key_at_the_token_endpoint() -> None:
    private_pem, _ = _rsa_pem()
    _, other_public = _rsa_pem()

    def token_endpoint(received: Received) -> Reply:
        form = {k: v[0] for k, v in parse_qs(received.body.decode()).items()}
        try:
            jwt.decode(form["client_assertion"], other_public, algorithms=["RS384"], audience=token_url)  # type: ignore[arg-type]
        except jwt.PyJWTError:
            return Reply(401, {"error": "invalid_client"})
        return Reply(200, {"access_token": "x"})

    with scripted_server(token_endpoint) as auth_server, scripted_server(lambda r: Reply(200, {})) as fhir_server:
        token_url = base_url(auth_server, "/token")
        import requests

        auth = SmartBackendAuth(
            token_url=token_url,
            client_id="c",
            private_key_pem=private_pem,
            algorithm="RS384",
            key_id="k",
            scope="s",
            session=requests.Session(),
            timeout=(2, 5),
        )
        client, _ = client_for(base_url(fhir_server), auth=auth)
        with pytest.raises(FhirAuthError, match="token request refused"):
            client.read("Patient", "p1")
        assert fhir_server.received == []


def test_json_bodies_are_sent_as_fhir_json() -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Bundle"})) as server:
        client, _ = client_for(base_url(server))
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
        sent = server.received[0]
        assert sent.headers["Content-Type"] == "application/fhir+json"
        assert sent.headers["Accept"] == "application/fhir+json"
        assert json.loads(sent.body)["type"] == "transaction"
