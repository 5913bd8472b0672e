"""One patient's Assessment from their data: the one ``assess`` every path calls.

``evaluate`` (the engine) decides; this puts the data contract (D2) between what a path delivered and
the engine, so a path that read more than the contract asks (a whole Synthea Bundle, an unfiltered
NDJSON export, a generous prefetch) gives the same Assessment as a filtered server search. Resources
not linked to the patient (D1) that the contract would have read are reported as not evaluable,
never used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from rls_screen.engine import evaluate
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment, NotEvaluable
from rls_screen.patient_data import PatientData


def _reference(resource: Mapping[str, Any]) -> str | None:
    kind, resource_id = resource.get("resourceType"), resource.get("id")
    return f"{kind}/{resource_id}" if isinstance(kind, str) and isinstance(resource_id, str) else None


def assess(data: PatientData, *, knowledge: Knowledge, as_of: date) -> Assessment:
    """Apply the data contract, then the rule set, to one patient's data as of ``as_of``."""
    contract = knowledge.contract

    def inside(resources: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        # in id order: a server's search order (``_sort=-date``), a file's order and a Bundle's order
        # differ, and the Assessment (its not-evaluable list, ties) must not depend on how data arrived
        kept = [r for r in resources if isinstance(r, Mapping) and contract.wanted(r, as_of)]
        return sorted(kept, key=lambda r: str(r.get("id", "")))

    unlinked = [
        NotEvaluable(
            "not-linked",
            f"{resource.get('resourceType')} not linked to this patient: {why}",
            observation=_reference(resource),
        )
        for resource, why in data.unlinked
        if contract.wanted(resource, as_of)
    ]
    return evaluate(
        data.facts(),
        inside(data.observations),
        as_of=as_of,
        knowledge=knowledge,
        conditions=inside(data.conditions),
        procedures=inside(data.procedures),
        medications=inside(data.medications),
        not_evaluable=unlinked,
    )
