"""The synthetic panel's urn:uuid transaction Bundles load into HAPI, and the new resources validate.

Patients 7 (an active aggravating drug, a non-aggravating one, an RLS treatment), 11 (a stopped
aggravating drug) and 42 (kidney failure: dialysis Procedures inside and outside the window) of seed 1.
Each test has its own id prefix (``su<unique>``), so the MRNs the Group's conditional references
match are this test's alone on the shared server.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from rls_screen import synth
from rls_screen.fhir_client import Allowlist, FhirClient, validation_errors

AS_OF = date(2026, 11, 25)
INDICES = (7, 11, 42)


@pytest.fixture
def client(fhir_base_url: str) -> FhirClient:
    return FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))


def _records(prefix: str) -> list[synth.PatientRecord]:
    records = [synth.generate_patient(i, seed=1, as_of=AS_OF, id_prefix=prefix) for i in INDICES]
    kinds = {r["resourceType"] for record in records for r in record.resources}
    assert {"MedicationRequest", "Procedure"} <= kinds, "the chosen patients carry both new kinds"
    return records


def _load(client: FhirClient, bundles: list[dict[str, Any]]) -> list[str]:
    """Post each Bundle; the locations (``Type/id``) of what the server wrote, in entry order."""
    locations = []
    for bundle in bundles:
        response = client.transaction(bundle)
        assert all(e["response"]["status"][:3] in ("200", "201") for e in response["entry"])
        locations += [e["response"]["location"].split("/_history")[0] for e in response["entry"]]
    return locations


def test_post_bundles_load_resolve_urn_uuids_and_validate(client: FhirClient, unique_prefix: str) -> None:
    prefix = f"su{unique_prefix}"
    records = _records(prefix)
    bundles = list(synth.urn_uuid_bundles(records, method="POST"))
    locations = _load(client, bundles)

    by_record = iter(locations)
    validated: set[str] = set()
    for record in records:
        patient_location = next(by_record)
        assert patient_location.startswith("Patient/")
        for resource in record.resources:
            stored = client.read(*next(by_record).split("/")[-2:])
            assert stored["resourceType"] == resource["resourceType"]
            assert stored["subject"]["reference"] == patient_location, "the urn:uuid became the server's id"
            if stored["resourceType"] in ("MedicationRequest", "Procedure") and stored["resourceType"] not in validated:
                assert validation_errors(client.validate(stored)) == [], stored["resourceType"]
                validated.add(stored["resourceType"])
    assert validated == {"MedicationRequest", "Procedure"}

    group = client.read(*next(by_record).split("/")[-2:])
    patients = [loc for loc in locations if loc.startswith("Patient/")]
    assert [m["entity"]["reference"] for m in group["member"]] == patients, "conditional members resolved"


def test_put_bundles_keep_the_generated_ids(client: FhirClient, unique_prefix: str) -> None:
    prefix = f"su{unique_prefix}"
    records = _records(prefix)
    locations = _load(client, list(synth.urn_uuid_bundles(records, method="PUT")))
    expected = [f"{r['resourceType']}/{r['id']}" for record in records for r in record.all_resources()]
    assert locations == [*expected, f"Group/{prefix}-panel"]
    procedure = next(r for r in records[-1].resources if r["resourceType"] == "Procedure")
    stored = client.read("Procedure", procedure["id"])
    assert stored["subject"] == {"reference": f"Patient/{records[-1].patient_id}"}
    assert validation_errors(client.validate(stored)) == []
