"""`rls-screen synth --load` posts its transaction Bundles, in order, through the shared client."""

from __future__ import annotations

import json

import pytest
from tests.support.scripted_server import Reply, base_url, scripted_server

from rls_screen.cli import main
from rls_screen.settings import get_settings


def test_synth_load_posts_bundles_in_order_group_last(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Bundle", "type": "transaction-response"})) as server:
        url = base_url(server)
        monkeypatch.setenv("FHIR_BASE_URL", url)
        get_settings.cache_clear()
        try:
            code = main(["synth", "-n", "5", "--as-of", "2026-03-15", "--load", "--patients-per-bundle", "2"])
        finally:
            get_settings.cache_clear()
        assert code == 0
        bodies = [json.loads(r.body) for r in server.received]
        assert [r.method for r in server.received] == ["POST"] * 4
        assert all(b["type"] == "transaction" for b in bodies)
        assert bodies[-1]["entry"][0]["resource"]["resourceType"] == "Group"
        assert f"loaded: 4 transaction bundles to {url}" in capsys.readouterr().out


def test_synth_load_urn_uuid_posts_one_bundle_per_patient_then_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted_server(lambda r: Reply(200, {"resourceType": "Bundle", "type": "transaction-response"})) as server:
        monkeypatch.setenv("FHIR_BASE_URL", base_url(server))
        get_settings.cache_clear()
        try:
            code = main(["synth", "-n", "3", "--as-of", "2026-03-15", "--load", "--urn-uuid"])
        finally:
            get_settings.cache_clear()
        assert code == 0
        bodies = [json.loads(r.body) for r in server.received]
        assert [b["entry"][0]["resource"]["resourceType"] for b in bodies] == ["Patient"] * 3 + ["Group"]
        for body in bodies[:3]:
            patient_url = body["entry"][0]["fullUrl"]
            assert patient_url.startswith("urn:uuid:")
            assert {e["request"]["method"] for e in body["entry"]} == {"POST"}
            assert {e["resource"]["subject"]["reference"] for e in body["entry"][1:]} == {patient_url}
        members = [m["entity"]["reference"] for m in bodies[-1]["entry"][0]["resource"]["member"]]
        assert all(m.startswith("Patient?identifier=https://rls-screen.org/fhir/synthetic-mrn|syn-") for m in members)
