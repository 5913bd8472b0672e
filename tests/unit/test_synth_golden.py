"""The synthetic panel's existing values never move when new resource kinds are added.

tests/data/synth/seed1-before-orders.json was written by the generator before MedicationRequests and
Procedures existed: the Observation values of 25 patients, and digests of every Patient, Condition
and Observation of 400 patients for seeds 1 and 2. New resources draw from their own random stream,
so these stay equal; regenerate the file only when ``RNG_NAMESPACE`` is bumped on purpose. The results
of rule set 2026.3 (docs/rules.md section 11, ids ``<patient>-mimic-NN``) are new too and left out here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from rls_screen import synth

pytestmark = pytest.mark.unit
GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "synth" / "seed1-before-orders.json").read_text())
AS_OF = date.fromisoformat(GOLDEN["asOf"])
OLD_TYPES = ("Condition", "Observation", "Patient")


def _row(observation: dict[str, Any]) -> list[Any]:
    quantity = observation.get("valueQuantity", {})
    loinc = next(c["code"] for c in observation["code"]["coding"] if c["system"] == synth.LOINC)
    effective = observation.get("effectiveDateTime") or observation["effectivePeriod"]["end"]
    unit = quantity.get("code") or quantity.get("unit")
    return [
        observation["id"],
        loinc,
        observation["status"],
        quantity.get("comparator"),
        quantity.get("value"),
        unit,
        effective,
    ]


def test_observation_values_are_the_ones_drawn_before_orders_existed() -> None:
    spec = GOLDEN["observations"]
    rows = [
        _row(resource)
        for record in synth.iter_patient_records(spec["patients"], spec["seed"], AS_OF)
        for resource in record.resources
        if resource["resourceType"] == "Observation" and "-mimic-" not in resource["id"]
    ]
    assert rows == spec["values"]


@pytest.mark.parametrize("seed", ["1", "2"])
def test_patients_conditions_and_observations_are_byte_identical(seed: str) -> None:
    digests = {kind: hashlib.sha256() for kind in OLD_TYPES}
    for record in synth.iter_patient_records(GOLDEN["digests"]["patients"], int(seed), AS_OF):
        for resource in record.all_resources():
            if resource["resourceType"] in digests and "-mimic-" not in resource["id"]:
                digests[resource["resourceType"]].update(orjson.dumps(resource) + b"\n")
    assert {kind: digest.hexdigest() for kind, digest in digests.items()} == GOLDEN["digests"]["bySeed"][seed]
