"""The engine's fast paths give exactly what the general code gives.

``observations.classify_one`` handles the common Observation shape itself and hands anything else to the
general code; ``model.lab_result`` and ``quantities.bound`` build the same frozen dataclasses without their
``__init__``; ``units.UnitTable.ucum_fast`` is ``to_canonical``'s common case as one lookup;
``patient_data.group_resources`` inlines ``subject_matches``. Each is compared here with the code it stands
in for, over a synthetic panel and over variants of its Observations with every field the rules read made odd.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
from engine_helpers import knowledge

from rls_screen.codesets import UCUM
from rls_screen.model import LabResult, lab_result
from rls_screen.observations import _classify_general, classify, classify_one
from rls_screen.quantities import Bound, _format_number, bound, format_number
from rls_screen.synth import generate_panel
from rls_screen.units import Converted

pytestmark = pytest.mark.unit
AS_OF = date(2026, 11, 25)


def _panel_observations() -> list[dict[str, Any]]:
    panel = generate_panel(60, seed=4, as_of=AS_OF, id_prefix="fast")
    return [r for record in panel.patients for r in record.resources if r.get("resourceType") == "Observation"]


def _set(path: tuple[str, ...], value: Any) -> Any:
    def change(observation: dict[str, Any]) -> None:
        target: Any = observation
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
            if not isinstance(target, dict):
                return
        target[path[-1]] = value

    return change


def _drop(key: str) -> Any:
    return lambda observation: observation.pop(key, None)


class _Str(str):
    pass


ODD_CHANGES = [
    _drop("code"),
    _set(("code",), "2276-4"),
    _set(("code", "coding"), ({"system": "http://loinc.org", "code": "2276-4"},)),
    _set(("code", "coding"), []),
    _set(("code", "coding"), ["2276-4", {"system": "http://loinc.org", "code": "2276-4"}]),
    _set(("code", "coding"), [{"code": "2276-4"}, {"system": "http://loinc.org", "code": "718-7"}]),
    _set(("code", "coding"), [{"system": "http://loinc.org", "code": _Str("2276-4")}]),
    _set(("code", "coding"), [{"system": "http://loinc.org", "code": "22753-8"}]),
    _set(("code", "coding"), [{"system": "http://loinc.org", "code": "0000-0"}]),
    _set(("code", "coding"), [{"system": "http://local.lab/codes", "code": "FERR"}]),
    _set(("status",), "preliminary"),
    _set(("status",), "entered-in-error"),
    _set(("status",), "amended"),
    _set(("status",), ["final"]),
    _drop("status"),
    _set(("effectiveDateTime",), "2026"),
    _set(("effectiveDateTime",), "2026-11-26"),
    _set(("effectiveDateTime",), "2019-01-01T00:00:00Z"),
    _set(("effectiveDateTime",), "2026-02-30"),
    _set(("effectiveDateTime",), 20261101),
    _set(("effectiveDateTime",), None),
    _drop("effectiveDateTime"),
    _set(("valueQuantity",), None),
    _set(("valueQuantity",), [1]),
    _drop("valueQuantity"),
    _set(("valueQuantity", "value"), "12"),
    _set(("valueQuantity", "value"), True),
    _set(("valueQuantity", "value"), float("nan")),
    _set(("valueQuantity", "value"), float("inf")),
    _set(("valueQuantity", "value"), -1),
    _set(("valueQuantity", "value"), 0),
    _set(("valueQuantity", "value"), 123456789012345678901234567890),
    _set(("valueQuantity", "value"), 12.3456789),
    _set(("valueQuantity", "comparator"), "<"),
    _set(("valueQuantity", "comparator"), ">="),
    _set(("valueQuantity", "comparator"), "~"),
    _set(("valueQuantity", "comparator"), 5),
    _set(("valueQuantity", "code"), "mmol/L"),
    _set(("valueQuantity", "code"), ""),
    _set(("valueQuantity", "code"), 7),
    _set(("valueQuantity", "system"), "http://example.org/units"),
    lambda observation: observation.update(valueString="high", valueQuantity=None),
    _set(("valueQuantity", "unit"), None),
    _set(("valueQuantity", "unit"), 5),
    _set(("meta",), {"versionId": 3}),
    _set(("meta",), "v1"),
    _set(("interpretation",), [{"text": "High"}, {"coding": [{"system": "s", "code": "H"}]}, "x"]),
    _set(("interpretation",), "H"),
    _set(("referenceRange",), [{"text": "15-150"}]),
    _set(("referenceRange",), [{"low": {"value": 15}}]),
    _set(("referenceRange",), [{"low": "15"}]),
    _set(("referenceRange",), []),
    _set(("dataAbsentReason",), {"coding": [{"code": "error"}]}),
]


def _variants(observations: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for n, observation in enumerate(observations):
        yield observation
        change = ODD_CHANGES[n % len(ODD_CHANGES)]
        odd = copy.deepcopy(observation)
        change(odd)
        yield odd
    for change in ODD_CHANGES:  # each change on a ferritin result too, whatever the panel holds
        odd = copy.deepcopy(next(o for o in observations if o["code"]["coding"][0]["code"] == "2276-4"))
        change(odd)
        yield odd


def test_classify_one_decides_as_the_general_code_does() -> None:
    k = knowledge()
    args = (k.terminology, k.units, k.ruleset.selection, AS_OF)
    compared = 0
    for observation in _variants(_panel_observations()):
        reference = f"Observation/{observation.get('id', '?')}"
        fast = classify_one(observation, reference, *args)
        general = _classify_general(observation, reference, *args)
        assert type(fast) is type(general)
        assert fast == general
        assert repr(fast) == repr(general)
        wrapped = classify(
            observation, terminology=k.terminology, units=k.units, selection=k.ruleset.selection, as_of=AS_OF
        )
        assert (wrapped.result or wrapped.problem) == general
        compared += 1
    assert compared > 1000


def test_the_fast_path_is_taken_for_a_plain_result() -> None:
    k = knowledge()
    observation = next(o for o in _panel_observations() if o.get("status") == "final" and "valueQuantity" in o)
    calls = []

    def spy(*args: Any) -> Any:
        calls.append(args)
        return _classify_general(*args)

    import rls_screen.observations as observations

    original = observations._classify_general
    observations._classify_general = spy  # type: ignore[assignment]
    try:
        classify_one(observation, "Observation/x", k.terminology, k.units, k.ruleset.selection, AS_OF)
    finally:
        observations._classify_general = original
    assert calls == []


def test_lab_result_builds_the_same_object_as_the_dataclass() -> None:
    fields = [f.name for f in dataclasses.fields(LabResult)]
    parameters = inspect.signature(lab_result).parameters
    assert list(parameters) == fields
    for f in dataclasses.fields(LabResult):
        default = parameters[f.name].default
        assert default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
    values = (
        "Observation/a",
        "2",
        "ferritin",
        "2276-4",
        Bound(12.0, "<"),
        "ug/L",
        "<12 ug/L",
        datetime(2026, 1, 2, 3, 4),
        date(2026, 1, 2),
        (("http://snomed.info/sct", "77386006"),),
        "15-150 ug/L",
        "L",
    )
    built, expected = lab_result(*values), LabResult(*values)
    assert type(built) is LabResult
    assert built == expected
    assert repr(built) == repr(expected)
    assert hash(built) == hash(expected)
    assert lab_result(*values[:9]) == LabResult(*values[:9])
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.unit = "x"  # type: ignore[misc]


@pytest.mark.parametrize("comparator", [None, "<", "<=", ">", ">="])
def test_bound_builds_the_same_object_as_the_dataclass(comparator: Any) -> None:
    assert bound(3.5, comparator) == Bound(3.5, comparator)
    assert repr(bound(3.5, comparator)) == repr(Bound(3.5, comparator))
    assert hash(bound(3.5, comparator)) == hash(Bound(3.5, comparator))
    assert bound(2.0) == Bound(2.0)


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 12.0, 0.7, 1.23456, 0.000123, 1e9, 1e12, 150.25, 3, 7.0])
def test_format_number_remembers_nothing_that_changes_its_text(value: float) -> None:
    expected = _format_number(value)
    assert format_number(value) == expected
    assert format_number(value) == expected  # from the cache
    assert format_number(-0.0) == format_number(0.0) == "0"
    with pytest.raises(OverflowError):
        format_number(math.inf)


def test_ucum_fast_is_to_canonical_for_every_ucum_code() -> None:
    units = knowledge().units
    assert units.ucum_fast
    for analyte, table in units.factors.items():
        for code, factor in table.items():
            if factor.offset:  # W8: an affine conversion (HbA1c mmol/mol) is left to ``to_canonical``
                assert (analyte, code) not in units.ucum_fast
                continue
            multiply, number, canonical = units.ucum_fast[(analyte, code)]
            converted = units.to_canonical(analyte, 7.3, {"value": 7.3, "system": UCUM, "code": code})
            assert isinstance(converted, Converted)
            assert (7.3 * number if multiply else 7.3 / number, canonical) == (converted.value, converted.unit)
    assert dataclasses.replace(units) == units  # a derived field, out of equality
