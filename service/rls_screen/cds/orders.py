"""Which drug a draft order is: RLS treatment (dopaminergic, alpha-2-delta) or a possible aggravator.

Draft MedicationRequests usually carry RxNorm clinical-drug codes (SCD/SBD), not ingredient codes.
An order is matched, in this order, on (1) an RxNorm ingredient code of a drug ValueSet, (2) a
clinical-drug code listed in ``terminology/ValueSet-rls-*-clinical-drugs.json``, (3) as a last
resort, an ingredient name as a whole word in the medication's text or coding display
(case-insensitive). The card says which of the three matched, because a name match is weaker
evidence than a code. All codes and names come from the ValueSets in terminology/
(docs/rules.md section 8); nothing clinical is written here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from rls_screen.cds.models import DraftOrders
from rls_screen.codesets import RXNORM, Terminology, value_set_url
from rls_screen.errors import ConfigurationError
from rls_screen.observations import codings_of
from rls_screen.references import PatientLink

log = logging.getLogger(__name__)

DrugKind = Literal["dopaminergic", "alpha2delta", "aggravating"]
MatchedBy = Literal["ingredient code", "clinical drug code", "name"]

RLS_INGREDIENT_VALUE_SETS: tuple[tuple[str, DrugKind], ...] = (
    ("rls-dopaminergic-ingredients", "dopaminergic"),
    ("rls-alpha2delta-ingredients", "alpha2delta"),
)
RLS_CLINICAL_DRUG_VALUE_SETS: tuple[tuple[str, DrugKind], ...] = (
    ("rls-dopaminergic-clinical-drugs", "dopaminergic"),
    ("rls-alpha2delta-clinical-drugs", "alpha2delta"),
)
AGGRAVATING_PREFIX = "aggravating-"
AGGRAVATING_COMPOSITE = "aggravating-medications"
MEDICATION_ORDER_TYPE = "MedicationRequest"
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Drug:
    ingredient: str
    """Lower-case ingredient name as the ValueSet displays it, e.g. 'pramipexole'."""
    kind: DrugKind
    category: str
    """Title of the ValueSet the ingredient is listed in, e.g. 'SSRIs and SNRIs'."""
    ingredient_code: str


@dataclass(frozen=True)
class DraftMedication:
    reference: str
    """'MedicationRequest/<id>' when the draft has an id, else its fullUrl or its position."""
    name: str
    """What the order calls the drug (text, else the first display), for the card."""
    codings: tuple[tuple[str, str], ...]
    displays: tuple[str, ...]
    reason_codings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OrderMatch:
    order: DraftMedication
    matched_by: MatchedBy
    drugs: tuple[Drug, ...]
    code: str | None
    """The RxNorm code that matched (None for a name match)."""

    @property
    def kinds(self) -> frozenset[DrugKind]:
        return frozenset(drug.kind for drug in self.drugs)


def _value_set_concepts(value_set_id: str) -> list[tuple[str, str, str]]:
    """(system, code, display) of a shipped ValueSet file's own concepts (no nested includes)."""
    entry = resources.files("rls_screen.terminology").joinpath(f"ValueSet-{value_set_id}.json")
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"terminology/ValueSet-{value_set_id}.json: cannot read ({error})") from error
    concepts = []
    for include in data.get("compose", {}).get("include", []):
        for concept in include.get("concept", []):
            concepts.append((include.get("system", ""), concept["code"], concept.get("display", concept["code"])))
    return concepts


def _word_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)


@dataclass(frozen=True)
class DrugCatalog:
    by_ingredient_code: Mapping[str, Drug]
    by_clinical_drug_code: Mapping[str, tuple[Drug, ...]]
    by_name: tuple[tuple[re.Pattern[str], Drug], ...]

    def match(self, order: DraftMedication) -> OrderMatch | None:
        rxnorm_codes = [code for system, code in order.codings if system == RXNORM]
        for code in rxnorm_codes:
            drug = self.by_ingredient_code.get(code)
            if drug is not None:
                return OrderMatch(order, "ingredient code", (drug,), code)
        for code in rxnorm_codes:
            drugs = self.by_clinical_drug_code.get(code)
            if drugs:
                return OrderMatch(order, "clinical drug code", drugs, code)
        texts = [order.name, *order.displays]
        named = _unique(drug for pattern, drug in self.by_name if any(pattern.search(text) for text in texts))
        if named:
            return OrderMatch(order, "name", named, None)
        return None


def _unique(drugs: Iterable[Drug]) -> tuple[Drug, ...]:
    seen: dict[str, Drug] = {}
    for drug in drugs:
        seen.setdefault(drug.ingredient, drug)
    return tuple(seen.values())


def load_drug_catalog(terminology: Terminology) -> DrugCatalog:
    """Build the matcher from the drug ValueSets; a clinical drug naming none of its ingredients is an error."""
    ingredients: dict[str, Drug] = {}
    sources: list[tuple[str, DrugKind]] = list(RLS_INGREDIENT_VALUE_SETS)
    prefix = value_set_url(AGGRAVATING_PREFIX)
    for url in sorted(terminology.value_sets):
        value_set_id = url.removeprefix(value_set_url(""))
        if url.startswith(prefix) and value_set_id != AGGRAVATING_COMPOSITE:
            sources.append((value_set_id, "aggravating"))
    for value_set_id, kind in sources:
        title = terminology.value_set_titles.get(value_set_url(value_set_id), value_set_id)
        for system, code, display in _value_set_concepts(value_set_id):
            if system == RXNORM:
                ingredients[code] = Drug(display.lower(), kind, title, code)
    clinical: dict[str, tuple[Drug, ...]] = {}
    for value_set_id, kind in RLS_CLINICAL_DRUG_VALUE_SETS:
        candidates = [drug for drug in ingredients.values() if drug.kind == kind]
        for system, code, display in _value_set_concepts(value_set_id):
            if system != RXNORM:
                continue
            drugs = tuple(drug for drug in candidates if _word_pattern(drug.ingredient).search(display))
            if not drugs:
                raise ConfigurationError(
                    f"ValueSet {value_set_id}: clinical drug {code} ({display}) names none of its ingredients"
                )
            clinical[code] = drugs
    # Longer names first, so that a more specific name wins when two overlap.
    names = sorted(ingredients.values(), key=lambda drug: (-len(drug.ingredient), drug.ingredient))
    return DrugCatalog(
        by_ingredient_code=ingredients,
        by_clinical_drug_code=clinical,
        by_name=tuple((_word_pattern(drug.ingredient), drug) for drug in names),
    )


# --- draft orders --------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    """A FHIR array, or nothing when the element is missing or malformed."""
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return " ".join(value.split())[:MAX_NAME_CHARS] if isinstance(value, str) else ""


def _concept_parts(concept: Any) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], str]:
    if not isinstance(concept, Mapping):
        return (), (), ""
    displays = tuple(
        _text(coding.get("display"))
        for coding in _list(concept.get("coding"))
        if isinstance(coding, Mapping) and _text(coding.get("display"))
    )
    name = _text(concept.get("text")) or (displays[0] if displays else "")
    return codings_of(concept), displays, name


def _medication_concept(
    request: Mapping[str, Any], bundle_resources: Mapping[str, Mapping[str, Any]]
) -> tuple[Any, str]:
    """The medication's CodeableConcept (inline, contained, or in the Bundle) and a fallback display."""
    concept = request.get("medicationCodeableConcept")
    if concept is not None:
        return concept, ""
    reference = request.get("medicationReference")
    if not isinstance(reference, Mapping):
        return None, ""
    display = _text(reference.get("display"))
    target = reference.get("reference")
    medication: Any = None
    if isinstance(target, str) and target.startswith("#"):
        medication = next(
            (
                c
                for c in _list(request.get("contained"))
                if isinstance(c, Mapping) and c.get("resourceType") == "Medication" and c.get("id") == target[1:]
            ),
            None,
        )
    elif isinstance(target, str):
        medication = bundle_resources.get(target)
    code = medication.get("code") if isinstance(medication, Mapping) else None
    return code, display


def draft_medications(
    draft_orders: DraftOrders, selections: Sequence[str] | None, link: PatientLink
) -> list[DraftMedication]:
    """The draft medication orders of the Bundle for this patient (only the selected ones when
    ``selections`` is given). A draft order whose subject is not the patient in context (D1) is skipped."""
    by_reference: dict[str, Mapping[str, Any]] = {}
    for entry in draft_orders.entry:
        resource = entry.resource
        if not isinstance(resource, Mapping):
            continue
        if entry.full_url:
            by_reference[entry.full_url] = resource
        if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
            by_reference[f"{resource['resourceType']}/{resource['id']}"] = resource
    wanted = set(selections) if selections is not None else None
    orders: list[DraftMedication] = []
    for position, entry in enumerate(draft_orders.entry):
        resource = entry.resource
        if not isinstance(resource, Mapping) or resource.get("resourceType") != MEDICATION_ORDER_TYPE:
            continue
        if not link.links(resource):
            log.info("cds: a draft order not linked to the patient in context was skipped")
            continue
        resource_id = resource.get("id")
        reference = (
            f"{MEDICATION_ORDER_TYPE}/{resource_id}"
            if isinstance(resource_id, str)
            else entry.full_url or f"draftOrders.entry[{position}]"
        )
        if wanted is not None and reference not in wanted and (entry.full_url or "") not in wanted:
            continue
        concept, fallback_display = _medication_concept(resource, by_reference)
        codings, displays, name = _concept_parts(concept)
        if fallback_display:
            displays = (*displays, fallback_display)
        reasons: list[tuple[str, str]] = []
        for reason in _list(resource.get("reasonCode")):
            reasons.extend(codings_of(reason))
        orders.append(
            DraftMedication(
                reference=reference,
                name=name or fallback_display or "the ordered medication",
                codings=codings,
                displays=displays,
                reason_codings=tuple(reasons),
            )
        )
    return orders
