"""From FHIR Observation JSON to usable lab results, or a reason why a result is not used.

Pure: the as-of date is an argument. This applies the selection rules S1-S5 of CLINICAL_RULES
section 1 to one Observation at a time (status, date window, value, unit, comparator); choosing the
latest per analyte happens in the engine. Only the fields the rules need are read: the FHIR read path
stays plain JSON (fhir.resources validation would cost ~15x the parse time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from rls_screen.codesets import Coding, Terminology, value_set_url
from rls_screen.model import LabResult, NotEvaluable
from rls_screen.quantities import Bound, Comparator, format_number
from rls_screen.ruleset import Selection
from rls_screen.units import UnitProblem, UnitTable

CODED_ANALYTES = frozenset({"pregnancy-status"})
_COMPARATOR_BY_TEXT: dict[str, Comparator] = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True, slots=True)
class Classified:
    """The outcome for one Observation: a usable result, or why not (never both)."""

    result: LabResult | None
    problem: NotEvaluable | None


def codings_of(concept: Any) -> tuple[Coding, ...]:
    """(system, code) pairs of a CodeableConcept, skipping malformed entries."""
    if not isinstance(concept, Mapping):
        return ()
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return ()
    out = []
    for coding in codings:
        if isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                out.append((system, code))
    return tuple(out)


def parse_fhir_datetime(text: Any) -> datetime | None:
    """A FHIR date/dateTime/instant with at least day precision, else None (too vague to window)."""
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0))
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def effective_of(observation: Mapping[str, Any]) -> datetime | None:
    """S2: effectiveDateTime, else effectivePeriod.end, else issued."""
    period = observation.get("effectivePeriod")
    candidates = (
        observation.get("effectiveDateTime"),
        period.get("end") if isinstance(period, Mapping) else None,
        observation.get("issued"),
    )
    for candidate in candidates:
        if candidate is not None:
            return parse_fhir_datetime(candidate)
    return None


def ordering_key(moment: datetime) -> datetime:
    """Comparable instants: offset-aware as UTC; a local time without offset is read as UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference_of(observation: Mapping[str, Any]) -> str:
    return f"Observation/{observation.get('id', '?')}"


def _reference_range_text(observation: Mapping[str, Any], unit: str) -> str | None:
    ranges = observation.get("referenceRange")
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], Mapping):
        return None
    first = ranges[0]
    if isinstance(first.get("text"), str):
        return str(first["text"])
    low, high = first.get("low"), first.get("high")
    low_value = low.get("value") if isinstance(low, Mapping) else None
    high_value = high.get("value") if isinstance(high, Mapping) else None
    if low_value is None and high_value is None:
        return None
    low_text = "" if low_value is None else str(low_value)
    high_text = "" if high_value is None else str(high_value)
    return f"{low_text}-{high_text} {unit}".strip()


def _interpretation_text(observation: Mapping[str, Any]) -> str | None:
    interpretation = observation.get("interpretation")
    if not isinstance(interpretation, list):
        return None
    texts = []
    for concept in interpretation:
        codes = codings_of(concept)
        if isinstance(concept, Mapping) and isinstance(concept.get("text"), str):
            texts.append(concept["text"])
        elif codes:
            texts.append(codes[0][1])
    return ", ".join(texts) or None


def _absent_reason(observation: Mapping[str, Any]) -> str:
    """The dataAbsentReason code (any coding, system or not), or 'given'."""
    absent = observation.get("dataAbsentReason")
    codings = absent.get("coding") if isinstance(absent, Mapping) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return "given"


def classify(
    observation: Mapping[str, Any],
    *,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> Classified:
    """Apply S1-S5 to one Observation."""
    reference = reference_of(observation)

    def problem(reason: str, detail: str, analyte: str | None = None, when: date | None = None) -> Classified:
        return Classified(None, NotEvaluable(reason, detail, analyte, reference, when))

    codes = codings_of(observation.get("code"))
    if not codes:
        return problem("unknown-code", "Observation has no coded test (code.coding)")
    matched = terminology.analyte_of(codes)
    if matched is None and terminology.contains(value_set_url("uibc"), codes):
        return problem("unknown-code", "UIBC is not TIBC: not used for transferrin saturation")
    if matched is None and terminology.contains(value_set_url("egfr-excluded"), codes):
        return problem("unknown-code", "not an eGFR (a panel or a Cockcroft-Gault clearance): not used")
    if matched is None:
        shown = ", ".join(f"{code}" for _, code in codes[:3])
        return problem("unknown-code", f"test code {shown} is not one this module screens")
    analyte, loinc = matched

    status = observation.get("status")
    moment = effective_of(observation)
    when = moment.date() if moment else None
    if status in selection.ignored_statuses:
        return problem("entered-in-error", f"status {status}: ignored", analyte, when)
    if status in selection.pending_statuses:
        return problem("pending", f"status {status}: result pending, not used", analyte, when)
    if status not in selection.usable_statuses:
        return problem("pending", f"status '{status}' is not a final result: not used", analyte, when)

    if moment is None or when is None:
        return problem("no-effective-date", "no effective date with day precision", analyte)
    age_days = (as_of - when).days
    if age_days < 0:
        return problem("after-as-of", f"dated after the as-of date {as_of.isoformat()}", analyte, when)
    if age_days > selection.window_days:
        return problem("stale", f"{age_days} days old (window {selection.window_days} days)", analyte, when)

    version = observation.get("meta", {}).get("versionId") if isinstance(observation.get("meta"), Mapping) else None
    common: dict[str, Any] = {
        "reference": reference,
        "version_id": str(version) if version is not None else None,
        "analyte": analyte,
        "loinc": loinc,
        "effective": moment,
        "effective_date": when,
        "lab_interpretation": _interpretation_text(observation),
    }

    if analyte in CODED_ANALYTES:
        value_codes = codings_of(observation.get("valueCodeableConcept"))
        if not value_codes:
            return problem("no-value", "no coded value", analyte, when)
        return Classified(
            LabResult(value=None, unit="", reported=value_codes[0][1], value_codings=value_codes, **common),
            None,
        )

    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        if "dataAbsentReason" in observation:
            return problem("no-value", f"no value (data absent reason: {_absent_reason(observation)})", analyte, when)
        if "valueString" in observation:
            return problem("no-value", "value is text, not a number: not used", analyte, when)
        return problem("no-value", "no numeric value (valueQuantity)", analyte, when)
    raw_value = quantity.get("value")
    if isinstance(raw_value, bool) or not isinstance(raw_value, int | float) or not math.isfinite(raw_value):
        return problem("no-value", "value is not a number", analyte, when)
    if raw_value < 0:
        return problem("no-value", "negative value: not a plausible result", analyte, when)
    comparator_raw = quantity.get("comparator")
    comparator = _COMPARATOR_BY_TEXT.get(comparator_raw) if isinstance(comparator_raw, str) else None
    if comparator_raw is not None and comparator is None:
        return problem("comparator-indeterminate", "comparator not understood", analyte, when)

    converted = units.to_canonical(analyte, float(raw_value), quantity)
    if isinstance(converted, UnitProblem):
        return problem("unit-not-understood", converted.detail, analyte, when)
    written_unit = quantity.get("unit") if isinstance(quantity.get("unit"), str) else converted.source_unit
    reported = f"{comparator or ''}{format_number(float(raw_value))} {written_unit}"
    return Classified(
        LabResult(
            value=Bound(converted.value, comparator),
            unit=converted.unit,
            reported=reported,
            lab_reference_range=_reference_range_text(observation, str(quantity.get("unit") or converted.source_unit)),
            **common,
        ),
        None,
    )
