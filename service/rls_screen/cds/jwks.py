"""JWK Sets fetched from the URLs the trusted-issuers file names: cached, refetched once on an unknown kid.

Redirects are never followed (the keys must come from the URL the issuer's entry names); a fetch
failure is an ``AuthenticationError`` (the call is refused, never a 500).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from rls_screen.cds.errors import AuthenticationError
from rls_screen.errors import ServerNotAllowedError
from rls_screen.fhir_client import check_base_url_scheme

JWKS_REFETCH_MIN_INTERVAL_S = 30.0
JWKS_TIMEOUT_S = (2.0, 5.0)


class JwksCache:
    """JWK Sets fetched from URLs, reused for ``ttl_s``; an unknown kid triggers one early refetch."""

    def __init__(self, session: requests.Session, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._session, self._ttl, self._clock = session, ttl_s, clock
        self._sets: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def key(self, url: str, kid: str) -> Mapping[str, Any] | None:
        fetched = self._cached(url)
        if fetched is not None:
            found = find_key(fetched[1], kid)
            if found is not None or self._clock() - fetched[0] < JWKS_REFETCH_MIN_INTERVAL_S:
                return found
        return find_key(self._fetch(url), kid)

    def _cached(self, url: str) -> tuple[float, Mapping[str, Any]] | None:
        with self._lock:
            entry = self._sets.get(url)
        if entry is None or self._clock() - entry[0] > self._ttl:
            return None
        return entry

    def _fetch(self, url: str) -> Mapping[str, Any]:
        try:
            check_base_url_scheme(url)
        except ServerNotAllowedError as error:
            raise AuthenticationError("JWK Set URL is not https") from error
        try:
            # No redirects: the keys must come from the URL the issuer's entry names, not where it points.
            response = self._session.get(
                url, timeout=JWKS_TIMEOUT_S, headers={"Accept": "application/json"}, allow_redirects=False
            )
            if response.status_code != 200:
                raise AuthenticationError(f"JWK Set URL answered HTTP {response.status_code}")
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise AuthenticationError(f"JWK Set could not be fetched ({type(error).__name__})") from error
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise AuthenticationError("JWK Set URL did not return a JWK Set")
        with self._lock:
            self._sets[url] = (self._clock(), body)
        return body


def find_key(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any] | None:
    for key in jwks.get("keys", []):
        if isinstance(key, Mapping) and key.get("kid") == kid:
            return key
    return None
