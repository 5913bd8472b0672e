"""From FHIR Observation JSON to usable lab results, or a reason why a result is not used.

Pure: the as-of date is an argument. This applies the selection rules S1-S5 of docs/rules.md
section 1 to one Observation at a time (status, date window, value, unit, comparator); choosing the
latest per analyte happens in the engine. Only the fields the rules need are read: the FHIR read path
stays plain JSON (fhir.resources validation would cost ~15x the parse time).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

from rls_screen.codesets import LOINC, UCUM, Coding, Terminology, value_set_url
from rls_screen.model import LabResult, NotEvaluable, lab_result
from rls_screen.quantities import Bound, Comparator, bound, format_number
from rls_screen.ruleset import Selection
from rls_screen.units import UNIT_READ_FROM_TEXT, Converted, UnitProblem, UnitTable

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


_PARTIAL_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
"""A FHIR date with year or year-month precision only (D4: too imprecise for selection)."""


@dataclass(frozen=True, slots=True)
class EffectiveDate:
    """D4/D27: the date a result is selected by, or why it has none (``moment`` None, ``problem`` set)."""

    moment: datetime | None
    timed: bool = True
    """False for a date-only value (``2026-03-05``): it ties with any result of that day (D27)."""
    problem: str | None = None
    """``date-too-imprecise`` or ``no-effective-date`` when ``moment`` is None."""
    detail: str | None = None


def _stated_effective(observation: Mapping[str, Any]) -> Any:
    """D4: effectiveDateTime, else effectivePeriod.end, else effectivePeriod.start (the first present), else None."""
    candidate = observation.get("effectiveDateTime")
    if candidate is not None:
        return candidate
    period = observation.get("effectivePeriod")
    if type(period) is dict or isinstance(period, Mapping):
        for key in ("end", "start"):
            candidate = period.get(key)
            if candidate is not None:
                return candidate
    return None


def _precision_word(text: str) -> str:
    return "year only" if len(text) == 4 else "year-month only"


def effective_date_of(observation: Mapping[str, Any]) -> EffectiveDate:
    """D4 and D27: the stated effective date; a partial one falls back to a full ``issued``; else ``issued``.

    A year or year-month (from the effective date, or from ``issued`` when nothing else is given) is
    ``date-too-imprecise``; no date, or one that is not a date, is ``no-effective-date``.
    """
    stated = _stated_effective(observation)
    issued = observation.get("issued")
    if stated is not None:
        moment = parse_fhir_datetime(stated)
        if moment is not None:
            return EffectiveDate(moment, timed=len(stated) > 10)
        if not (isinstance(stated, str) and _PARTIAL_DATE.match(stated)):
            return EffectiveDate(None, problem="no-effective-date", detail="effective date is not a readable date")
        fallback = parse_fhir_datetime(issued)
        if fallback is not None:  # D27: a partial effective date falls back to a full issued
            return EffectiveDate(fallback, timed=len(str(issued)) > 10)
        return EffectiveDate(
            None, problem="date-too-imprecise", detail=f"date too imprecise: {stated} ({_precision_word(stated)})"
        )
    if issued is None:
        return EffectiveDate(None, problem="no-effective-date", detail="no effective date or issued time")
    moment = parse_fhir_datetime(issued)
    if moment is not None:
        return EffectiveDate(moment, timed=len(issued) > 10)
    if isinstance(issued, str) and _PARTIAL_DATE.match(issued):
        return EffectiveDate(
            None, problem="date-too-imprecise", detail=f"date too imprecise: {issued} ({_precision_word(issued)})"
        )
    return EffectiveDate(None, problem="no-effective-date", detail="issued time is not a readable date")


def effective_of(observation: Mapping[str, Any]) -> datetime | None:
    """D4: the moment a result is selected and windowed by, or None (no date, or only an imprecise one)."""
    return effective_date_of(observation).moment


def issued_of(observation: Mapping[str, Any]) -> datetime | None:
    """``Observation.issued`` when it is a full date or instant (D3: it breaks same-time ties)."""
    issued = observation.get("issued")
    return None if issued is None else parse_fhir_datetime(issued)


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
    effective: EffectiveDate,
    selection: Selection,
    as_of: date,
) -> tuple[datetime, date] | NotEvaluable:
    """S1 (status), D4 (the date) and S2 (the window), shared by both classify paths: the moment and day, or why not."""
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


_EFFECTIVE_DATES: dict[str, EffectiveDate] = {}
"""effectiveDateTime text -> its parsed date: one draw dates several Observations with the same string."""


def _effective_date_from_text(text: str) -> EffectiveDate:
    moment = parse_fhir_datetime(text)
    entry = EffectiveDate(moment, timed=len(text) > 10)
    if len(_EFFECTIVE_DATES) >= _PARSED_DATETIMES_MAX:
        _EFFECTIVE_DATES.clear()
    _EFFECTIVE_DATES[text] = entry
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
    effective = (_EFFECTIVE_DATES.get(text) or _effective_date_from_text(text)) if type(text) is str else None
    if effective is None or effective.moment is None:  # no dateTime, or a partial one: D4 decides from the rest
        effective = effective_date_of(observation)
    checked = _usable_moment(reference, analyte, status, effective, selection, as_of)
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
    unit_note = ""
    if fast is not None:  # the unit table's common case (``UnitTable.to_canonical`` gives the same)
        multiply, factor, canonical_unit = fast
        canonical_value = number * factor if multiply else number / factor
        source_unit = unit_code
    else:
        converted = units.to_canonical(analyte, number, quantity)
        if isinstance(converted, UnitProblem):
            return _problem(reference, "unit-not-understood", converted.detail, analyte, when)
        canonical_value, canonical_unit, source_unit = converted.value, converted.unit, converted.source_unit
        unit_note = _unit_note(converted)
    unit_text = quantity.get("unit")
    written_unit = unit_text if isinstance(unit_text, str) else source_unit
    return lab_result(
        reference,
        version_id,
        analyte,
        loinc,
        bound(canonical_value, comparator),
        canonical_unit,
        f"{comparator or ''}{format_number(number)} {written_unit}{unit_note}",
        moment,
        when,
        (),
        _reference_range_text(observation, str(unit_text or source_unit)) if "referenceRange" in observation else None,
        interpretation,
        status in selection.superseding_statuses,
        issued_of(observation) if "issued" in observation else None,
        effective.timed,
        None,
        bound(number, comparator),
        source_unit,
    )


def _unit_note(converted: Converted) -> str:
    """D6: a unit taken from ``Quantity.unit`` text (an exact UCUM code of the analyte's table) says so."""
    return f" ({UNIT_READ_FROM_TEXT})" if converted.via == "unit-text" else ""


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
    """``classify_one`` for the Observation and, D5, for each of its components coded as one of our analytes.

    A component is a result of its own with the parent's status, date, subject and id: its ``reference`` is
    the parent's and its ``component`` the component code (a problem's detail names that code). When some
    component is one of our analytes, an Observation whose own code is not (a panel) is not reported as
    ``unknown-code``.
    """
    outcome = classify_one(observation, reference, terminology, units, selection, as_of)
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
    outcome = _classify_general(merged, reference, terminology, units, selection, as_of)
    if isinstance(outcome, LabResult):
        return replace(outcome, component=code)
    return replace(outcome, detail=f"component {code}: {outcome.detail}")


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
    effective = effective_date_of(observation)
    checked = _usable_moment(reference, analyte, status, effective, selection, as_of)
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
            _reference_range_text(observation, str(unit_text or converted.source_unit))
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
