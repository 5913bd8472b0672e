"""FhirClient against real loopback HTTP servers that misbehave on purpose (no HAPI needed)."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
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
    FhirResponseError,
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


# --- a 2xx whose body is not the JSON asked for ----------------------------------------------------

# A login page as a proxy might serve it, with the kind of text that must never reach a message or a log.
LOGIN_PAGE = b"<!DOCTYPE html><html><body>Welcome back, Jane Q. Patient (MRN 0042)</body></html>"
HTML = {"Content-Type": "text/html; charset=utf-8"}
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Quinn"}]}
TRUNCATED_PATIENT = json.dumps(PATIENT).encode()[:30]


def _html_page(received: Received) -> Reply:
    return Reply(200, LOGIN_PAGE, headers=HTML)


def _first_page_then(second: Reply) -> Callable[[Received], Reply]:
    def answer(received: Received) -> Reply:
        if "page=2" in received.path:
            return second
        root = f"http://{received.headers['Host']}/fhir"
        return Reply(
            200,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": f"{root}/Observation?page=2"}],
                "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}],
            },
        )

    return answer


INTERACTIONS: dict[str, Callable[[FhirClient], object]] = {
    "read": lambda c: c.read("Patient", "p1"),
    "search": lambda c: list(c.search("Observation", {"page": "1"})),
    "transaction": lambda c: c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []}),
    "validate": lambda c: c.validate({"resourceType": "Patient"}),
    "request_json": lambda c: c.request_json("GET", "metadata"),
}


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_an_html_page_on_200_is_a_typed_error_that_names_what_arrived(interaction: str) -> None:
    with scripted_server(_html_page) as server:
        client, slept = client_for(base_url(server))
        with pytest.raises(FhirResponseError) as caught:
            INTERACTIONS[interaction](client)
        message = str(caught.value)
        assert "expected FHIR JSON" in message
        assert f"HTTP 200 with text/html ({len(LOGIN_PAGE)} bytes)" in message
        assert "Jane" not in message
        assert "0042" not in message
        assert caught.value.status == 200
        assert len(server.received) == 1, "a login page is not transient: not retried"
        assert slept == []


def test_an_html_page_on_a_next_page_is_a_typed_error() -> None:
    with scripted_server(_first_page_then(Reply(200, LOGIN_PAGE, headers=HTML))) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirResponseError, match="text/html"):
            list(client.search("Observation", {"page": "1"}))
        assert len(server.received) == 2


def test_an_html_page_on_a_validate_400_is_a_typed_error() -> None:
    with scripted_server(lambda r: Reply(400, LOGIN_PAGE, headers=HTML)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirResponseError, match=r"HTTP 400 with text/html"):
            client.validate({"resourceType": "Patient"})


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b"[]", {}, "holding a JSON list"),
        (b"null", {}, "holding a JSON NoneType"),
        (b'{"resourceType": "Patient" "id": "p1"}', {}, "not valid JSON"),
        (b"<Patient xmlns='http://hl7.org/fhir'/>", {"Content-Type": "application/fhir+xml"}, "application/fhir+xml"),
        (b"<html>gateway</html>", {}, "not valid JSON"),  # labelled JSON, but it is not
    ],
)
def test_bodies_that_are_not_a_json_object_are_typed_and_not_retried(
    body: bytes, headers: dict[str, str], says: str
) -> None:
    with scripted_server(lambda r: Reply(200, body, headers=headers)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirResponseError, match=re.escape(says)):
            client.read("Patient", "p1")
        assert len(server.received) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json; charset=UTF-8"},
        {"Content-Type": "application/json+fhir"},
        {"Content-Type": ""},
    ],
)
def test_json_under_other_usual_content_types_is_accepted(headers: dict[str, str]) -> None:
    with scripted_server(lambda r: Reply(200, json.dumps(PATIENT).encode(), headers=headers)) as server:
        client, _ = client_for(base_url(server))
        assert client.read("Patient", "p1") == PATIENT


def test_a_read_whose_body_is_cut_off_is_retried() -> None:
    replies = iter([Reply(200, TRUNCATED_PATIENT), Reply(200, b""), Reply(200, PATIENT)])
    with scripted_server(lambda r: next(replies)) as server:
        client, slept = client_for(base_url(server))
        assert client.read("Patient", "p1") == PATIENT
        assert len(server.received) == 3
        assert slept == [0.5, 1.0]


def test_a_next_page_whose_body_is_cut_off_is_retried() -> None:
    second = iter([Reply(200, b'{"resourceType": "Bundle", "entry": [{"resou'), Reply(200, {"resourceType": "Bundle"})])
    with scripted_server(_first_page_then(Reply())) as server:
        server.script = lambda r, first=server.script: next(second) if "page=2" in r.path else first(r)
        client, _ = client_for(base_url(server))
        assert [r["id"] for r in client.search("Observation", {"page": "1"})] == ["o1"]
        assert len(server.received) == 3


def test_a_body_that_stays_cut_off_is_unavailable_after_the_retries() -> None:
    with scripted_server(lambda r: Reply(200, TRUNCATED_PATIENT)) as server:
        client, _ = client_for(base_url(server), max_retries=2)
        with pytest.raises(FhirUnavailableError, match=r"ends before the JSON does") as caught:
            client.read("Patient", "p1")
        assert f"({len(TRUNCATED_PATIENT)} bytes)" in str(caught.value)
        assert "Quinn" not in str(caught.value)
        assert len(server.received) == 3


def test_a_transaction_answer_cut_off_is_unavailable_and_not_resent() -> None:
    with scripted_server(lambda r: Reply(200, b'{"resourceType": "Bundle", "type": "transaction-resp')) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirUnavailableError, match="may have applied the request"):
            client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
        assert len(server.received) == 1


def test_no_body_text_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replies = iter([Reply(200, TRUNCATED_PATIENT), Reply(200, LOGIN_PAGE, headers=HTML)])
    with scripted_server(lambda r: next(replies)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirResponseError):
            client.read("Patient", "p1")
    assert "cut off" in caplog.text  # the retry is logged ...
    for secret in ("Quinn", "Jane", "0042"):  # ... without the body
        assert secret not in caplog.text


def test_every_cut_of_a_json_body_reads_as_cut_off() -> None:
    bundle = {
        "resourceType": "Bundle",
        "total": 2,
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "valueQuantity": {"value": -1.25e-3},
                    "x": [True, False, None],
                }
            },
            {"resource": {"resourceType": "Patient", "name": [{"given": ["Zoë", 'A"b\\c']}], "active": False}},
        ],
    }
    with scripted_server(lambda r: Reply()) as server:
        client, _ = client_for(base_url(server))
        whole = json.dumps(bundle, ensure_ascii=False, indent=1).encode()
        cuts: dict[str, list[int]] = {"unavailable": [], "response": []}
        for end in range(len(whole)):
            server.script = lambda r, body=whole[:end]: Reply(200, body)
            try:
                client.transaction({"resourceType": "Bundle"})  # not retried: one request per cut
            except FhirUnavailableError:
                cuts["unavailable"].append(end)
            except FhirResponseError:
                cuts["response"].append(end)
        assert cuts["response"] == []
        assert len(cuts["unavailable"]) == len(whole)


def test_the_token_endpoint_answering_a_login_page_is_a_typed_error() -> None:
    private_pem, _ = _rsa_pem()
    replies = iter(
        [
            Reply(200, LOGIN_PAGE, headers=HTML),
            Reply(200, b'{"access_token": "abc", "expires_in": 3', headers={"Content-Type": "application/json"}),
            Reply(200, {"access_token": "abc", "expires_in": "soon"}, headers={"Content-Type": "application/json"}),
            Reply(200, {"access_token": "abc", "expires_in": "3600"}, headers={"Content-Type": "application/json"}),
        ]
    )
    with (
        scripted_server(lambda r: next(replies)) as auth_server,
        scripted_server(lambda r: Reply(200, PATIENT)) as fhir,
    ):
        import requests

        auth = SmartBackendAuth(
            token_url=base_url(auth_server, "/token"),
            client_id="c",
            private_key_pem=private_pem,
            algorithm="RS384",
            key_id="k",
            scope="s",
            session=requests.Session(),
            timeout=(2, 5),
        )
        client, _ = client_for(base_url(fhir), auth=auth, max_retries=0)
        with pytest.raises(FhirResponseError, match=r"token request: expected FHIR JSON, got HTTP 200 with text/html"):
            client.read("Patient", "p1")
        with pytest.raises(FhirUnavailableError, match=r"token request: .* ends before the JSON does"):
            client.read("Patient", "p1")
        with pytest.raises(FhirAuthError, match="expires_in"):
            client.read("Patient", "p1")
        assert fhir.received == []
        assert client.read("Patient", "p1") == PATIENT  # a numeric string is what some providers send


def test_a_download_that_is_an_html_page_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with scripted_server(_html_page) as server:
        client, _ = client_for(base_url(server))
        destination = tmp_path / "Observation-1.ndjson"
        with pytest.raises(FhirResponseError, match=r"expected NDJSON, got HTTP 200 with text/html"):
            client.download(base_url(server) + "/Binary/b1", destination)
        assert not destination.exists()


def test_a_download_of_ndjson_is_written(tmp_path: Path) -> None:
    lines = b'{"resourceType": "Patient", "id": "p1"}\n'
    with scripted_server(lambda r: Reply(200, lines, headers={"Content-Type": "application/fhir+ndjson"})) as server:
        client, _ = client_for(base_url(server))
        destination = tmp_path / "Patient-1.ndjson"
        assert client.download(base_url(server) + "/Binary/b1", destination) == len(lines)
        assert destination.read_bytes() == lines


def test_a_malformed_operation_outcome_does_not_hide_the_http_error() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": ["not an issue", {"details": "text"}]}
    with scripted_server(lambda r: Reply(400, outcome)) as server:
        client, _ = client_for(base_url(server))
        with pytest.raises(FhirOperationError, match=r"HTTP 400$"):
            client.request("POST", "Observation", json_body={"resourceType": "Observation"})


def test_a_deadline_cuts_the_read_timeout_and_stops_further_requests() -> None:
    """The CDS service's per-call deadline: nothing is sent, retried or waited for past it."""
    with scripted_server(lambda _: Reply(200, {"resourceType": "Patient", "id": "p"}, delay_s=1.0)) as server:
        url = base_url(server)
        client = FhirClient(
            url, allowlist=Allowlist((url,)), max_retries=3, read_timeout_s=30, deadline_at=time.monotonic() + 0.3
        )
        started = time.monotonic()
        with pytest.raises(FhirUnavailableError):
            client.read("Patient", "p")
        assert time.monotonic() - started < 0.8  # not the 1 s answer, nor a 30 s timeout, nor retries
        with pytest.raises(FhirUnavailableError, match="deadline has passed"):
            client.read("Patient", "p")
        assert len(server.received) == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            Reply(200, {"access_token": "t", "expires_in": 300, "scope": "system/Patient.rs"}),
            r"did not grant system/Observation\.rs .*system/Flag\.crus \(to write the Flags\)",
        ),
        (Reply(400, {"error": "invalid_scope"}), r"does not allow the scopes asked for \(system/Patient\.rs"),
    ],
)
def test_a_refused_scope_is_a_clear_error_naming_it(answer: Reply, message: str) -> None:
    import requests

    from rls_screen.scopes import scopes_for

    private_pem, _ = _rsa_pem()
    asked: list[str] = []

    def token_endpoint(received: Received) -> Reply:
        asked.append(parse_qs(received.body.decode())["scope"][0])
        return answer

    with scripted_server(token_endpoint) as auth_server, scripted_server(lambda r: Reply(200, {})) as fhir_server:
        needed = scopes_for(write=True)
        auth = SmartBackendAuth(
            token_url=base_url(auth_server, "/token"),
            client_id="rls-client",
            private_key_pem=private_pem,
            algorithm="RS384",
            key_id="key-1",
            scope=needed,
            needed_scopes=needed,
            session=requests.Session(),
            timeout=(2, 5),
        )
        client, _ = client_for(base_url(fhir_server), auth=auth)
        with pytest.raises(FhirAuthError, match=message):
            client.read("Patient", "p1")
        assert asked == [needed]
        assert fhir_server.received == []
