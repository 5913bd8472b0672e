"""What the fields of one FHIR Observation say, read leniently: codings, dates, reference range, interpretation.

Pure, and shared by every path (REST, CDS prefetch, NDJSON, Bulk) through ``observations.classify_all``:
each function takes the Observation as the JSON mapping it arrived as and returns ``None`` (or a reason)
for a field that is missing or malformed, never raising. D4 and D27 (docs/rules.md section 1) decide
which date a result is selected by; the parsed dates are cached by their text, because one blood draw
dates several Observations with the same string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from rls_screen.codesets import Coding


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


def has_coding_in(concept: Any, codings: frozenset[Coding]) -> bool:
    """Whether a CodeableConcept holds one of ``codings``: ``any(c in codings for c in codings_of(concept))``,
    without building the pairs (the data contract asks this of every resource a path delivers)."""
    if type(concept) is not dict and not isinstance(concept, Mapping):
        return False
    listed = concept.get("coding")
    if not isinstance(listed, list):
        return False
    for coding in listed:
        if type(coding) is dict or isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and (system, code) in codings:
                return True
    return False


_PARSED_DATETIMES: dict[str, datetime | None] = {}
_PARSED_DATETIMES_MAX = 4096
_UNSEEN = datetime(1, 1, 1)
"""The cache's "not seen yet" (compared by identity: no parsed text is this object)."""
"""Parsed timestamps by text: one blood draw dates several Observations with the same string."""


def parse_fhir_datetime(text: Any) -> datetime | None:
    """A FHIR date/dateTime/instant with at least day precision, else None (too vague to window)."""
    if not isinstance(text, str) or len(text) < 10:
        return None
    # ``get`` with a sentinel, not try/except KeyError: most texts are new (an ``issued`` instant is
    # usually unique), and raising KeyError on every miss cost more than the parse itself
    known = _PARSED_DATETIMES.get(text, _UNSEEN)
    if known is not _UNSEEN:
        return known
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


_EFFECTIVE_DATES: dict[str, EffectiveDate] = {}
"""A readable effective dateTime text -> its ``EffectiveDate`` (it depends on that text alone)."""


def _remember_effective(text: str, effective: EffectiveDate) -> EffectiveDate:
    if len(_EFFECTIVE_DATES) >= _PARSED_DATETIMES_MAX:
        _EFFECTIVE_DATES.clear()
    _EFFECTIVE_DATES[text] = effective
    return effective


def effective_date_of(observation: Mapping[str, Any]) -> EffectiveDate:
    """D4 and D27: the stated effective date; a partial one falls back to a full ``issued``; else ``issued``.

    A year or year-month (from the effective date, or from ``issued`` when nothing else is given) is
    ``date-too-imprecise``; no date, or one that is not a date, is ``no-effective-date``.
    """
    stated = observation.get("effectiveDateTime")
    if type(stated) is str:  # the common case: a full dateTime, decided by its text alone
        known = _EFFECTIVE_DATES.get(stated)
        if known is not None:
            return known
    else:
        stated = _stated_effective(observation)
    issued = observation.get("issued")
    if stated is not None:
        moment = parse_fhir_datetime(stated)
        if moment is not None and type(stated) is str:
            return _remember_effective(stated, EffectiveDate(moment, timed=len(stated) > 10))
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


def reference_range_text(observation: Mapping[str, Any], unit: str) -> str | None:
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
    # FHIR's low and high are inclusive; a range open at one end reads as a bound, not as "-5.0" or "3.5-"
    if low_value is None:
        return f"<= {high_value} {unit}".strip()
    if high_value is None:
        return f">= {low_value} {unit}".strip()
    return f"{low_value}-{high_value} {unit}".strip()


def interpretation_text(observation: Mapping[str, Any]) -> str | None:
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


def absent_reason(observation: Mapping[str, Any]) -> str:
    """The dataAbsentReason code (any coding, system or not), or 'given'."""
    absent = observation.get("dataAbsentReason")
    codings = absent.get("coding") if isinstance(absent, Mapping) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return "given"
