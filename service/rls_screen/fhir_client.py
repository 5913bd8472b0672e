"""The one seam to FHIR servers: allowlist, timeouts, retries, paging, typed errors.

Every request the module makes goes through ``FhirClient``. It puts every URL (request, next link,
download, token endpoint) in normal form and refuses any URL outside the configured allowlist before
a socket is opened (``rls_screen.urls``; plain http only for loopback). It never follows a redirect:
a 3xx is ``FhirRedirectError``, because its target was never checked and the request carries a
token. It retries idempotent reads on transient failures and any request on 429/503 (the server did
not process it), honours Retry-After, follows Bundle next links up to a bound, and turns error
responses and their OperationOutcome into the typed errors of ``rls_screen.errors``. Every body it
parses goes through ``parse_json_object``, so a 200 that is not JSON (a proxy's login page, a body
cut off in transit, JSON nested too deeply to parse) is a typed error too, as is a body that is not
in its Content-Encoding, a header it cannot send, and a Bundle whose entries or links are not
arrays of objects (``rls_screen.bundles``). Authentication is in ``fhir_auth``, body parsing in
``fhir_answers``. Logs carry method, resource type, status and time: never full URLs (they hold
patient ids), bodies or tokens.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter

from rls_screen import bundles
from rls_screen.errors import (
    FhirAuthError,
    FhirError,
    FhirNotFoundError,
    FhirOperationError,
    FhirRequestError,
    FhirResponseError,
    FhirUnavailableError,
)
from rls_screen.fhir_answers import FHIR_JSON, HTML_MEDIA_TYPES, media_type_of, outcome_text, redirect_error

# Re-exported: callers (the CDS service, the CLI, tests) import these from the FHIR seam.
from rls_screen.fhir_answers import parse_json_object as parse_json_object
from rls_screen.fhir_auth import Auth
from rls_screen.fhir_auth import BearerAuth as BearerAuth
from rls_screen.fhir_auth import NoAuth as NoAuth
from rls_screen.fhir_auth import SmartBackendAuth as SmartBackendAuth
from rls_screen.fhir_auth import auth_from_settings as auth_from_settings
from rls_screen.observability import fhir_calls
from rls_screen.scopes import scopes_for
from rls_screen.settings import Settings
from rls_screen.urls import Allowlist as Allowlist
from rls_screen.urls import check_base_url_scheme as check_base_url_scheme
from rls_screen.urls import is_loopback as is_loopback
from rls_screen.urls import normalise
from rls_screen.urls import normalise_base as normalise_base

RETRYABLE_READ_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_ANY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 30.0
log = logging.getLogger(__name__)


# What requests raises for a request it cannot put on the wire (a header value with a line break:
# InvalidHeader; with non-Latin-1 characters: UnicodeEncodeError from http.client).
_UNSENDABLE = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeEncodeError)
# What it raises for a transient break while the answer arrives.
_BROKEN = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header value (RFC 9110 section 10.2.3: delta-seconds or an HTTP-date) in seconds
    from ``now`` (``time.time()``), never negative; None when absent or neither form."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a number of seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        # Neither delta-seconds nor an HTTP-date: ignore the header and use our own backoff,
        # instead of letting a ValueError escape as an untyped error.
        return None
    if parsed.tzinfo is None:  # RFC 9110 HTTP-dates are GMT; "-0000" parses as naive
        parsed = parsed.replace(tzinfo=UTC)
    return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def _retry_after_seconds(response: requests.Response) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))


def _resource_kind(url: str, base: str) -> str:
    """For logs: the resource type or operation, never ids or query values."""
    path = url[len(base) :].split("?", 1)[0].strip("/")
    return path.split("/", 1)[0] or "(system)"


class FhirClient:
    """A FHIR R4 REST client over one pooled ``requests.Session``."""

    def __init__(
        self,
        base_url: str,
        *,
        allowlist: Allowlist,
        auth: Auth | None = None,
        session: requests.Session | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        max_retries: int = 3,
        max_pages: int = 50,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        deadline_at: float | None = None,
    ) -> None:
        """``deadline_at`` (``time.monotonic()``): no request, retry or page starts after it, and each
        request's read timeout is cut to the time left (the CDS service's per-call deadline)."""
        self.base_url = normalise_base(base_url)
        allowlist.check(self.base_url)
        self._allowlist = allowlist
        self._session = session or requests.Session()
        if session is None:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        self._auth: Auth = auth or NoAuth()
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._max_retries, self._max_pages = max_retries, max_pages
        self._backoff_s, self._sleep = backoff_s, sleep
        self._deadline_at = deadline_at
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None, *, scopes: str | None = None) -> FhirClient:
        """``scopes``: what the command needs (``scopes.scopes_for``); default: reading and writing back."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return cls(
            base_url or settings.fhir_base_url,
            allowlist=Allowlist.from_settings(settings),
            auth=auth_from_settings(settings, session, scopes or scopes_for(write=True, group=True)),
            session=session,
            connect_timeout_s=settings.fhir_connect_timeout_s,
            read_timeout_s=settings.fhir_read_timeout_s,
            max_retries=settings.fhir_max_retries,
            max_pages=settings.fhir_max_pages,
        )

    @property
    def allowlist(self) -> Allowlist:
        """The URLs this client may call (e.g. to check every file of a Bulk manifest before the first download)."""
        return self._allowlist

    def close(self) -> None:
        self._session.close()

    # --- requests -----------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"
        return f"{url}?{urlencode(params)}" if params else url

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        also_accept: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """Send one request with retries; return the response for 2xx, raise a typed error otherwise."""
        response, _ = self._exchange(method, path, params, json_body, headers, idempotent, also_accept, decode=False)
        return response

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        also_accept: frozenset[int] = frozenset(),
    ) -> dict[str, Any]:
        """``request`` for an answer that must be a JSON object: the parsed body (``parse_json_object``).

        A body cut off in transit is retried like a broken connection when the request is safe to
        repeat; otherwise it is ``FhirUnavailableError`` (a write may have been applied).
        """
        _, body = self._exchange(method, path, params, json_body, headers, idempotent, also_accept, decode=True)
        return body

    @fhir_calls.counts_errors
    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
        also_accept: frozenset[int],
        *,
        decode: bool,
    ) -> tuple[requests.Response, dict[str, Any]]:
        url = self._checked(self.url(path, params))
        idempotent = method in ("GET", "HEAD") if idempotent is None else idempotent
        kind = _resource_kind(url, self.base_url)
        retried_auth = False
        attempt = 0
        while True:
            attempt += 1
            send_headers = {"Accept": FHIR_JSON, **(headers or {})}
            if json_body is not None:
                send_headers["Content-Type"] = FHIR_JSON
            timeout = self._timeout_now(method, kind)
            authorization = self._auth.header()
            if authorization:
                send_headers["Authorization"] = authorization
            started = time.monotonic()
            try:
                self.requests_made += 1
                response = fhir_calls.send(  # traced (traceparent added to send_headers) and counted
                    self._session,
                    method,
                    url,
                    kind,
                    attempt,
                    json=json_body,
                    headers=send_headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except requests.exceptions.ContentDecodingError:
                raise FhirResponseError(
                    f"{method} {kind}: the body is not in the Content-Encoding its headers name (e.g. not gzip)"
                ) from None
            except _UNSENDABLE as error:
                raise FhirRequestError(
                    f"{method} {kind}: not sent, a header value cannot be sent over HTTP ({type(error).__name__})"
                ) from None  # not chained: the error quotes the header, which may be the token
            except _BROKEN as error:
                # A read timeout on a write may have been applied: only retry what is safe to repeat.
                # ChunkedEncodingError is a connection broken while the body was read (requests does
                # not make it a ConnectionError): as transient as a reset before the headers.
                safe = idempotent or isinstance(error, requests.ConnectTimeout)
                if safe and attempt <= self._max_retries:
                    self._wait(attempt, None, method, kind, type(error).__name__)
                    continue
                raise FhirUnavailableError(
                    f"FHIR server at {urlsplit(url).netloc} did not answer ({type(error).__name__}) "
                    f"after {attempt} attempt(s)"
                ) from error
            elapsed_ms = (time.monotonic() - started) * 1000
            log.info("fhir %s %s -> %s in %.0f ms", method, kind, response.status_code, elapsed_ms)
            status = response.status_code
            if 300 <= status < 400:
                raise redirect_error(f"{method} {kind}", status)
            if status < 400 or status in also_accept:
                if not decode:
                    return response, {}  # the caller reads the body itself, if it has one
                try:
                    return response, parse_json_object(response, f"{method} {kind}", applied_if_cut=not idempotent)
                except FhirUnavailableError:
                    if idempotent and attempt <= self._max_retries:
                        self._wait(attempt, None, method, kind, f"HTTP {status} body cut off")
                        continue
                    raise
            retryable = RETRYABLE_READ_STATUSES if idempotent else RETRYABLE_ANY_STATUSES
            if status in retryable and attempt <= self._max_retries:
                retry_after = _retry_after_seconds(response)
                # A Retry-After longer than we would wait for an answer (the read timeout) is not
                # slept out: we give up now. The CDS service's read timeout is its deadline, so this
                # keeps abandoned worker threads from sleeping (and piling up) long after the call was
                # answered, and spares a throttled server their late retries. The batch's 30 s read
                # timeout equals MAX_RETRY_AFTER_S: only a Retry-After over 30 s changes, from "wait
                # 30 s, retry early" to "transient failure now" (retried in a later round or resume).
                if retry_after is None or retry_after <= self._timeout[1]:
                    self._wait(attempt, retry_after, method, kind, f"HTTP {status}")
                    continue
                log.warning(
                    "fhir %s %s: HTTP %d with Retry-After %.0f s, longer than the %.0f s read timeout: not retried",
                    method,
                    kind,
                    status,
                    retry_after,
                    self._timeout[1],
                )
            if status == 401 and not retried_auth and not isinstance(self._auth, NoAuth):
                retried_auth = True
                self._auth.invalidate()
                continue
            raise self._error(response, method, kind)

    def _checked(self, url: str) -> str:
        """The normal form of ``url`` if the allowlist holds it (what is checked is what is sent)."""
        url = normalise(url)
        self._allowlist.check(url)
        return url

    def _timeout_now(self, method: str, kind: str) -> tuple[float, float]:
        """(connect, read) timeouts for the next attempt: never past the deadline, if there is one."""
        if self._deadline_at is None:
            return self._timeout
        left = self._deadline_at - time.monotonic()
        if left <= 0:
            raise FhirUnavailableError(f"{method} {kind}: not sent, the caller's deadline has passed")
        return (min(self._timeout[0], left), min(self._timeout[1], left))

    def _wait(self, attempt: int, retry_after: float | None, method: str, kind: str, why: str) -> None:
        delay = min(
            retry_after if retry_after is not None else self._backoff_s * 2 ** (attempt - 1),
            MAX_RETRY_AFTER_S,
        )
        if self._deadline_at is not None and time.monotonic() + delay >= self._deadline_at:
            raise FhirUnavailableError(f"{method} {kind}: {why}; no time left for a retry before the deadline")
        log.warning("fhir %s %s: %s, retry %d in %.1f s", method, kind, why, attempt, delay)
        fhir_calls.retried(method, kind, why)
        self._sleep(delay)

    @staticmethod
    def _error(response: requests.Response, method: str, kind: str) -> FhirError:
        status = response.status_code
        try:
            detail = outcome_text(json.loads(response.content))
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            detail = ""
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return FhirAuthError(f"authorization failed for {method} {kind} (HTTP {status})", status=status)
        if status in (404, 410):
            return FhirNotFoundError(f"{method} {kind}: not found (HTTP {status}){suffix}", status=status)
        if status >= 500 or status == 429:
            return FhirUnavailableError(f"{method} {kind}: server error HTTP {status}{suffix}", status=status)
        return FhirOperationError(f"{method} {kind}: HTTP {status}{suffix}", status=status)

    # --- FHIR interactions ---------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.request_json("GET", f"{resource_type}/{resource_id}")

    def search(self, resource_type: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every matching resource (search mode 'match' and 'include'), following next links."""
        for page in self.search_pages(resource_type, params):
            yield from bundles.resources(page)

    def search_pages(self, resource_type: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        url: str | None = self.url(resource_type, params)
        pages = 0
        while url is not None:
            pages += 1
            if pages > self._max_pages:
                raise FhirOperationError(
                    f"search {resource_type}: more than {self._max_pages} pages; narrow the search"
                )
            bundle = self.request_json("GET", url)
            yield bundle
            url = bundles.next_link(bundle)

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; the server applies all of it or none of it."""
        return self.request_json("POST", "", json_body=bundle, idempotent=False)

    @fhir_calls.counts_errors
    def download(self, url: str, destination: Path, *, authorize: bool = True) -> int:
        """Stream a file (e.g. a Bulk export NDJSON output) to disk; returns bytes written.

        ``authorize=False`` sends no Authorization header: a Bulk manifest with ``requiresAccessToken``
        false names files on a server that does not take our token (e.g. signed storage URLs), which
        must not receive it. The URL must be on the allowlist either way.
        """
        url = self._checked(url)
        headers = {"Accept": "application/fhir+ndjson"}
        authorization = self._auth.header() if authorize else None
        if authorization:
            headers["Authorization"] = authorization
        self.requests_made += 1
        try:
            with self._session.get(
                url, headers=headers, timeout=self._timeout, stream=True, allow_redirects=False
            ) as response:
                if 300 <= response.status_code < 400:
                    raise redirect_error("GET bulk output", response.status_code)
                if response.status_code >= 400:
                    raise self._error(response, "GET", "bulk output")
                media_type = media_type_of(response)
                if media_type in HTML_MEDIA_TYPES:
                    # NDJSON is served as application/fhir+ndjson, or as an opaque type by object
                    # stores; an HTML page is never NDJSON (a proxy's login page): refuse it before
                    # it is written to disk as data. The body is not read, so not logged.
                    length = response.headers.get("Content-Length", "")
                    size = f"{length} bytes" if length.isdigit() else "length not given"
                    raise FhirResponseError(
                        f"GET bulk output: expected NDJSON, got HTTP {response.status_code} with {media_type} "
                        f"({size}): a proxy or login page?",
                        status=response.status_code,
                    )
                written = 0
                with destination.open("wb") as sink:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        sink.write(chunk)
                        written += len(chunk)
                return written
        except requests.exceptions.ContentDecodingError:
            raise FhirResponseError("GET bulk output: the body is not in its Content-Encoding") from None
        except _UNSENDABLE as error:
            raise FhirRequestError(f"GET bulk output: not sent ({type(error).__name__})") from None
        except _BROKEN as error:
            raise FhirUnavailableError(
                f"download from {urlsplit(url).netloc} failed ({type(error).__name__})"
            ) from error

    def validate(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """$validate: the server's OperationOutcome, for a valid (200) or an invalid (400/412) resource."""
        return self.request_json(
            "POST",
            f"{resource['resourceType']}/$validate",
            json_body=resource,
            idempotent=True,
            also_accept=frozenset({400, 412, 422}),
        )


def validation_errors(outcome: Mapping[str, Any]) -> list[str]:
    """The error/fatal issues of an OperationOutcome, as text."""
    issues = outcome.get("issue")
    errors: list[str] = []
    for issue in issues if isinstance(issues, list) else []:
        if isinstance(issue, Mapping) and issue.get("severity") in ("error", "fatal"):
            details = issue.get("details")
            text = details.get("text") if isinstance(details, Mapping) else None
            errors.append(str(issue.get("diagnostics") or text or issue.get("code")))
    return errors
