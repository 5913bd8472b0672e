"""Errors of the CDS service and their HTTP form: a status and an OperationOutcome.

    CdsError                         -> status + OperationOutcome (message never holds PHI or tokens)
    ├── InvalidRequestError        400    the body parses but cannot be used (bad prefetch, wrong patient)
    ├── UnknownServiceError        404    no service with that id
    ├── PayloadTooLargeError       413    body over RLS_SCREEN_CDS_MAX_BODY_BYTES
    └── DataUnavailableError       412    data the decision needs is neither prefetched nor fetchable
        └── DeadlinePassedError            the call's deadline passed: the EHR already got {"cards": []}
    AuthenticationError             -> bare 401 (the reason is logged, never sent)

Validation errors of the request models become 400 through the app's exception handler.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CdsError(Exception):
    status: ClassVar[int] = 400
    issue_code: ClassVar[str] = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(CdsError):
    status = 400
    issue_code = "invalid"


class UnknownServiceError(CdsError):
    status = 404
    issue_code = "not-found"


class PayloadTooLargeError(CdsError):
    status = 413
    issue_code = "too-costly"


class DataUnavailableError(CdsError):
    """CDS Hooks 2.0: 412 when the service cannot obtain the FHIR data it needs."""

    status = 412
    issue_code = "incomplete"


class DeadlinePassedError(DataUnavailableError):
    """Raised in a call abandoned at its deadline, so that it reads and records nothing more."""


class AuthenticationError(Exception):
    """The caller's JWT is missing or not acceptable; ``reason`` is for our log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def operation_outcome_issues(issues: list[tuple[str, str]]) -> dict[str, Any]:
    """Several (code, diagnostics) issues in one OperationOutcome."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text} for code, text in issues],
    }
