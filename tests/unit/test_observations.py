"""One Observation at a time: ``rls_screen.observations`` (selection rules S1-S5 of docs/rules.md).

``classify`` is called directly here, so each case shows the LabResult or the NotEvaluable a single
resource becomes; choosing the latest result per analyte is the engine's job (test_engine_selection).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from engine_helpers import AS_OF, FERRITIN, HEMOGLOBIN, PREGNANCY_STATUS, SNOMED, day, knowledge, obs, pregnancy_status

from rls_screen.observations import Classified, classify, codings_of, effective_of, ordering_key, parse_fhir_datetime
from rls_screen.quantities import Bound

pytestmark = pytest.mark.unit


def run(observation: dict[str, Any], as_of: date = AS_OF) -> Classified:
    k = knowledge()
    return classify(observation, terminology=k.terminology, units=k.units, selection=k.ruleset.selection, as_of=as_of)


# --- dates --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-05", datetime(2026, 3, 5, 0, 0)),
        ("2026-03-05T08:30:00", datetime(2026, 3, 5, 8, 30)),
        ("2026-03-05T08:30:00Z", datetime(2026, 3, 5, 8, 30, tzinfo=UTC)),
        ("2026-03-05T08:30:00+02:00", datetime(2026, 3, 5, 8, 30, tzinfo=timezone(timedelta(hours=2)))),
        ("2026-03-05T08:30:00.123-05:00", datetime(2026, 3, 5, 8, 30, 0, 123000, timezone(timedelta(hours=-5)))),
        ("2026", None),  # FHIR allows year precision: too vague to place in the window
        ("2026-03", None),
        ("2026-02-30", None),
        ("not a date", None),
        ("", None),
        (None, None),
        (20260305, None),
        (["2026-03-05"], None),
    ],
)
def test_parse_fhir_datetime(text: object, expected: datetime | None) -> None:
    assert parse_fhir_datetime(text) == expected


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"effectiveDateTime": "2026-03-01"}, date(2026, 3, 1)),
        ({"effectivePeriod": {"start": "2026-01-01", "end": "2026-03-02"}}, date(2026, 3, 2)),
        ({"issued": "2026-03-03T10:00:00Z"}, date(2026, 3, 3)),
        ({"effectiveDateTime": "2026-03-01", "issued": "2026-03-03T10:00:00Z"}, date(2026, 3, 1)),
        ({"effectivePeriod": {"end": "2026-03-02"}, "issued": "2026-03-03T10:00:00Z"}, date(2026, 3, 2)),
        ({"effectivePeriod": {"start": "2026-01-01"}, "issued": "2026-03-03T10:00:00Z"}, date(2026, 1, 1)),  # D4
        ({"effectivePeriod": "2026-03-02", "issued": "2026-03-03T10:00:00Z"}, date(2026, 3, 3)),
        ({}, None),
    ],
)
def test_effective_is_datetime_else_period_end_else_start_else_issued(resource: dict, expected: date | None) -> None:
    moment = effective_of(resource)
    assert (moment.date() if moment else None) == expected


def test_ordering_key_compares_across_offsets() -> None:
    early = parse_fhir_datetime("2026-03-05T08:00:00+02:00")
    late = parse_fhir_datetime("2026-03-05T07:30:00Z")
    naive = parse_fhir_datetime("2026-03-05T07:00:00")
    assert early is not None
    assert late is not None
    assert naive is not None
    assert ordering_key(early) < ordering_key(naive) < ordering_key(late)


# --- codings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concept", "expected"),
    [
        ({"coding": [{"system": "s", "code": "c"}]}, (("s", "c"),)),
        ({"coding": [{"system": "s", "code": "c"}, {"system": "t", "code": "d"}]}, (("s", "c"), ("t", "d"))),
        ({"coding": [{"code": "c"}]}, ()),  # no system: match on code never on guesswork
        ({"coding": [{"system": "s", "code": 5}]}, ()),
        ({"coding": [{"system": "s", "display": "Ferritin"}]}, ()),  # display text never matches
        ({"coding": ["s|c", None, 7]}, ()),
        ({"coding": []}, ()),
        ({"text": "Ferritin"}, ()),
        ({}, ()),
        (None, ()),
        ("Ferritin", ()),
        ([{"system": "s", "code": "c"}], ()),
    ],
)
def test_codings_of_skips_malformed_entries(concept: object, expected: tuple) -> None:
    assert codings_of(concept) == expected


# --- classify -----------------------------------------------------------------------------------------


def test_classify_usable_result() -> None:
    outcome = run(obs(FERRITIN, 100, "pmol/L", id="f1", days_ago=7))
    assert outcome.problem is None
    result = outcome.result
    assert result is not None
    assert result.reference == "Observation/f1"
    assert result.analyte == "ferritin"
    assert result.loinc == FERRITIN
    assert result.unit == "ug/L"
    assert result.value == Bound(pytest.approx(100 / 2.247), None)  # type: ignore[arg-type]
    assert result.effective_date == day(7)
    assert result.reported == "100 pmol/L"


def test_classify_keeps_the_comparator() -> None:
    result = run(obs(FERRITIN, 5, "ug/L", comparator="<")).result
    assert result is not None
    assert result.value == Bound(5.0, "<")
    assert result.reported.startswith("<5")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "entered-in-error"}, "entered-in-error"),
        ({"status": "cancelled"}, "entered-in-error"),
        ({"status": "preliminary"}, "pending"),
        ({"status": "registered"}, "pending"),
        ({"status": "unknown"}, "pending"),
        ({"effectiveDateTime": day(366).isoformat()}, "stale"),
        ({"effectiveDateTime": day(-1).isoformat()}, "after-as-of"),
        ({"effectiveDateTime": "2026"}, "date-too-imprecise"),  # D4
    ],
)
def test_classify_problem(changes: dict[str, Any], reason: str) -> None:
    resource = obs(FERRITIN, 10, "ug/L")
    resource.update(changes)
    outcome = run(resource)
    assert outcome.result is None
    assert outcome.problem is not None
    assert outcome.problem.reason == reason
    assert outcome.problem.analyte == "ferritin"


@pytest.mark.parametrize(("days_ago", "usable"), [(0, True), (365, True), (366, False), (-1, False)])
def test_classify_window_boundaries(days_ago: int, usable: bool) -> None:
    assert (run(obs(FERRITIN, 10, "ug/L", days_ago=days_ago)).result is not None) is usable


def test_window_follows_the_as_of_date() -> None:
    resource = obs(FERRITIN, 10, "ug/L", days_ago=0, as_of=date(2020, 2, 29))
    assert run(resource, as_of=date(2020, 2, 29)).result is not None
    assert run(resource, as_of=date(2021, 2, 28)).result is not None  # 365 days later
    assert run(resource, as_of=date(2021, 3, 1)).result is None  # 366 days later


def test_classify_pregnancy_status_is_coded() -> None:
    result = run(pregnancy_status(True)).result
    assert result is not None
    assert result.analyte == "pregnancy-status"
    assert result.loinc == PREGNANCY_STATUS
    assert result.value is None
    assert (SNOMED, "77386006") in result.value_codings


def test_classify_pregnancy_status_without_value_is_no_value() -> None:
    resource = pregnancy_status(True)
    del resource["valueCodeableConcept"]
    problem = run(resource).problem
    assert problem is not None
    assert problem.reason == "no-value"


def test_classify_reads_lab_reference_range_and_interpretation() -> None:
    resource = obs(
        HEMOGLOBIN,
        11.0,
        "g/dL",
        referenceRange=[{"low": {"value": 12.0}, "high": {"value": 15.5}}],
        interpretation=[{"text": "Low"}],
    )
    result = run(resource).result
    assert result is not None
    assert result.value == Bound(110.0)
    assert result.lab_reference_range == "12.0-15.5 g/dL"
    assert result.lab_interpretation == "Low"


def test_classify_reference_range_text_wins() -> None:
    resource = obs(HEMOGLOBIN, 110, "g/L", referenceRange=[{"text": "120-155 g/L", "low": {"value": 1}}])
    result = run(resource).result
    assert result is not None
    assert result.lab_reference_range == "120-155 g/L"


def test_classify_reads_version_id() -> None:
    resource = obs(FERRITIN, 10, "ug/L", meta={"versionId": 3})
    result = run(resource).result
    assert result is not None
    assert result.version_id == "3"
