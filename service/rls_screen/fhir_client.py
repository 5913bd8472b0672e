"""The one seam to FHIR servers: allowlist, timeouts, retries, paging, auth, typed errors.

Every request the module makes goes through ``FhirClient``. It refuses any URL outside the
configured allowlist before a socket is opened (plain http only for loopback), retries idempotent
reads on transient failures and any request on 429/503 (the server did not process it), honours
Retry-After, follows Bundle next links up to a bound, and turns error responses and their
OperationOutcome into the typed errors of ``rls_screen.errors``. Every body it parses goes through
``parse_json_object``, so a 200 that is not JSON (a proxy's login page, a body cut off in transit)
is a typed error too. Logs carry method, resource type, status and time: never full URLs (they hold
patient ids), bodies or tokens.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter

from rls_screen.errors import (
    ConfigurationError,
    FhirAuthError,
    FhirError,
    FhirNotFoundError,
    FhirOperationError,
    FhirResponseError,
    FhirUnavailableError,
    ServerNotAllowedError,
)
from rls_screen.settings import Settings

FHIR_JSON = "application/fhir+json"
# FHIR R4 http.html#mime-type: application/fhir+json; plain JSON and the DSTU2-era alias are what
# servers and token endpoints (RFC 6749 section 5.1) send in practice.
JSON_MEDIA_TYPES = frozenset({"application/json", FHIR_JSON, "application/json+fhir"})
HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
RETRYABLE_READ_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_ANY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 30.0
log = logging.getLogger(__name__)


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_base(url: str) -> str:
    return url.strip().rstrip("/")


def check_base_url_scheme(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise ServerNotAllowedError(f"refusing {parts.scheme}://{parts.hostname}: plain http is allowed only for loopback")


@dataclass(frozen=True)
class Allowlist:
    """FHIR base URLs the module may call; a URL is allowed when it lies under one of them."""

    bases: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Allowlist:
        extra = [u for u in settings.fhir_allowlist.split(",") if u.strip()]
        return cls(tuple(dict.fromkeys(normalise_base(u) for u in [settings.fhir_base_url, *extra])))

    def allows(self, url: str) -> bool:
        url = normalise_base(url)
        return any(url == base or url.startswith(base + "/") or url.startswith(base + "?") for base in self.bases)

    def check(self, url: str) -> None:
        if not self.allows(url):
            host = urlsplit(url).hostname or "?"
            raise ServerNotAllowedError(
                f"FHIR server at {host} is not on the allowlist (FHIR_BASE_URL, RLS_SCREEN_FHIR_ALLOWLIST); "
                "no request was sent"
            )
        check_base_url_scheme(url)


class Auth(Protocol):
    """Supplies the Authorization header; ``invalidate`` drops a cached credential after a 401."""

    def header(self) -> str | None: ...

    def invalidate(self) -> None: ...


class NoAuth:
    def header(self) -> str | None:
        return None

    def invalidate(self) -> None:
        return None


class BearerAuth:
    def __init__(self, token: str) -> None:
        self._token = token

    def header(self) -> str | None:
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:  # never show the token
        return "BearerAuth(<redacted>)"


class SmartBackendAuth:
    """SMART Backend Services: client_credentials with a signed JWT assertion (RS384 or ES384).

    The access token is cached until shortly before it expires; a 401 from the FHIR server drops it.
    """

    ALGORITHMS = frozenset({"RS384", "ES384"})

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        private_key_pem: str,
        algorithm: str,
        key_id: str,
        scope: str,
        session: requests.Session,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in self.ALGORITHMS:
            raise ConfigurationError(f"SMART backend auth: algorithm must be RS384 or ES384, not {algorithm}")
        check_base_url_scheme(token_url)
        self._token_url, self._client_id, self._key = token_url, client_id, private_key_pem
        self._algorithm, self._kid, self._scope = algorithm, key_id, scope
        self._session, self._timeout, self._clock = session, timeout, clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def client_assertion(self) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._token_url,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers={"kid": self._kid, "typ": "JWT"})

    def _fetch(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "scope": self._scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.client_assertion(),
        }
        try:
            response = self._session.post(self._token_url, data=form, timeout=self._timeout)
        except requests.RequestException as error:
            raise FhirUnavailableError(f"token endpoint unreachable ({type(error).__name__})") from error
        if response.status_code != 200:
            raise FhirAuthError(f"token request refused: HTTP {response.status_code}", status=response.status_code)
        body = parse_json_object(response, "token request")
        token = body.get("access_token")
        if not isinstance(token, str):
            raise FhirAuthError("token response has no access_token")
        try:
            # RFC 6749 section 5.1 says a number; some identity providers send it as a string.
            expires_in = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            raise FhirAuthError("token response has an expires_in that is not a number of seconds") from None
        self._token = token
        self._expires_at = self._clock() + expires_in - 30.0

    def header(self) -> str | None:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._fetch()
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


def auth_from_settings(settings: Settings, session: requests.Session) -> Auth:
    if settings.smart_token_url:
        if not (settings.smart_client_id and settings.smart_private_key_file):
            raise ConfigurationError("SMART backend auth needs RLS_SCREEN_SMART_CLIENT_ID and _PRIVATE_KEY_FILE")
        try:
            key = Path(settings.smart_private_key_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"cannot read the SMART private key file ({error.strerror})") from error
        return SmartBackendAuth(
            token_url=settings.smart_token_url,
            client_id=settings.smart_client_id,
            private_key_pem=key,
            algorithm=settings.smart_algorithm,
            key_id=settings.smart_key_id,
            scope=settings.smart_scope,
            session=session,
            timeout=(settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s),
        )
    if settings.fhir_bearer_token is not None:
        return BearerAuth(settings.fhir_bearer_token.get_secret_value())
    return NoAuth()


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


# What may follow the point where a JSON parse failed if the document was merely cut short: nothing,
# or the start of a literal or a number (the json module reports those errors at the token's start).
_CUT_TAIL = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?[0-9]*(\.[0-9]*)?([eE][+-]?[0-9]*)?")


def _media_type(response: requests.Response) -> str:
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
    media_type = _media_type(response)
    content = response.content
    arrived = f"HTTP {status} with {media_type or 'no content type'} ({len(content)} bytes)"
    # No Content-Type at all: let the body decide.
    if media_type and not (media_type in JSON_MEDIA_TYPES or media_type.endswith("+json")):
        hint = ": a proxy or login page?" if media_type in HTML_MEDIA_TYPES else ""
        raise FhirResponseError(f"{what}: expected FHIR JSON, got {arrived}{hint}", status=status)
    try:
        # FHIR JSON is UTF-8 (http.html#mime-type); a byte order mark is tolerated.
        body = json.loads(content.removeprefix(codecs.BOM_UTF8).decode("utf-8"))
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
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> FhirClient:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return cls(
            base_url or settings.fhir_base_url,
            allowlist=Allowlist.from_settings(settings),
            auth=auth_from_settings(settings, session),
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
        url = self.url(path, params)
        self._allowlist.check(url)
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
                response = self._session.request(method, url, json=json_body, headers=send_headers, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
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
        self._sleep(delay)

    @staticmethod
    def _error(response: requests.Response, method: str, kind: str) -> FhirError:
        status = response.status_code
        try:
            detail = outcome_text(response.json())
        except ValueError:
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
            for entry in page.get("entry", []):
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    yield resource

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
            url = next((link.get("url") for link in bundle.get("link", []) if link.get("relation") == "next"), None)

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; the server applies all of it or none of it."""
        return self.request_json("POST", "", json_body=bundle, idempotent=False)

    def download(self, url: str, destination: Path, *, authorize: bool = True) -> int:
        """Stream a file (e.g. a Bulk export NDJSON output) to disk; returns bytes written.

        ``authorize=False`` sends no Authorization header: a Bulk manifest with ``requiresAccessToken``
        false names files on a server that does not take our token (e.g. signed storage URLs), which
        must not receive it. The URL must be on the allowlist either way.
        """
        self._allowlist.check(url)
        headers = {"Accept": "application/fhir+ndjson"}
        authorization = self._auth.header() if authorize else None
        if authorization:
            headers["Authorization"] = authorization
        self.requests_made += 1
        try:
            with self._session.get(url, headers=headers, timeout=self._timeout, stream=True) as response:
                if response.status_code >= 400:
                    raise self._error(response, "GET", "bulk output")
                media_type = _media_type(response)
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
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
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
    return [
        str(issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code"))
        for issue in outcome.get("issue", [])
        if issue.get("severity") in ("error", "fatal")
    ]
