"""One NDJSON line at a time: split lines as text mode does, parse a line as the json module does, find its patient.

The indexer (``ndjson_index``) and the reader share these, so a line is split, accepted and parsed the same
way when it is indexed and when it is read back. The one full parse of a line into Python objects is the
reader's (``parse_line``); the indexer only needs the line's type and patient (``line_patient``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
LINE_END = re.compile(rb"\r\n|\r|\n")
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19
"""orjson reads integers beyond 64 bits as floats where the json module keeps them exact: lines with a run
of 19+ digits are parsed with the json module, so both parsers always give the same objects."""


def is_plain(data: bytes) -> bool:
    """No run of 19+ digits in ``data``: orjson parses its lines to the objects the json module gives."""
    return _LONG_NUMBER not in data.translate(_DIGITS_TO_ZERO)


def patient_id_from_text(reference: str) -> str | None:
    """'Patient/abc' or 'abc' -> 'abc'; anything else -> None."""
    value = reference.strip()
    if "/" in value:
        kind, _, rest = value.rpartition("/")
        if not kind.endswith("Patient"):
            return None
        value = rest
    return value if FHIR_ID.match(value) else None


def physical_lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, stop, content) of each line of ``data``, split as text mode reads a file (universal newlines)."""
    if b"\r" not in data:
        position = 0
        parts = data.split(b"\n")
        last = len(parts) - 1
        for number, content in enumerate(parts):
            if number == last:
                if content:
                    yield position, position + len(content), content
                return
            stop = position + len(content) + 1
            yield position, stop, content
            position = stop
        return
    position = 0
    for match in LINE_END.finditer(data):
        yield position, match.end(), data[position : match.start()]
        position = match.end()
    if position < len(data):
        yield position, len(data), data[position:]


def line_contents(data: bytes) -> list[bytes]:
    """The content of each line of ``data`` (as ``physical_lines`` yields them), without their positions."""
    if b"\r" in data:
        return [content for _, _, content in physical_lines(data)]
    contents = data.split(b"\n")
    if not contents[-1]:
        contents.pop()
    return contents


class BadLineError(ValueError):
    """A line that is not UTF-8 or not JSON the json module can read; the message is the problem, no content."""


def parse_line(content: bytes, plain: bool) -> Any:
    """One NDJSON line as the json module reads it (orjson when that gives the same objects, it is ~3x faster).

    ``BadLineError`` for a line that is not UTF-8, not JSON, or nested too deeply for the json module (its
    RecursionError depends on the stack depth of the caller, so it is caught here, where every caller
    passes): one bad line of an export is skipped and reported, it never ends the batch.
    """
    if plain:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass  # NaN, Infinity, lone surrogates, a BOM...: the json module decides, as it always did
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLineError("not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadLineError("not JSON (nested too deeply)") from None
    except json.JSONDecodeError:
        raise BadLineError("not JSON") from None


def resource_patient(resource: Any, last: list[str | None]) -> tuple[str | None, str | None, str | None]:
    """(patient id, resource type, problem) of one parsed line.

    ``last`` holds the previous [reference, patient id]: an export lists a patient's resources together.
    """
    if not isinstance(resource, dict):
        return None, None, "not a resource, skipped"
    return _patient_of(
        resource.get("resourceType"), resource.get("id"), resource.get("subject"), resource.get("patient"), last
    )


def _patient_of(
    kind: Any, resource_id: Any, subject: Any, patient: Any, last: list[str | None]
) -> tuple[str | None, str | None, str | None]:
    """``resource_patient`` from the four fields it reads (a missing field is None, as ``dict.get`` gives)."""
    if kind == "Patient":
        patient_id = resource_id
    else:
        subject = subject or patient or {}
        if isinstance(subject, dict):
            reference = str(subject.get("reference", ""))
            if reference != last[0]:
                last[0], last[1] = reference, patient_id_from_text(reference)
            patient_id = last[1]
        else:
            patient_id = None
    if not isinstance(patient_id, str) or not patient_id:
        return None, None, f"{kind} without a patient, skipped"
    return patient_id, str(kind), None


class _Skim(msgspec.Struct):
    """The four fields ``resource_patient`` reads; msgspec still checks that the whole line is JSON."""

    resourceType: Any = None  # noqa: N815 - FHIR's own names
    id: Any = None
    subject: Any = None
    patient: Any = None


_SKIM = msgspec.json.Decoder(_Skim)
_SKIM_MAX_OPENINGS = 400
"""Lines with more brackets than this are parsed in full: how deep the json module can nest depends on
the caller's stack, so a deep line is decided exactly as the reader will decide it."""


def line_patient(content: bytes, plain: bool, last: list[str | None]) -> tuple[str | None, str | None, str | None]:
    """``resource_patient`` of one line, without making the line's Python objects where that is exact.

    Indexing needs only each line's type and patient, and whether the reader will be able to parse it.
    msgspec checks the whole line and keeps four fields (~0.9 us for a 700-byte Observation, against
    ~2.8 us for ``orjson.loads``; docs/benchmarks.md). It is used only where its verdict is the reader's:
    UTF-8 text (msgspec does not check the bytes of strings it skips), no integer orjson would read as a
    float (``plain``), not nested deeply. Anything msgspec refuses (NaN, lone surrogates, a BOM, an
    array...) is parsed in full and decided as before. Raises ``BadLineError`` for a line the reader
    could not parse.
    """
    if plain and content.count(b"[") + content.count(b"{") <= _SKIM_MAX_OPENINGS and _is_utf8(content):
        try:
            skim = _SKIM.decode(content)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            pass
        else:
            return _patient_of(skim.resourceType, skim.id, skim.subject, skim.patient, last)
    return resource_patient(parse_line(content, plain), last)


def _is_utf8(content: bytes) -> bool:
    if content.isascii():
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
