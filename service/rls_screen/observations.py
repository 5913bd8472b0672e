"""From FHIR Observation JSON to usable lab results, or a reason why a result is not used: the one classifier.

Pure: the as-of date is an argument. This applies the selection rules S1-S5 of docs/rules.md section 1 to
one Observation at a time (code, status, date window, value, unit, comparator) and, D5, to each of its
components coded as one of our analytes; choosing the latest per analyte happens in the engine. Every path
(REST, CDS prefetch, NDJSON, Bulk) hands the engine its Observations as the JSON mappings they arrived as,
and every path is decided here, by the same code. Only the fields the rules read are looked at (the
field readers are in ``observation_fields``); analytes, codes and units come from the terminology and the
unit table, never from this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from rls_screen.codesets import Terminology, value_set_url
from rls_screen.model import LabResult, NotEvaluable
from rls_screen.observation_fields import (
    EffectiveDate,
    absent_reason,
    effective_date_of,
    interpretation_text,
    issued_of,
    reference_range_text,
)

# re-exported: the engine, the contract and the CDS layer read these field readers from here
from rls_screen.observation_fields import codings_of as codings_of
from rls_screen.observation_fields import effective_of as effective_of
from rls_screen.observation_fields import ordering_key as ordering_key
from rls_screen.observation_fields import parse_fhir_datetime as parse_fhir_datetime
from rls_screen.quantities import Bound, Comparator, format_number
from rls_screen.ruleset import Selection
from rls_screen.units import UNIT_READ_FROM_TEXT, Converted, UnitProblem, UnitTable

CODED_ANALYTES = frozenset({"pregnancy-status"})
_COMPARATOR_BY_TEXT: dict[str, Comparator] = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NUMBER_TYPES = (int, float)
_UIBC = value_set_url("uibc")
_EGFR_EXCLUDED = value_set_url("egfr-excluded")


@dataclass(frozen=True, slots=True)
class Classified:
    """The outcome for one Observation: a usable result, or why not (never both)."""

    result: LabResult | None
    problem: NotEvaluable | None


def classify(
    observation: Mapping[str, Any],
    *,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> Classified:
    """Apply S1-S5 to one Observation (its own code and value; ``classify_all`` adds its components)."""
    reference = f"Observation/{observation.get('id', '?')}"
    outcome = _classify(observation, reference, terminology, units, selection, as_of)
    if isinstance(outcome, LabResult):
        return Classified(outcome, None)
    return Classified(None, outcome)


def _problem(
    reference: str, reason: str, detail: str, analyte: str | None = None, when: date | None = None
) -> NotEvaluable:
    return NotEvaluable(reason, detail, analyte, reference, when)


def _usable_moment(
    reference: str,
    analyte: str,
    status: Any,
    effective: EffectiveDate,
    selection: Selection,
    as_of: date,
) -> tuple[datetime, date] | NotEvaluable:
    """S1 (status), D4 (the date) and S2 (the window), the moment and day, or why not."""
    moment = effective.moment
    when = moment.date() if moment is not None else None
    if status in selection.ignored_statuses:
        return _problem(reference, "entered-in-error", f"status {status}: ignored", analyte, when)
    if status in selection.pending_statuses:
        return _problem(reference, "pending", f"status {status}: result pending, not used", analyte, when)
    if status not in selection.usable_statuses:
        return _problem(reference, "pending", f"status '{status}' is not a final result: not used", analyte, when)
    if moment is None or when is None:
        return _problem(reference, effective.problem or "no-effective-date", effective.detail or "no date", analyte)
    age_days = (as_of - when).days
    if age_days < 0:
        return _problem(reference, "after-as-of", f"dated after the as-of date {as_of.isoformat()}", analyte, when)
    window_days = selection.window_days
    if age_days > window_days:
        return _problem(reference, "stale", f"{age_days} days old (window {window_days} days)", analyte, when)
    return moment, when


_PARENT_FIELDS = ("id", "status", "effectiveDateTime", "effectivePeriod", "issued", "subject", "meta")
"""D5: what a component takes from its parent Observation (status, date, subject and id)."""
_COMPONENT_FIELDS = ("code", "valueQuantity", "valueInteger", "valueCodeableConcept", "valueString", "dataAbsentReason")
_COMPONENT_EXTRAS = ("referenceRange", "interpretation")


def classify_all(
    observation: Mapping[str, Any],
    reference: str,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> list[LabResult | NotEvaluable]:
    """``classify`` for the Observation and, D5, for each of its components coded as one of our analytes.

    A component is a result of its own with the parent's status, date, subject and id: its ``reference`` is
    the parent's and its ``component`` the component code (a problem's detail names that code). When some
    component is one of our analytes, an Observation whose own code is not (a panel) is not reported as
    ``unknown-code``.
    """
    outcome = _classify(observation, reference, terminology, units, selection, as_of)
    components = observation.get("component")
    if type(components) is not list or not components:
        return [outcome]
    parts: list[LabResult | NotEvaluable] = []
    for component in components:
        if type(component) is not dict and not isinstance(component, Mapping):
            continue
        codes = codings_of(component.get("code"))
        if terminology.analyte_of(codes) is None:
            continue  # a component the module does not screen (e.g. a panel's other members)
        code = next(coding[1] for coding in codes if terminology.analyte_of((coding,)) is not None)
        parts.append(_classify_component(observation, component, code, reference, terminology, units, selection, as_of))
    if not parts:
        return [outcome]
    if isinstance(outcome, NotEvaluable) and outcome.reason == "unknown-code":
        return parts
    return [outcome, *parts]


def _classify_component(
    observation: Mapping[str, Any],
    component: Mapping[str, Any],
    code: str,
    reference: str,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> LabResult | NotEvaluable:
    merged: dict[str, Any] = {name: observation[name] for name in _PARENT_FIELDS if name in observation}
    merged.update((name, component[name]) for name in _COMPONENT_FIELDS if name in component)
    merged.update((name, component[name]) for name in _COMPONENT_EXTRAS if name in component)
    outcome = _classify(merged, reference, terminology, units, selection, as_of)
    if isinstance(outcome, LabResult):
        return replace(outcome, component=code)
    return replace(outcome, detail=f"component {code}: {outcome.detail}")


def _classify(
    observation: Mapping[str, Any],
    reference: str,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> LabResult | NotEvaluable:
    """S1-S5 for one Observation, whatever its shape: the usable result, or why not."""
    codes = codings_of(observation.get("code"))
    if not codes:
        return _problem(reference, "unknown-code", "Observation has no coded test (code.coding)")
    matched = terminology.analyte_of(codes)
    if matched is None:
        if terminology.contains(_UIBC, codes):
            return _problem(reference, "unknown-code", "UIBC is not TIBC: not used for transferrin saturation")
        if terminology.contains(_EGFR_EXCLUDED, codes):
            return _problem(reference, "unknown-code", "not an eGFR (a panel or a Cockcroft-Gault clearance): not used")
        shown = ", ".join(f"{code}" for _, code in codes[:3])
        return _problem(reference, "unknown-code", f"test code {shown} is not one this module screens")
    analyte, loinc = matched

    status = observation.get("status")
    effective = effective_date_of(observation)
    checked = _usable_moment(reference, analyte, status, effective, selection, as_of)
    if isinstance(checked, NotEvaluable):
        return checked
    moment, when = checked

    meta = observation.get("meta")
    version = meta.get("versionId") if type(meta) is dict or isinstance(meta, Mapping) else None
    version_id = str(version) if version is not None else None
    interpretation = interpretation_text(observation) if "interpretation" in observation else None

    if analyte in CODED_ANALYTES:
        value_codes = codings_of(observation.get("valueCodeableConcept"))
        if not value_codes:
            return _problem(reference, "no-value", "no coded value", analyte, when)
        return LabResult(
            reference=reference,
            version_id=version_id,
            analyte=analyte,
            loinc=loinc,
            value=None,
            unit="",
            reported=value_codes[0][1],
            effective=moment,
            effective_date=when,
            value_codings=value_codes,
            lab_interpretation=interpretation,
            correction=status in selection.superseding_statuses,
            issued=issued_of(observation),
            timed=effective.timed,
        )

    quantity = observation.get("valueQuantity")
    integer = observation.get("valueInteger")
    if quantity is None and type(integer) is int:
        quantity = {"value": integer}  # W13: a survey score; the unit table decides whether no unit is usable
    if type(quantity) is not dict and not isinstance(quantity, Mapping):
        if "dataAbsentReason" in observation:
            return _problem(
                reference,
                "no-value",
                f"no value (data absent reason: {absent_reason(observation)})",
                analyte,
                when,
            )
        if "valueString" in observation:
            return _problem(reference, "no-value", "value is text, not a number: not used", analyte, when)
        return _problem(reference, "no-value", "no numeric value (valueQuantity)", analyte, when)
    raw_value = quantity.get("value")
    if isinstance(raw_value, bool) or not isinstance(raw_value, _NUMBER_TYPES) or not math.isfinite(raw_value):
        return _problem(reference, "no-value", "value is not a number", analyte, when)
    if raw_value < 0:
        return _problem(reference, "no-value", "negative value: not a plausible result", analyte, when)
    comparator_raw = quantity.get("comparator")
    comparator = _COMPARATOR_BY_TEXT.get(comparator_raw) if isinstance(comparator_raw, str) else None
    if comparator_raw is not None and comparator is None:
        return _problem(reference, "comparator-indeterminate", "comparator not understood", analyte, when)

    number = float(raw_value)
    converted = units.to_canonical(analyte, number, quantity)
    if isinstance(converted, UnitProblem):
        return _problem(reference, "unit-not-understood", converted.detail, analyte, when)
    unit_text = quantity.get("unit")
    written_unit = unit_text if isinstance(unit_text, str) else converted.source_unit
    reported = f"{comparator or ''}{format_number(number)} {written_unit}{_unit_note(converted)}"
    return LabResult(
        reference=reference,
        version_id=version_id,
        analyte=analyte,
        loinc=loinc,
        value=Bound(converted.value, comparator),
        unit=converted.unit,
        reported=reported,
        effective=moment,
        effective_date=when,
        lab_reference_range=(
            reference_range_text(observation, str(unit_text or converted.source_unit))
            if "referenceRange" in observation
            else None
        ),
        lab_interpretation=interpretation,
        correction=status in selection.superseding_statuses,
        issued=issued_of(observation),
        timed=effective.timed,
        source_value=Bound(number, comparator),
        source_unit=converted.source_unit,
    )


def _unit_note(converted: Converted) -> str:
    """D6: a unit taken from ``Quantity.unit`` text (an exact UCUM code of the analyte's table) says so."""
    return f" ({UNIT_READ_FROM_TEXT})" if converted.via == "unit-text" else ""
