"""How the module authenticates to FHIR servers: none, a static bearer token, SMART Backend Services.

A token is checked before it is used: an Authorization header carries visible ASCII only, so a
token with a line break (header injection) or non-ASCII characters is refused, never sent, never
quoted. The SMART token endpoint is called without following redirects (the signed assertion goes
to the configured URL only).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import jwt
import requests

from rls_screen.errors import (
    ConfigurationError,
    FhirAuthError,
    FhirRequestError,
    FhirResponseError,
    FhirUnavailableError,
    UnsafeUrlError,
)
from rls_screen.fhir_answers import parse_json_object, redirect_error
from rls_screen.scopes import explain_missing, missing_scopes, scopes_for
from rls_screen.settings import Settings
from rls_screen.urls import check_base_url_scheme, normalise

# RFC 6750 section 2.1 allows a b64token; any visible ASCII is accepted (tokens in the wild vary),
# nothing else: a line break would inject a header, non-Latin-1 text makes http.client raise.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def check_token(token: str) -> str:
    """``token`` if it can travel in an Authorization header; ``FhirRequestError`` (never quoting it) if not."""
    if not _TOKEN_CHARS.fullmatch(token):
        raise FhirRequestError(
            "the access token cannot be sent: it holds whitespace, a line break or non-ASCII characters"
        )
    return token


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
        self._token = check_token(token)

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
        needed_scopes: str | None = None,
    ) -> None:
        if algorithm not in self.ALGORITHMS:
            raise ConfigurationError(f"SMART backend auth: algorithm must be RS384 or ES384, not {algorithm}")
        try:
            normalise(token_url)  # refused like a FHIR URL: userinfo, dot segments, ...
        except UnsafeUrlError as error:
            raise ConfigurationError(f"RLS_SCREEN_SMART_TOKEN_URL: {error}") from None
        check_base_url_scheme(token_url)
        self._token_url, self._client_id, self._key = token_url, client_id, private_key_pem
        self._algorithm, self._kid, self._scope = algorithm, key_id, scope
        self._needed = needed_scopes if needed_scopes is not None else scope
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
            # A redirect would carry the signed assertion to a URL nobody configured.
            response = self._session.post(self._token_url, data=form, timeout=self._timeout, allow_redirects=False)
        except requests.exceptions.ContentDecodingError:
            raise FhirResponseError("token request: the body is not in its Content-Encoding") from None
        except requests.RequestException as error:
            raise FhirUnavailableError(f"token endpoint unreachable ({type(error).__name__})") from error
        if 300 <= response.status_code < 400:
            raise redirect_error("token request", response.status_code)
        if response.status_code != 200:
            raise FhirAuthError(_token_refusal(response, self._scope), status=response.status_code)
        body = parse_json_object(response, "token request")
        granted = body.get("scope")
        # RFC 6749 5.1: the scope is in the answer when the grant differs from the request
        missing = missing_scopes(self._needed, granted if isinstance(granted, str) else self._scope)
        if missing:
            raise FhirAuthError(explain_missing(missing))
        token = body.get("access_token")
        if not isinstance(token, str):
            raise FhirAuthError("token response has no access_token")
        try:
            check_token(token)
        except FhirRequestError:
            raise FhirAuthError("token response has an access_token that an HTTP header cannot carry") from None
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


def _token_refusal(response: requests.Response, requested: str) -> str:
    """Why the token endpoint said no: RFC 6749 5.2 ``error`` codes are safe to show (no secrets in them)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if error == "invalid_scope":
        return f"token request refused: the authorization server does not allow the scopes asked for ({requested})"
    if isinstance(error, str) and error.replace("_", "").isalpha():
        return f"token request refused: HTTP {response.status_code} {error}"
    return f"token request refused: HTTP {response.status_code}"


def auth_from_settings(settings: Settings, session: requests.Session, needed_scopes: str | None = None) -> Auth:
    """The auth scheme the settings choose; SMART asks for ``needed_scopes`` unless RLS_SCREEN_SMART_SCOPE
    says otherwise, and the grant must cover ``needed_scopes`` either way."""
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
            scope=settings.smart_scope or needed_scopes or scopes_for(write=True, group=True),
            needed_scopes=needed_scopes or scopes_for(write=True, group=True),
            session=session,
            timeout=(settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s),
        )
    if settings.fhir_bearer_token is not None:
        try:
            return BearerAuth(settings.fhir_bearer_token.get_secret_value())
        except FhirRequestError as error:
            raise ConfigurationError(f"RLS_SCREEN_FHIR_BEARER_TOKEN: {error}") from None
    return NoAuth()
