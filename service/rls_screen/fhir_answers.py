"""What a FHIR server (or a token endpoint) answered: bodies parsed into objects, or typed errors.

``parse_json_object`` is the one place a body becomes a JSON object; the rest name what arrived in
messages without quoting it (content type, byte count, status): a login page, a half Bundle or a
Location header may hold PHI or a token.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from typing import Any

import requests

from rls_screen.errors import FhirRedirectError, FhirResponseError, FhirUnavailableError

FHIR_JSON = "application/fhir+json"
# FHIR R4 http.html#mime-type: application/fhir+json; plain JSON and the DSTU2-era alias are what
# servers and token endpoints (RFC 6749 section 5.1) send in practice.
JSON_MEDIA_TYPES = frozenset({"application/json", FHIR_JSON, "application/json+fhir"})
HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def redirect_error(what: str, status: int) -> FhirRedirectError:
    # The Location is not quoted: it may hold patient ids, or a token in its query.
    return FhirRedirectError(
        f"{what}: the server answered with a redirect (HTTP {status}); not followed", status=status
    )


def outcome_text(body: Any) -> str:
    """The first issue's diagnostics or details text of an OperationOutcome, shortened."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return ""
    issues = body.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, Mapping):
            continue  # a malformed issue must not turn the HTTP error into an AttributeError
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, Mapping) else None)
        if text:
            return str(text)[:300]
    return ""


# What may follow the point where a JSON parse failed if the document was merely cut short: nothing,
# or the start of a literal or a number (the json module reports those errors at the token's start).
_CUT_TAIL = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?[0-9]*(\.[0-9]*)?([eE][+-]?[0-9]*)?")


def media_type_of(response: requests.Response) -> str:
    """The Content-Type without parameters, bounded: it goes into messages, where bodies never do."""
    value = response.headers.get("Content-Type") or ""
    return value.split(";", 1)[0].strip().lower()[:60]


def _is_cut_short(error: ValueError, content: bytes) -> bool:
    """Whether a body that failed to parse reads as the start of a JSON document that ended early."""
    if isinstance(error, UnicodeDecodeError):  # cut inside a multi-byte character
        return error.reason == "unexpected end of data" and error.end == len(content)
    if not isinstance(error, json.JSONDecodeError):
        return False
    if error.msg.startswith("Unterminated string"):
        return True
    return _CUT_TAIL.fullmatch(error.doc[error.pos :].rstrip()) is not None


def parse_json_object(response: requests.Response, what: str, *, applied_if_cut: bool = False) -> dict[str, Any]:
    """The body of an answer that must be a JSON object, or a typed error saying what came instead.

    ``what`` names the request in the message ("GET Patient", "token request"). The message gives the
    content type and the byte count, never body text: a login page or a half Bundle may hold PHI.

    Which error says whether to try again:

    - a body that starts as JSON and stops early (empty, or cut mid-document) is
      ``FhirUnavailableError``, transient like the broken connection it almost always is (a proxy or
      a server that dies mid-write may still end the chunked stream cleanly); the client retries it
      where a retry is safe, and the batch counts it as transient;
    - anything else (a content type that is not JSON, such as a proxy's or an SSO's HTML login page,
      XML, or JSON that is malformed in the middle or is not an object) is ``FhirResponseError``:
      asking again gets the same page until someone fixes the proxy, the login or the server.
    """
    status = response.status_code
    media_type = media_type_of(response)
    content = response.content
    arrived = f"HTTP {status} with {media_type or 'no content type'} ({len(content)} bytes)"
    # No Content-Type at all: let the body decide.
    if media_type and not (media_type in JSON_MEDIA_TYPES or media_type.endswith("+json")):
        hint = ": a proxy or login page?" if media_type in HTML_MEDIA_TYPES else ""
        raise FhirResponseError(f"{what}: expected FHIR JSON, got {arrived}{hint}", status=status)
    try:
        # FHIR JSON is UTF-8 (http.html#mime-type); a byte order mark is tolerated.
        body = json.loads(content.removeprefix(codecs.BOM_UTF8).decode("utf-8"))
    except RecursionError:  # arrays or objects nested thousands deep: no FHIR resource is
        raise FhirResponseError(f"{what}: expected FHIR JSON, got {arrived} nested too deeply", status=status) from None
    except ValueError as error:
        if _is_cut_short(error, content):
            applied = "; the server may have applied the request" if applied_if_cut else ""
            raise FhirUnavailableError(
                f"{what}: expected FHIR JSON, got {arrived} that ends before the JSON does "
                f"(cut off in transit?){applied}",
                status=status,
            ) from None  # not chained: the JSON error holds the whole body (PHI) in .doc
        raise FhirResponseError(
            f"{what}: expected FHIR JSON, got {arrived} that is not valid JSON", status=status
        ) from None
    if not isinstance(body, dict):
        raise FhirResponseError(
            f"{what}: expected a FHIR JSON object, got {arrived} holding a JSON {type(body).__name__}",
            status=status,
        )
    return body
