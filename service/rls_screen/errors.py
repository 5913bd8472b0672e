"""The module's error hierarchy, and the exit codes the CLI maps them to.

    RlsScreenError                    base; never raised directly
    ├── InputError          (exit 2)  the caller's input is unreadable or not what was asked for
    ├── ConfigurationError  (exit 3)  a setting or data file is missing or inconsistent
    └── FhirError           (exit 4)  talking to a FHIR server failed
        ├── ServerNotAllowedError     the URL is not on the allowlist (no request was made)
        │   └── UnsafeUrlError        (also a ValueError) a URL refused before any comparison:
        │                             dot segments, userinfo, backslashes, ... (rls_screen.urls)
        ├── FhirRequestError          the request cannot be sent as built (an access token with a
        │                             line break or non-ASCII characters); nothing was sent
        ├── FhirRedirectError         a 3xx: redirects are never followed (not retried)
        ├── FhirUnavailableError      connection refused, timeout, a body cut off, or 5xx after retries
        ├── FhirAuthError             401/403 (the token is never included in the message)
        ├── FhirNotFoundError         404 / 410
        ├── FhirOperationError        another 4xx, or a Bulk export the server reports as failed,
        │                             carrying the server's OperationOutcome text
        └── FhirResponseError         a 2xx whose body is not the JSON asked for (e.g. a proxy's
                                      HTML login page); a body cut off mid-JSON is transient and
                                      raised as FhirUnavailableError instead

The CLI prints ``str(error)`` as one line on stderr; messages therefore never contain PHI or tokens.
"""

from __future__ import annotations

from typing import ClassVar


class RlsScreenError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ClassVar[int] = 1


class InputError(RlsScreenError):
    """The input (file, argument, request body) cannot be used as given."""

    exit_code = 2


class ConfigurationError(RlsScreenError):
    """A setting or a shipped/site data file is missing or inconsistent."""

    exit_code = 3


class FhirError(RlsScreenError):
    """Talking to a FHIR server failed."""

    exit_code = 4

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerNotAllowedError(FhirError):
    """The FHIR base URL is not on the allowlist; no request was sent."""


class UnsafeUrlError(ServerNotAllowedError, ValueError):
    """A URL that ``rls_screen.urls`` refuses to normalise, so it can never match the allowlist.

    A ValueError too, for callers that only parse URLs. The message names the reason (a dot segment,
    userinfo, ...), never the URL: it may hold patient ids or credentials.
    """


class FhirRequestError(FhirError):
    """The request could not be sent as built: a header value HTTP cannot carry (for example an access
    token holding a line break or non-ASCII characters). Nothing was sent; asking again fails the same way."""


class FhirRedirectError(FhirError):
    """The server answered with a redirect (3xx). Redirects are never followed: the target may lie off
    the allowlist or outside the FHIR base, and the request carries a bearer token. Not retried."""


class FhirUnavailableError(FhirError):
    """The server could not be reached, timed out, or kept failing after retries."""


class FhirAuthError(FhirError):
    """The server refused our credentials (401/403)."""


class FhirNotFoundError(FhirError):
    """The resource does not exist (404/410)."""


class FhirOperationError(FhirError):
    """The server rejected the request with an OperationOutcome (4xx other than auth/not-found), or
    a Bulk export ended in a non-transient error status."""


class FhirResponseError(FhirError):
    """The server answered, but its body is not the JSON asked for (an HTML page, XML, malformed JSON).

    Not transient: the same request gets the same page until someone fixes the proxy, the login or the
    server's configuration. The message names the content type and the byte count, never the body.
    """
