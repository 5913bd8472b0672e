"""D2 in memory: the contract's code check reads a CodeableConcept exactly as the classifier's ``codings_of`` does.

``has_coding_in`` walks the codings without building the (system, code) pairs; whatever the shape of the
concept (the malformed ones real exports carry included), it must say what ``codings_of`` would have said.
The date cache's "not seen" marker must never be taken for a parsed date.
"""

from __future__ import annotations

from collections import UserDict
from datetime import datetime
from typing import Any

import pytest

from rls_screen.observation_fields import codings_of, has_coding_in, parse_fhir_datetime

LOINC = "http://loinc.org"
WANTED = frozenset({(LOINC, "2276-4"), ("urn:local", "FER")})


class _StrCode(str):
    """A str subclass (as a JSON decoder might give): it hashes and compares as the plain string."""


CONCEPTS: list[Any] = [
    None,
    "2276-4",
    [],
    {},
    {"coding": None},
    {"coding": {"system": LOINC, "code": "2276-4"}},  # a coding, not a list of codings
    {"coding": []},
    {"coding": [None, 3, "x", []]},
    {"coding": [{"system": LOINC, "code": "2276-4"}]},
    {"coding": [{"system": LOINC, "code": "718-7"}]},
    {"coding": [{"system": LOINC, "code": "718-7"}, {"system": LOINC, "code": "2276-4"}]},
    {"coding": [{"code": "2276-4"}]},  # no system
    {"coding": [{"system": LOINC}]},
    {"coding": [{"system": LOINC, "code": 2276}]},
    {"coding": [{"system": None, "code": "2276-4"}]},
    {"coding": [{"system": LOINC, "code": "2276-4 "}]},  # codes are compared as given, never trimmed
    {"coding": [{"system": "urn:local", "code": "FER"}]},
    {"coding": [{"system": "urn:local", "code": "fer"}]},
    {"coding": [UserDict({"system": LOINC, "code": "2276-4"})]},  # a Mapping that is not a dict
    UserDict({"coding": [{"system": LOINC, "code": "2276-4"}]}),
    {"coding": [{"system": _StrCode(LOINC), "code": _StrCode("2276-4")}]},
    {"text": "Ferritin"},
]


@pytest.mark.unit
@pytest.mark.parametrize("concept", CONCEPTS)
def test_has_coding_in_says_what_codings_of_says(concept: Any) -> None:
    expected = any(coding in WANTED for coding in codings_of(concept))
    assert has_coding_in(concept, WANTED) is expected


@pytest.mark.unit
def test_the_cases_cover_both_answers() -> None:
    answers = {has_coding_in(concept, WANTED) for concept in CONCEPTS}
    assert answers == {True, False}


@pytest.mark.unit
@pytest.mark.parametrize("text", ["0001-01-01", "0001-01-01T00:00:00", "2026-11-25T08:00:00Z", "2026-11"])
def test_a_cached_date_is_the_parsed_date_whatever_it_is(text: str) -> None:
    first = parse_fhir_datetime(text)
    again = parse_fhir_datetime(text)  # from the cache now
    assert again == first
    if len(text) >= 10:
        assert isinstance(again, datetime)
        assert again.year in (1, 2026)
    else:
        assert again is None
