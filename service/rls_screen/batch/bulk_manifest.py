"""What a Bulk Data export server says, read into typed values: the manifest, error files, X-Progress.

Pure: no HTTP, no clock. ``bulk_export`` does the talking and hands the bodies and files here.

- ``parse_manifest``: the complete-status body (Bulk Data IG v2, "Response - Complete Status") checked
  field by field, so a malformed manifest is a ``FhirResponseError`` naming the field, never a
  KeyError or TypeError, and a file ``type`` can never steer where a file is written.
- ``read_error_file``: the OperationOutcome lines of a manifest's ``error`` files, each turned into
  ``ExportProblem``s tied to the patient the outcome names, when it names one.
- ``progress_text``: the X-Progress header reduced to a percentage or a status word for the log
  (the header is free server text, which could hold anything).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from rls_screen.errors import FhirResponseError

RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
"""A FHIR resource type name: it becomes part of a file name, so nothing else (no '/', no '..') passes."""
_PATIENT_REFERENCE = re.compile(r"(?<![A-Za-z0-9])Patient/([A-Za-z0-9\-.]{1,64})")
"""``Patient/<id>`` (FHIR R4 id: 1-64 of [A-Za-z0-9-.]), alone or at the end of an absolute URL."""
_TEXT_LIMIT = 200
"""Characters of an outcome's text kept in a problem: enough to act on, short enough for a report cell."""
SEVERITIES = ("fatal", "error", "warning", "information")
Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class ExportFile:
    type: str
    url: str


@dataclass(frozen=True)
class Manifest:
    transaction_time: datetime
    requires_access_token: bool
    output: tuple[ExportFile, ...]
    error: tuple[ExportFile, ...]


@dataclass(frozen=True)
class ExportProblem:
    """One issue of an error file (or an error file that could not be read)."""

    severity: Severity
    text: str
    """``<code>: <diagnostics or details>``, shortened; no file paths or URLs."""
    patient_id: str | None = None
    """The patient the outcome names (``Patient/<id>`` in its expression, location, diagnostics,
    details or an extension), None when it names none: a problem of the whole export."""

    @property
    def is_error(self) -> bool:
        """An error or fatal issue: the data it concerns is missing from the export."""
        return self.severity in ("fatal", "error")


def _malformed(what: str) -> FhirResponseError:
    return FhirResponseError(f"bulk export manifest: {what}", status=200)


def _files(body: Mapping[str, Any], field: str, *, required: bool) -> tuple[ExportFile, ...]:
    items = body.get(field)
    if items is None and not required:
        return ()
    if not isinstance(items, list):
        raise _malformed(f"'{field}' is not a list of files")
    files: list[ExportFile] = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            raise _malformed(f"{field} item {n} is not an object")
        kind, url = item.get("type"), item.get("url")
        if not isinstance(kind, str) or RESOURCE_TYPE.fullmatch(kind) is None:
            raise _malformed(f"{field} item {n} has no resource type name in 'type'")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise _malformed(f"{field} item {n} has no absolute http(s) 'url'")
        files.append(ExportFile(kind, url))
    return tuple(files)


def parse_manifest(body: Mapping[str, Any]) -> Manifest:
    """The complete-status manifest, or ``FhirResponseError`` naming the first field that is wrong.

    ``transactionTime``, ``requiresAccessToken`` and ``output`` are required (IG v2 "Required Fields").
    ``error`` is required too, but an absent list is read as the empty one: it says nothing failed,
    which is what the empty list the IG asks for says. A list of the wrong shape is an error.
    """
    stamp = body.get("transactionTime")
    if not isinstance(stamp, str):
        raise _malformed("no 'transactionTime'")
    try:
        # a FHIR instant always has a zone; Python 3.11 reads "Z" and "+00:00" alike
        transaction_time = datetime.fromisoformat(stamp)
    except ValueError:
        raise _malformed("'transactionTime' is not a FHIR instant") from None
    if transaction_time.tzinfo is None:
        raise _malformed("'transactionTime' is not a FHIR instant (no time zone)")
    requires_token = body.get("requiresAccessToken")
    if not isinstance(requires_token, bool):  # "true" as a string is not the boolean the IG requires
        raise _malformed("'requiresAccessToken' is not a boolean")
    return Manifest(
        transaction_time=transaction_time,
        requires_access_token=requires_token,
        output=_files(body, "output", required=True),
        error=_files(body, "error", required=False),
    )


def _strings_naming_patients(outcome: Mapping[str, Any]) -> Iterator[str]:
    """The texts of an OperationOutcome where a server names the resource an issue is about."""

    def extension_values(holder: Mapping[str, Any]) -> Iterator[str]:
        extensions = holder.get("extension")
        for extension in extensions if isinstance(extensions, list) else []:
            if not isinstance(extension, Mapping):
                continue
            reference = extension.get("valueReference")
            if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
                yield reference["reference"]
            for key in ("valueString", "valueUri", "valueUrl", "valueCanonical"):
                if isinstance(extension.get(key), str):
                    yield extension[key]

    yield from extension_values(outcome)
    issues = outcome.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, Mapping):
            continue
        yield from extension_values(issue)
        for key in ("expression", "location"):
            values = issue.get(key)
            yield from (value for value in values if isinstance(value, str)) if isinstance(values, list) else ()
        if isinstance(issue.get("diagnostics"), str):
            yield issue["diagnostics"]
        details = issue.get("details")
        if isinstance(details, Mapping) and isinstance(details.get("text"), str):
            yield details["text"]


def named_patients(outcome: Mapping[str, Any]) -> list[str]:
    """Patient ids the outcome names, in order of first mention."""
    ids: dict[str, None] = {}
    for text in _strings_naming_patients(outcome):
        for match in _PATIENT_REFERENCE.finditer(text):
            # a reference that ends a sentence ("... for Patient/abc.") keeps its full stop in the match
            ids.setdefault(match.group(1).rstrip("."), None)
    return [patient_id for patient_id in ids if patient_id]


def _issue_text(issue: Mapping[str, Any]) -> str:
    code = issue.get("code") if isinstance(issue.get("code"), str) else "unknown"
    details = issue.get("details")
    text = issue.get("diagnostics") or (details.get("text") if isinstance(details, Mapping) else None)
    text = " ".join(str(text).split())[:_TEXT_LIMIT] if text else ""
    return f"{code}: {text}" if text else str(code)


def outcome_problems(outcome: Any, where: str) -> list[ExportProblem]:
    """One problem per issue of an OperationOutcome line (per named patient, when it names several)."""
    if not isinstance(outcome, Mapping) or outcome.get("resourceType") != "OperationOutcome":
        return [ExportProblem("error", f"{where}: not an OperationOutcome; the export may be incomplete")]
    issues = [issue for issue in outcome.get("issue") or [] if isinstance(issue, Mapping)]
    if not issues:
        return [ExportProblem("error", f"{where}: an OperationOutcome without issues; the export may be incomplete")]
    patients = named_patients(outcome)
    problems: list[ExportProblem] = []
    for issue in issues:
        severity = issue.get("severity")
        level: Severity = severity if severity in SEVERITIES else "error"
        text = _issue_text(issue)
        if patients:
            problems.extend(ExportProblem(level, text, patient_id) for patient_id in patients)
        else:
            problems.append(ExportProblem(level, text))
    return problems


def read_error_file(path: Path, name: str) -> list[ExportProblem]:
    """Every problem in one downloaded error file; ``name`` (e.g. "error file 1") prefixes job-level ones."""
    problems: list[ExportProblem] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{name} line {number}"
            try:
                outcome = json.loads(line.decode("utf-8"))
            except ValueError:  # also UnicodeDecodeError
                problems.append(ExportProblem("error", f"{where}: not JSON; the export may be incomplete"))
                continue
            problems.extend(outcome_problems(outcome, where))
    return problems


_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")
_STATUS_WORD = re.compile(
    r"\b(queued|submitted|pending|started|running|in[ _-]progress|processing|building|finali[sz]e|"
    r"finali[sz]ing|complete|completed)\b",
    re.IGNORECASE,
)


def progress_text(header: str | None) -> str:
    """X-Progress for the log: its percentage, else its last status word, else "in progress".

    The IG leaves the header's text to the server (IG v2, "Response - In-Progress Status"); a
    percentage or a status word is all we log of it, so whatever else it holds stays out of logs.
    """
    if header:
        percent = _PERCENT.search(header)
        if percent:
            return f"{percent.group(1)}%"
        words = _STATUS_WORD.findall(header)
        if words:
            return str(words[-1]).lower().replace("_", " ").replace("-", " ")
    return "in progress"
