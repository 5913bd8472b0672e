"""How the CDS app answers errors: every one a 4xx (or a 500) with an OperationOutcome, never an echo of the input.

Validation errors are 400 with one issue per problem (at most 20, each at most 300 characters, naming where
in the body, never its value); unknown paths 404, wrong methods 405, oversized bodies 413; a ``CdsError``
its own status (412 for data needed but not obtainable); a bad JWT a bare 401.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from rls_screen.cds.errors import AuthenticationError, CdsError, operation_outcome_issues
from rls_screen.cds.guards import FHIR_JSON, json_response, outcome_response, route_path, unauthorized
from rls_screen.observability import cds_calls

log = logging.getLogger("rls_screen.cds")


def install_error_handlers(app: FastAPI, *, max_body_bytes: int) -> None:
    """Register the handlers on ``app`` (``max_body_bytes`` only names the limit in a 413)."""

    async def on_validation_error(request: Request, error: Exception) -> Response:
        issues = []
        for item in error.errors() if isinstance(error, RequestValidationError) else []:
            if item.get("type") == "json_invalid":
                issues.append(("structure", "the body is not valid JSON"))
                continue
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
            issues.append(("invalid", f"{where}: {item.get('msg', 'invalid')}"[:300]))
        log.info("cds: %s %s -> 400 (%d validation issue(s))", request.method, route_path(request.scope), len(issues))
        return json_response(operation_outcome_issues(issues[:20] or [("invalid", "invalid request")]), 400, FHIR_JSON)

    async def on_http_error(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, StarletteHTTPException) else 500
        text = {
            404: "no such endpoint",
            405: "method not allowed",
            413: f"request body exceeds {max_body_bytes} bytes",
        }.get(status, "the request body could not be read" if status == 400 else "request refused")
        code = {404: "not-found", 405: "not-supported", 413: "too-costly"}.get(
            status, "invalid" if status < 500 else "exception"
        )
        return outcome_response(status, code, text)

    async def on_cds_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, CdsError):
            return outcome_response(500, "exception", "internal error")
        log.info("cds: %s -> %d: %s", route_path(request.scope), error.status, error.message)
        return outcome_response(error.status, error.issue_code, error.message)

    async def on_auth_error(request: Request, error: Exception) -> Response:
        reason = error.reason if isinstance(error, AuthenticationError) else "rejected"
        log.info("cds: 401 on %s: %s", route_path(request.scope), reason)
        cds_calls.jwt_rejected(reason)
        return unauthorized()

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(CdsError, on_cds_error)
    app.add_exception_handler(AuthenticationError, on_auth_error)
