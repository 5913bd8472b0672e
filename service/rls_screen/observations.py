"""From FHIR Observation JSON to usable lab results, or a reason why a result is not used.

Pure: the as-of date is an argument. This applies the selection rules S1-S5 of docs/rules.md
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

from rls_screen.codesets import LOINC, UCUM, Coding, Terminology, value_set_url
from rls_screen.model import LabResult, NotEvaluable, lab_result
from rls_screen.quantities import Bound, Comparator, bound, format_number
from rls_screen.ruleset import Selection
from rls_screen.units import UnitProblem, UnitTable

CODED_ANALYTES = frozenset({"pregnancy-status"})
_COMPARATOR_BY_TEXT: dict[str, Comparator] = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NUMBER_TYPES = (int, float)


@dataclass(frozen=True, slots=True)
class Classified:
    """The outcome for one Observation: a usable result, or why not (never both)."""

    result: LabResult | None
    problem: NotEvaluable | None


def codings_of(concept: Any) -> tuple[Coding, ...]:
    """(system, code) pairs of a CodeableConcept, skipping malformed entries."""
    # ``type(x) is dict`` first: a plain dict is the common case and the ABC check costs ~10x more.
    if type(concept) is not dict and not isinstance(concept, Mapping):
        return ()
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return ()
    out = []
    for coding in codings:
        if type(coding) is dict or isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                out.append((system, code))
    return tuple(out)


_PARSED_DATETIMES: dict[str, datetime | None] = {}
_PARSED_DATETIMES_MAX = 4096
"""Parsed timestamps by text: one blood draw dates several Observations with the same string."""


def parse_fhir_datetime(text: Any) -> datetime | None:
    """A FHIR date/dateTime/instant with at least day precision, else None (too vague to window)."""
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return _PARSED_DATETIMES[text]
    except KeyError:
        pass
    parsed = _parse_datetime_text(text)
    if len(_PARSED_DATETIMES) >= _PARSED_DATETIMES_MAX:
        _PARSED_DATETIMES.clear()
    _PARSED_DATETIMES[text] = parsed
    return parsed


def _parse_datetime_text(text: str) -> datetime | None:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0))
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def effective_of(observation: Mapping[str, Any]) -> datetime | None:
    """S2: effectiveDateTime, else effectivePeriod.end, else issued."""
    candidate = observation.get("effectiveDateTime")
    if candidate is not None:
        return parse_fhir_datetime(candidate)
    period = observation.get("effectivePeriod")
    if type(period) is dict or isinstance(period, Mapping):
        candidate = period.get("end")
        if candidate is not None:
            return parse_fhir_datetime(candidate)
    candidate = observation.get("issued")
    return None if candidate is None else parse_fhir_datetime(candidate)


def ordering_key(moment: datetime) -> datetime:
    """Comparable instants: offset-aware as UTC; a local time without offset is read as UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference_of(observation: Mapping[str, Any]) -> str:
    return f"Observation/{observation.get('id', '?')}"


def _reference_range_text(observation: Mapping[str, Any], unit: str) -> str | None:
    ranges = observation.get("referenceRange")
    if not isinstance(ranges, list) or not ranges:
        return None
    first = ranges[0]
    if type(first) is not dict and not isinstance(first, Mapping):
        return None
    if isinstance(first.get("text"), str):
        return str(first["text"])
    low, high = first.get("low"), first.get("high")
    low_value = low.get("value") if type(low) is dict or isinstance(low, Mapping) else None
    high_value = high.get("value") if type(high) is dict or isinstance(high, Mapping) else None
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
        if (type(concept) is dict or isinstance(concept, Mapping)) and isinstance(concept.get("text"), str):
            texts.append(concept["text"])
        else:
            codes = codings_of(concept)
            if codes:
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


def _problem(
    reference: str, reason: str, detail: str, analyte: str | None = None, when: date | None = None
) -> NotEvaluable:
    return NotEvaluable(reason, detail, analyte, reference, when)


def _usable_moment(
    reference: str,
    analyte: str,
    status: Any,
    moment: datetime | None,
    when: date | None,
    selection: Selection,
    as_of: date,
) -> tuple[datetime, date] | NotEvaluable:
    """S1 (status) and S2 (the window), shared by both classify paths: the result's moment and day, or why not."""
    if status in selection.ignored_statuses:
        return _problem(reference, "entered-in-error", f"status {status}: ignored", analyte, when)
    if status in selection.pending_statuses:
        return _problem(reference, "pending", f"status {status}: result pending, not used", analyte, when)
    if status not in selection.usable_statuses:
        return _problem(reference, "pending", f"status '{status}' is not a final result: not used", analyte, when)
    if moment is None or when is None:
        return _problem(reference, "no-effective-date", "no effective date with day precision", analyte)
    age_days = (as_of - when).days
    if age_days < 0:
        return _problem(reference, "after-as-of", f"dated after the as-of date {as_of.isoformat()}", analyte, when)
    window_days = selection.window_days
    if age_days > window_days:
        return _problem(reference, "stale", f"{age_days} days old (window {window_days} days)", analyte, when)
    return moment, when


_UIBC = value_set_url("uibc")
_EGFR_EXCLUDED = value_set_url("egfr-excluded")


def classify(
    observation: Mapping[str, Any],
    *,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> Classified:
    """Apply S1-S5 to one Observation."""
    reference = f"Observation/{observation.get('id', '?')}"
    outcome = classify_one(observation, reference, terminology, units, selection, as_of)
    if isinstance(outcome, LabResult):
        return Classified(outcome, None)
    return Classified(None, outcome)


_NOT_CACHED = (None, None)
_EFFECTIVE_DAYS: dict[str, tuple[datetime | None, date | None]] = {}
"""effectiveDateTime text -> (parsed, its date): one draw dates several Observations with the same string."""


def _effective_day(text: str) -> tuple[datetime | None, date | None]:
    moment = parse_fhir_datetime(text)
    entry = (moment, moment.date()) if moment is not None else _NOT_CACHED
    if len(_EFFECTIVE_DAYS) >= _PARSED_DATETIMES_MAX:
        _EFFECTIVE_DAYS.clear()
    _EFFECTIVE_DAYS[text] = entry
    return entry


def classify_one(
    observation: Mapping[str, Any],
    reference: str,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> LabResult | NotEvaluable:
    """``classify`` for the engine: the usable result or why not, for an Observation whose reference is known.

    The hot path of every evaluation (one call per Observation). It handles the common shape (plain dicts, a
    coding the module knows, a numeric ``valueQuantity``) with as few calls and objects as it can, and hands
    anything else to ``_classify_general``, which decides exactly as ``classify`` always has: both give the same
    result for the same Observation (``tests/unit/test_observations.py`` compares them).
    """
    concept = observation.get("code")
    if type(concept) is not dict:
        return _classify_general(observation, reference, terminology, units, selection, as_of)
    codings = concept.get("coding")
    if type(codings) is not list:
        return _classify_general(observation, reference, terminology, units, selection, as_of)
    analyte_by_coding = terminology.analyte_by_coding
    for coding in codings:
        if type(coding) is not dict:
            return _classify_general(observation, reference, terminology, units, selection, as_of)
        system, code = coding.get("system"), coding.get("code")
        if type(system) is not str or type(code) is not str:
            return _classify_general(observation, reference, terminology, units, selection, as_of)
        analyte = analyte_by_coding.get((system, code))
        if analyte is not None:
            loinc = code if system == LOINC else terminology.loinc_by_local_coding[(system, code)]
            break
    else:  # no coding, or none the module screens: the general path words the reason
        return _classify_general(observation, reference, terminology, units, selection, as_of)
    if analyte in CODED_ANALYTES:
        return _classify_general(observation, reference, terminology, units, selection, as_of)

    status = observation.get("status")
    text = observation.get("effectiveDateTime")
    if type(text) is str:
        moment, when = _EFFECTIVE_DAYS.get(text) or _effective_day(text)
    else:
        moment = effective_of(observation)
        when = moment.date() if moment else None
    checked = _usable_moment(reference, analyte, status, moment, when, selection, as_of)
    if isinstance(checked, NotEvaluable):
        return checked
    moment, when = checked

    quantity = observation.get("valueQuantity")
    if type(quantity) is not dict:
        return _classify_general(observation, reference, terminology, units, selection, as_of)
    raw_value: Any = quantity.get("value")
    value_type = type(raw_value)
    if (value_type is not float and value_type is not int) or not math.isfinite(raw_value) or raw_value < 0:
        return _classify_general(observation, reference, terminology, units, selection, as_of)
    comparator_raw = quantity.get("comparator")
    if comparator_raw is None:
        comparator: Comparator | None = None
    else:
        comparator = _COMPARATOR_BY_TEXT.get(comparator_raw) if isinstance(comparator_raw, str) else None
        if comparator is None:
            return _problem(reference, "comparator-indeterminate", "comparator not understood", analyte, when)

    meta = observation.get("meta")
    version = meta.get("versionId") if type(meta) is dict or isinstance(meta, Mapping) else None
    version_id = str(version) if version is not None else None
    interpretation = _interpretation_text(observation) if "interpretation" in observation else None

    number = float(raw_value)
    unit_code = quantity.get("code")
    fast = (
        units.ucum_fast.get((analyte, unit_code))
        if type(unit_code) is str and unit_code and quantity.get("system") == UCUM
        else None
    )
    if fast is not None:  # the unit table's common case (``UnitTable.to_canonical`` gives the same)
        multiply, factor, canonical_unit = fast
        canonical_value = number * factor if multiply else number / factor
        source_unit = unit_code
    else:
        converted = units.to_canonical(analyte, number, quantity)
        if isinstance(converted, UnitProblem):
            return _problem(reference, "unit-not-understood", converted.detail, analyte, when)
        canonical_value, canonical_unit, source_unit = converted.value, converted.unit, converted.source_unit
    unit_text = quantity.get("unit")
    written_unit = unit_text if isinstance(unit_text, str) else source_unit
    return lab_result(
        reference,
        version_id,
        analyte,
        loinc,
        bound(canonical_value, comparator),
        canonical_unit,
        f"{comparator or ''}{format_number(number)} {written_unit}",
        moment,
        when,
        (),
        _reference_range_text(observation, str(unit_text or source_unit)) if "referenceRange" in observation else None,
        interpretation,
        bound(number, comparator),
        source_unit,
    )


def _classify_general(
    observation: Mapping[str, Any],
    reference: str,
    terminology: Terminology,
    units: UnitTable,
    selection: Selection,
    as_of: date,
) -> LabResult | NotEvaluable:
    """S1-S5 for any Observation, however unusual its shape (``classify_one`` handles the common shape faster)."""

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
    moment = effective_of(observation)
    when = moment.date() if moment else None
    checked = _usable_moment(reference, analyte, status, moment, when, selection, as_of)
    if isinstance(checked, NotEvaluable):
        return checked
    moment, when = checked

    meta = observation.get("meta")
    version = meta.get("versionId") if type(meta) is dict or isinstance(meta, Mapping) else None
    version_id = str(version) if version is not None else None
    interpretation = _interpretation_text(observation) if "interpretation" in observation else None

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
        )

    quantity = observation.get("valueQuantity")
    if type(quantity) is not dict and not isinstance(quantity, Mapping):
        if "dataAbsentReason" in observation:
            return _problem(
                reference,
                "no-value",
                f"no value (data absent reason: {_absent_reason(observation)})",
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
    reported = f"{comparator or ''}{format_number(number)} {written_unit}"
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
            _reference_range_text(observation, str(unit_text or converted.source_unit))
            if "referenceRange" in observation
            else None
        ),
        lab_interpretation=interpretation,
        source_value=Bound(number, comparator),
        source_unit=converted.source_unit,
    )
