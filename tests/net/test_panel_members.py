"""Whose panel is this? Group members and Condition subjects name a patient only in the resolver's forms (D1)."""

from __future__ import annotations

from typing import Any

from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.batch.sources import from_condition_search, from_group
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge


def _client(server: Any) -> FhirClient:
    base = base_url(server)
    return FhirClient(base, allowlist=Allowlist((base,)), max_retries=0)


def test_group_members_of_every_odd_shape_are_reported_not_guessed_or_crashed_on() -> None:
    def script(received: Received) -> Reply:
        members: list[Any] = [
            "Patient/x",
            {"entity": "Patient/a"},
            {"entity": {"reference": "Patient/OTHER/Patient/b"}},
            {"entity": {"reference": "Patient/c"}},
            {"entity": {"reference": "https://other.example/fhir/Patient/e"}},
            {"entity": {"reference": "Patient/f"}, "inactive": True},
            {"entity": {"identifier": {"value": "123"}}},
            {"entity": {"reference": "Patient/d"}},
        ]
        return Reply(200, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": members})

    with scripted_server(script) as server:
        panel = from_group(_client(server), "Group/g1")
    assert panel.ids == ("c", "d")
    assert panel.problems == (
        "member 1: not a Patient reference",
        "member 2: not a Patient reference",
        "member 3: not a Patient reference",
        "member 5: not a Patient reference",
        "member 6: inactive, skipped",
        "member 7: not a Patient reference",
    )


def test_an_absolute_member_reference_counts_only_on_the_servers_own_base() -> None:
    holder: dict[str, str] = {}

    def script(received: Received) -> Reply:
        members = [{"entity": {"reference": f"{holder['base']}/Patient/d"}}, {"entity": {"reference": "Patient/c"}}]
        return Reply(200, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": members})

    with scripted_server(script) as server:
        holder["base"] = base_url(server)
        assert from_group(_client(server), "Group/g1").ids == ("d", "c")


def test_condition_subjects_that_are_not_patient_references_are_skipped() -> None:
    def script(received: Received) -> Reply:
        entries = [
            {"resource": {"resourceType": "Condition", "id": "1", "subject": "Patient/x"}},
            {"resource": {"resourceType": "Condition", "id": "2", "subject": {"reference": "Group/Patient/y"}}},
            {"resource": {"resourceType": "Condition", "id": "3", "subject": {"reference": "Patient/z"}}},
        ]
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "entry": entries})

    with scripted_server(script) as server:
        assert from_condition_search(_client(server), load_knowledge().terminology).ids == ("z",)
