"""The CDS service reading from an allowlisted EHR FHIR server that answers in hostile or broken ways.

Each answer must make the call "data unavailable" (412 with an OperationOutcome), never a 500 and
never data from elsewhere: redirects, fhirServer or next links that only look like they are under
the allowed base, Bundles whose entry or link is not an array of objects, bodies that are not in
their Content-Encoding or are nested too deeply, and access tokens that an HTTP header cannot carry.
The FHIR servers are real loopback servers (tests/support/scripted_server.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from tests.api.helpers import NORMAL, PATIENT_VIEW, ServerFactory, labs, patient_view_request, rls_condition, searchset
from tests.support.fhir_data import patient
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

AUTHORIZATION = {"access_token": "t0ken", "token_type": "Bearer", "expires_in": 300, "subject": "s"}
OK = {"status": "200 OK"}


def _unavailable(response: requests.Response) -> str:
    """The 412's diagnostics; fails on any other answer."""
    assert response.status_code == 412, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["diagnostics"])


def _answers(prefix: str, observations: Reply) -> Any:
    """A FHIR server with an RLS patient whose Observations (searched, or in a batch) come as ``observations``."""

    def script(received: Received) -> Reply:
        path = received.path
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition(prefix)]))
        if path.startswith("/fhir/Patient/"):
            return Reply(200, patient(prefix))
        if path.startswith("/fhir/Observation"):
            return observations
        if received.method == "POST":
            if observations.status != 200 or not isinstance(observations.body, dict):
                return observations  # the batch answer itself is broken
            requested = [e["request"]["url"] for e in json.loads(received.body)["entry"]]
            entries = [
                {"resource": observations.body if url.startswith("Observation") else _good(prefix, url), "response": OK}
                for url in requested
            ]
            return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries})
        return Reply(200, searchset([]))

    return script


def _good(prefix: str, url: str) -> dict[str, Any]:
    return patient(prefix) if url.startswith("Patient") else searchset([])


# --- redirects --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("where", ["search", "batch"])
def test_a_redirect_to_a_server_off_the_allowlist_is_never_followed(
    cds_server: ServerFactory, status: int, where: str
) -> None:
    """A redirected read would bring another server's answers in as this patient's labs."""
    with scripted_server(lambda r: Reply(200, searchset(labs("rd1", **{**NORMAL, "hb": 90.0})))) as elsewhere:

        def script(received: Received) -> Reply:
            redirect = Reply(status, None, headers={"Location": f"{base_url(elsewhere)}/Observation?x=1"})
            if where == "search" and received.path.startswith("/fhir/Condition"):
                return redirect
            if where == "batch" and received.method == "POST":
                return redirect
            return _answers("rd1", Reply(200, searchset([])))(received)

        with scripted_server(script) as fhir_server:
            fhir = base_url(fhir_server)
            _, ehr = cds_server(fhir_base_url=fhir)
            prefetch = {"conditions": searchset([rls_condition("rd1")])} if where == "batch" else None
            body = patient_view_request("rd1", prefetch, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
            assert "redirect" in _unavailable(ehr.call(PATIENT_VIEW, body))
        assert elsewhere.received == []


def test_a_same_host_redirect_outside_the_fhir_base_does_not_carry_the_token(cds_server: ServerFactory) -> None:
    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/"):
            return Reply(307, None, headers={"Location": "/collect/Condition"})
        return Reply(200, searchset([]))

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("rd2", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        _unavailable(ehr.call(PATIENT_VIEW, body))
        assert all(r.path.startswith("/fhir/") for r in fhir_server.received)


def test_a_redirect_loop_is_412_not_500(cds_server: ServerFactory) -> None:
    with scripted_server(lambda r: Reply(302, None, headers={"Location": r.path})) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("rd3", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        _unavailable(ehr.call(PATIENT_VIEW, body))
        assert len(fhir_server.received) == 1


# --- URLs that only look like they are under the allowed base ----------------------------------------------


@pytest.mark.parametrize("tail", ["/../outside", "/%2e%2e/outside", "/%2E%2e/outside", "evil"])
def test_a_fhir_server_that_only_looks_allowed_is_never_called(cds_server: ServerFactory, tail: str) -> None:
    with scripted_server(lambda r: Reply(200, searchset([]))) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("ul1", None, fhirServer=fhir + tail, fhirAuthorization=AUTHORIZATION)
        assert "fhirServer" in _unavailable(ehr.call(PATIENT_VIEW, body))
        assert fhir_server.received == []


@pytest.mark.parametrize("tail", ["/../x/Observation?page=2", "/%2e%2e/x/Observation?page=2", "evil/Observation"])
def test_a_prefetch_next_link_out_of_fhir_server_never_gets_the_token(cds_server: ServerFactory, tail: str) -> None:
    with scripted_server(lambda r: Reply(200, searchset([]))) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        prefetch = {
            "patient": patient("ul2"),
            "conditions": searchset([rls_condition("ul2")]),
            "observations": searchset(labs("ul2", ferritin=11.0), next_url=fhir + tail),
            "medications": searchset([]),
        }
        body = patient_view_request("ul2", prefetch, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        assert "outside fhirServer" in _unavailable(ehr.call(PATIENT_VIEW, body))
        assert fhir_server.received == []


# --- bad answers ------------------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_ANSWERS = {
    "entry null": Reply(200, {"resourceType": "Bundle", "type": "searchset", "entry": None}),
    "entry an object": Reply(200, {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}}),
    "entry a list of strings": Reply(200, {"resourceType": "Bundle", "type": "searchset", "entry": ["x", "y"]}),
    "link a string": Reply(200, {"resourceType": "Bundle", "type": "searchset", "link": "next"}),
    "link a list of strings": Reply(200, {"resourceType": "Bundle", "type": "searchset", "link": ["next"]}),
    "gzip over a plain body": Reply(200, json.dumps(searchset([])).encode(), headers={"Content-Encoding": "gzip"}),
    "nested 100k deep": Reply(200, DEEP),
}


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
@pytest.mark.parametrize("path", ["key by key", "batch"])
def test_a_bad_answer_from_the_fhir_server_is_412_never_500(
    cds_server: ServerFactory, answer: Reply, path: str
) -> None:
    with scripted_server(_answers("ba1", answer)) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        prefetch = {"conditions": searchset([rls_condition("ba1")])}
        if path == "key by key":
            prefetch |= {"patient": patient("ba1"), "medications": searchset([])}
        body = patient_view_request("ba1", prefetch, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        assert "lab Observations" in _unavailable(ehr.call(PATIENT_VIEW, body))


@pytest.mark.parametrize("link", ["next", ["next"], [{"relation": "next", "url": 7}]], ids=["string", "strings", "url"])
def test_a_bad_link_on_a_later_page_is_412(cds_server: ServerFactory, link: Any) -> None:
    def script(received: Received) -> Reply:
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "link": link})

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        prefetch = {
            "patient": patient("ba2"),
            "conditions": searchset([rls_condition("ba2")]),
            "observations": searchset(labs("ba2", ferritin=11.0), next_url=f"{fhir}/Observation?page=2"),
            "medications": searchset([]),
        }
        body = patient_view_request("ba2", prefetch, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        _unavailable(ehr.call(PATIENT_VIEW, body))
        assert len(fhir_server.received) == 1


@pytest.mark.parametrize("entry", [None, {"resource": {}}, ["x"]], ids=["null", "object", "strings"])
def test_a_malformed_prefetch_bundle_from_the_ehr_is_400(cds_server: ServerFactory, entry: Any) -> None:
    _, ehr = cds_server()
    prefetch = {
        "patient": patient("ba3"),
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": entry},
    }
    response = ehr.call(PATIENT_VIEW, patient_view_request("ba3", prefetch))
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("token", ["t0ken\r\nX-Injected: 1", "tökén", "☃"], ids=["crlf", "latin-1", "non-latin-1"])
@pytest.mark.parametrize("path", ["key by key", "batch"])
def test_an_access_token_a_header_cannot_carry_is_412_and_nothing_is_sent(
    cds_server: ServerFactory, token: str, path: str
) -> None:
    with scripted_server(_answers("tk1", Reply(200, searchset(labs("tk1", **NORMAL))))) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        prefetch = {"conditions": searchset([rls_condition("tk1")])} if path == "batch" else None
        authorization = {**AUTHORIZATION, "access_token": token}
        body = patient_view_request("tk1", prefetch, fhirServer=fhir, fhirAuthorization=authorization)
        diagnostics = _unavailable(ehr.call(PATIENT_VIEW, body))
        assert "access token" in diagnostics
        assert token not in diagnostics
        assert fhir_server.received == []
