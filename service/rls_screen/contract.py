"""The one statement of the data a patient's screening needs, and every read derived from it.

Rule D2 (docs/rules.md section 10, "One patient-data contract"): every path reads the same resource
types, with the same codes and the same look-back window, so the same data gives the same Assessment
however it arrived. This module is that statement. From it, and only from it, come:

- the REST searches of ``screen`` and ``batch`` (``rest_searches``),
- the CDS Hooks prefetch templates and the service's own fallback searches (``prefetch_templates``,
  ``rest_searches`` again),
- the Bulk Data ``_type`` and ``_typeFilter`` (``bulk_types``, ``bulk_type_filters``),
- the resource types read from NDJSON files (``CONTRACT_TYPES``),
- and ``wanted``: the same filter applied in memory to whatever a path delivered (a whole Synthea
  Bundle, an unfiltered NDJSON export, a prefetch the EHR filled with more than it was asked), so a
  path that could not filter at the server gives exactly what a filtered search would have.

What the contract reads (codes from terminology/, the window from the rule set):

==================  =============================================================================
Patient             the patient itself (sex, birth date)
Observation         every analyte code (LOINC and site-mapped local codes) and the look-alike
                    codes the output explains (UIBC, non-eGFR clearances), as the Observation's
                    code or as a component's code (D5: a panel's component is a result of its own):
                    searched with ``combo-code``; dated on or after ``as_of - window_days``.
                    Matched on code, never on category: the AUDIT-C total score (75626-2, W13) is
                    a survey Observation (category survey or social-history) read as the labs are,
                    and no other survey Observation comes in by its category
Condition           ValueSets rls-condition, pregnancy-condition, dialysis
Procedure           ValueSet dialysis
MedicationRequest   status active, on-hold or draft (the engine decides which drugs matter)
==================  =============================================================================

The window on Observations is applied in memory, on every path, with the engine's own effective date
(D4: effectiveDateTime, else effectivePeriod.end, else .start, else issued). No search carries a
``date`` filter: a server's ``date`` parameter matches ``effective[x]`` only, so a result dated only by
``issued`` would be missed by a server search and used by every other path. An Observation with no
usable date at all is kept, so the engine can say why it is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from rls_screen.codesets import Coding, Terminology, value_set_url
from rls_screen.observation_fields import effective_date_of, has_coding_in
from rls_screen.ruleset import RuleSet

CONTRACT_TYPES = ("Patient", "Observation", "Condition", "Procedure", "MedicationRequest")
"""D2: the resource types every path reads, in the order the NDJSON files and Bulk export list them."""
CONDITION_VALUE_SETS = ("rls-condition", "pregnancy-condition", "dialysis")
PROCEDURE_VALUE_SETS = ("dialysis",)
EXPLAINED_VALUE_SETS = ("uibc", "egfr-excluded")
"""Codes the rules do not use but explain when present ("UIBC is not TIBC", "not an eGFR")."""
MEDICATION_REQUEST_STATUSES = ("active", "on-hold", "draft")
"""R4 MedicationRequest.status values that may mean the patient takes (or is about to take) the drug."""
PAGE_SIZE = "500"

PATIENT_KEY = "patient"
CONDITIONS_KEY = "conditions"
OBSERVATIONS_KEY = "observations"
PROCEDURES_KEY = "procedures"
MEDICATIONS_KEY = "medications"
CONTRACT_KEYS = (PATIENT_KEY, CONDITIONS_KEY, OBSERVATIONS_KEY, PROCEDURES_KEY, MEDICATIONS_KEY)
"""The CDS prefetch keys of the contract: the Patient, then one per search."""


def _token_list(codings: frozenset[Coding]) -> str:
    return ",".join(f"{system}|{code}" for system, code in sorted(codings))


@dataclass(frozen=True)
class Search:
    """One search of the contract, for one patient: the resource type and its filters."""

    key: str
    """The CDS prefetch key that holds its answer."""
    resource_type: str
    what: str
    """What it is, for messages ("the patient's lab Observations")."""
    filters: tuple[tuple[str, str], ...]
    """Search parameters other than the patient, the window and the page size."""
    dated: bool = False
    """Whether the contract's look-back window applies (in memory, ``wanted``; searches sort by date)."""


class DataContract:
    """The contract for one rule set and terminology (built once per ``Knowledge``)."""

    def __init__(self, ruleset: RuleSet, terminology: Terminology) -> None:
        self.window_days = ruleset.selection.window_days
        self._window = timedelta(days=self.window_days)
        explained = frozenset(c for name in EXPLAINED_VALUE_SETS for c in terminology.value_sets[value_set_url(name)])
        self.observation_codings: frozenset[Coding] = frozenset(terminology.analyte_by_coding) | explained
        self.condition_codings: frozenset[Coding] = frozenset(
            c for name in CONDITION_VALUE_SETS for c in terminology.value_sets[value_set_url(name)]
        )
        self.procedure_codings: frozenset[Coding] = frozenset(
            c for name in PROCEDURE_VALUE_SETS for c in terminology.value_sets[value_set_url(name)]
        )
        self.searches: tuple[Search, ...] = (
            Search(CONDITIONS_KEY, "Condition", "the patient's Conditions", (("code", self._codes("Condition")),)),
            Search(
                OBSERVATIONS_KEY,
                "Observation",
                "the patient's lab Observations",
                (("combo-code", self._codes("Observation")),),
                dated=True,
            ),
            Search(PROCEDURES_KEY, "Procedure", "the patient's Procedures", (("code", self._codes("Procedure")),)),
            Search(
                MEDICATIONS_KEY,
                "MedicationRequest",
                "the patient's medications",
                (("status", ",".join(MEDICATION_REQUEST_STATUSES)),),
            ),
        )
        self.search_by_key = {search.key: search for search in self.searches}

    def _codes(self, resource_type: str) -> str:
        codings = {
            "Observation": self.observation_codings,
            "Condition": self.condition_codings,
            "Procedure": self.procedure_codings,
        }[resource_type]
        return _token_list(codings)

    def window_start(self, as_of: date) -> date:
        """The first day of the look-back window (the window includes ``as_of - window_days``)."""
        return as_of - timedelta(days=self.window_days)

    # --- the reads derived from the contract -------------------------------------------------------

    def rest_params(self, search: Search, patient_id: str, as_of: date) -> dict[str, str]:
        """The search parameters of ``search`` for one patient (``subject=Patient/<id>``). ``as_of`` is
        kept for the window's sake: the window itself is applied in memory (``wanted``), see above."""
        return {"subject": f"Patient/{patient_id}", **dict(search.filters), "_count": PAGE_SIZE}

    def rest_query(self, search: Search, patient_id: str, as_of: date) -> str:
        """The relative URL of the search (a batch entry's request.url)."""
        return f"{search.resource_type}?{urlencode(self.rest_params(search, patient_id, as_of))}"

    def prefetch_templates(self, prefetch_page_size: str) -> dict[str, str]:
        """CDS Hooks 2.0 prefetch templates (R4 syntax; 2.0 has no relative dates, so no window here:
        ``wanted`` applies it to what the EHR sends)."""
        templates = {PATIENT_KEY: "Patient/{{context.patientId}}"}
        for search in self.searches:
            query = "&".join(f"{name}={value}" for name, value in search.filters)
            size = prefetch_page_size if search.dated else PAGE_SIZE
            sort = "&_sort=-date" if search.dated else ""
            templates[search.key] = (
                f"{search.resource_type}?patient={{{{context.patientId}}}}&{query}{sort}&_count={size}"
            )
        return templates

    def bulk_types(self) -> tuple[str, ...]:
        return CONTRACT_TYPES

    def bulk_type_filters(self, as_of: date) -> tuple[str, ...]:
        """Bulk Data ``_typeFilter`` values: each search's filters (and window) without the patient."""
        filters: list[str] = []
        for search in self.searches:
            params = dict(search.filters)
            filters.append(f"{search.resource_type}?{urlencode(params)}")
        return tuple(filters)

    # --- the same contract in memory ----------------------------------------------------------------

    def wanted(self, resource: Mapping[str, Any], as_of: date) -> bool:
        """Whether a resource of another type than Patient is inside the contract (type, code, status, window)."""
        if resource.get("resourceType") != "Observation":
            return self.in_scope(resource)
        if not (has_coding_in(resource.get("code"), self.observation_codings) or self._component_in(resource)):
            return False
        # the classifier's own D4 date (cached by its text: the classifier asks for it again next)
        effective = effective_date_of(resource).moment
        return effective is None or effective.date() >= as_of - self._window

    def in_scope(self, resource: Mapping[str, Any]) -> bool:
        """What a search of the contract returns: type, codes and statuses, without the window."""
        kind = resource.get("resourceType")
        if kind == "Observation":
            return has_coding_in(resource.get("code"), self.observation_codings) or self._component_in(resource)
        if kind == "Condition":
            return has_coding_in(resource.get("code"), self.condition_codings)
        if kind == "Procedure":
            return has_coding_in(resource.get("code"), self.procedure_codings)
        if kind == "MedicationRequest":
            return resource.get("status") in MEDICATION_REQUEST_STATUSES
        return False

    def _component_in(self, resource: Mapping[str, Any]) -> bool:
        components = resource.get("component")
        if not isinstance(components, list):
            return False
        return any(
            isinstance(c, Mapping) and has_coding_in(c.get("code"), self.observation_codings) for c in components
        )
