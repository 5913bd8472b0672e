"""The indexer reads a line's patient without parsing it in full: it must decide each line as the full parse does.

``ndjson_lines.line_patient`` (msgspec checks the line and keeps four fields) against ``resource_patient`` of
``parse_line`` (the reader's one full parse): the same patient, type and problem, or the same ``BadLineError``,
for the odd lines of real exports.
"""

from __future__ import annotations

import pytest

from rls_screen.batch.ndjson_lines import BadLineError, is_plain, line_patient, parse_line, resource_patient

pytestmark = pytest.mark.unit

_OBS = b'{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"valueQuantity":{"value":X}}'

LINES = {
    "plain": _OBS.replace(b"X", b"5"),
    "patient": b'{"resourceType":"Patient","id":"p1","gender":"female"}',
    "nan": _OBS.replace(b"X", b"NaN"),
    "infinity": _OBS.replace(b"X", b"-Infinity"),
    "huge exponent": _OBS.replace(b"X", b"1e400"),
    "30-digit integer": _OBS.replace(b"X", b"123456789012345678901234567890"),
    "lone surrogate": _OBS.replace(b'"o1"', b'"o\\ud800"'),
    "bom": b"\xef\xbb\xbf" + _OBS.replace(b"X", b"5"),
    "not utf-8 in a skipped string": _OBS.replace(b"X", b'"a\xff\xfeb"'),
    "latin-1 text": _OBS.replace(b"X", b'"caf\xe9"'),
    "utf-8 text": _OBS.replace(b"X", '"µmol/L ²"'.encode()),
    "control character": _OBS.replace(b"X", b'"a\x01b"'),
    "escaped nul": _OBS.replace(b"X", b'"a\\u0000b"'),
    "bad escape": _OBS.replace(b"X", b'"a\\qb"'),
    "syntax error in a skipped value": _OBS.replace(b"X", b"[1,,2]"),
    "trailing garbage": _OBS.replace(b"X", b"5") + b" x",
    "two documents": _OBS.replace(b"X", b"5") + _OBS.replace(b"X", b"5"),
    "array": b"[1]",
    "string": b'"Patient"',
    "empty object": b"{}",
    "no patient": b'{"resourceType":"Observation","id":"o1"}',
    "subject not an object": b'{"resourceType":"Observation","subject":"Patient/p1"}',
    "subject null, patient given": b'{"resourceType":"Condition","subject":null,"patient":{"reference":"Patient/p2"}}',
    "reference not a string": b'{"resourceType":"Observation","subject":{"reference":12}}',
    "absolute reference": b'{"resourceType":"Observation","subject":{"reference":"https://x.org/fhir/Patient/p3"}}',
    "bad patient id": b'{"resourceType":"Observation","subject":{"reference":"Patient/a b"}}',
    "other resource referenced": b'{"resourceType":"Observation","subject":{"reference":"Group/g1"}}',
    "duplicate subject": b'{"resourceType":"Observation","subject":{"reference":"Patient/a"},'
    b'"subject":{"reference":"Patient/b"}}',
    "duplicate type": b'{"resourceType":"Observation","resourceType":"Patient","id":"p9"}',
    "resource type not a string": b'{"resourceType":7,"subject":{"reference":"Patient/p1"}}',
    "patient id not a string": b'{"resourceType":"Patient","id":12}',
    "nested 300 deep": _OBS.replace(b"X", b"[" * 300 + b"]" * 300),
    "nested 990 deep": _OBS.replace(b"X", b"[" * 990 + b"]" * 990),
    "nested 3000 deep": _OBS.replace(b"X", b"[" * 3000 + b"]" * 3000),
    "whitespace around": b"  \t" + _OBS.replace(b"X", b"5") + b" ",
    "no-break space": b"\xc2\xa0" + _OBS.replace(b"X", b"5"),
}


def _full(content: bytes) -> object:
    try:
        return resource_patient(parse_line(content, is_plain(content)), [None, None])
    except BadLineError as bad:
        return f"BadLineError: {bad}"


def _skimmed(content: bytes) -> object:
    try:
        return line_patient(content, is_plain(content), [None, None])
    except BadLineError as bad:
        return f"BadLineError: {bad}"


@pytest.mark.parametrize("name", sorted(LINES))
def test_line_patient_decides_each_line_as_the_full_parse_does(name: str) -> None:
    content = LINES[name]
    assert _skimmed(content) == _full(content)


def test_the_cases_cover_good_bad_and_unlinked_lines() -> None:
    outcomes = [_full(content) for content in LINES.values()]
    assert ("p1", "Observation", None) in outcomes
    assert ("p3", "Observation", None) in outcomes
    assert "BadLineError: not JSON" in outcomes
    assert "BadLineError: not UTF-8 text" in outcomes
    assert (None, None, "not a resource, skipped") in outcomes
    assert (None, None, "Observation without a patient, skipped") in outcomes


def test_the_previous_reference_is_remembered_across_lines() -> None:
    last: list[str | None] = [None, None]
    first = line_patient(LINES["plain"], True, last)
    assert first == ("p1", "Observation", None)
    assert last == ["Patient/p1", "p1"]
