"""Verifies the EHR's bearer JWT on every call, as CDS Hooks 2.0 ("Trusting CDS Clients") requires.

Order of checks (cheap and local first, so a forged or stale token costs no JWKS fetch):

1. ``Authorization: Bearer <jwt>`` is present and the JWT has three parts.
2. Header, each field of its one accepted type: ``alg`` the string ES384 or RS384 (never ``none``,
   never HMAC), ``kid`` a string, ``typ`` "JWT" when given, ``jku`` (if any) a string, checked in
   step 4; no ``crit`` or ``b64`` (JWS extensions we do not implement).
3. Claims, unverified yet, each of its one accepted type: ``iss`` a string naming a trusted issuer;
   ``aud`` a string or an array of strings that holds RLS_SCREEN_PUBLIC_URL + the request path;
   ``exp``, ``iat`` and ``nbf`` (if sent) finite numbers between 1970 and 9999 (no NaN, no infinity,
   no 400-digit integer), ``exp`` in the future, ``iat`` not in the future, lifetime bounded, ``nbf``
   passed; ``jti`` a string; ``tenant`` a string when sent.
   Rejecting on these before the signature is safe: nothing is accepted until step 4 passes.
4. The key: ``kid`` in the issuer's own JWK Set: inline or ``jwks_uri`` for a token without
   ``jku``; with ``jku``, only a URL that this issuer's entry names (its ``jwks_uri`` or its ``jku``
   list, compared after strict normalisation), never another issuer's, and never fetched otherwise.
   Fetched sets are cached per URL and refetched once on an unknown ``kid``, redirects not followed.
   The key has the type ``alg`` needs (EC P-384 for ES384, RSA >= 2048 bits for RS384); the signature
   is verified with that one algorithm.
5. ``jti`` replay cache: a (iss, jti) pair is accepted once until its ``exp`` has passed; the service
   keeps it in its SQLite state file, so every uvicorn worker process sees every other's tokens.

Any failure raises ``AuthenticationError`` (``verify`` turns any other exception into one, so no
token can provoke a 500): the API answers a bare 401. The reason goes to the log; the token never does.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from rls_screen.cds.errors import AuthenticationError
from rls_screen.cds.state_db import open_state_db
from rls_screen.errors import ConfigurationError, ServerNotAllowedError
from rls_screen.fhir_client import check_base_url_scheme, is_loopback

# CDS Hooks 2.0: "ES384 and RS384 are RECOMMENDED"; none and symmetric (HMAC) algorithms SHALL NOT be used.
ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384"})
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
MIN_RSA_BITS = 2048
MAX_TOKEN_CHARS = 16384
MAX_CLAIM_CHARS = 2048  # iss, each aud, jku: URLs
MAX_ID_CHARS = 256  # jti, kid, tenant
MAX_AUDIENCES = 20
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: a later exp, iat or nbf is malformed, not far off
JWKS_REFETCH_MIN_INTERVAL_S = 30.0
JWKS_TIMEOUT_S = (2.0, 5.0)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustedIssuer:
    """One entry of the trusted-issuers file. ``jku_urls`` (normalised) are the only JWK Set URLs a
    token of this issuer may name in ``jku``: its ``jwks_uri`` and its own ``jku`` list, no other's."""

    issuer: str
    jwks: Mapping[str, Any] | None
    jwks_uri: str | None
    jku_urls: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VerifiedClient:
    """Who called: the issuer and tenant of a verified JWT (or dev mode's placeholder)."""

    issuer: str
    tenant: str | None = None
    verified: bool = True


# Dev mode has no JWT: every caller is this one fixed local client, so feedback still has a scope.
DEV_MODE_CLIENT = VerifiedClient(issuer="urn:rls-screen:dev-mode", tenant="local", verified=False)


ISSUER_ENTRY_FIELDS = frozenset({"jwks", "jwks_uri", "jku"})


def load_trusted_issuers(path: Path) -> dict[str, TrustedIssuer]:
    """Read the issuer allowlist file; any shape error is a ConfigurationError at start-up.

    An entry: ``jwks`` (an inline JWK Set) or ``jwks_uri`` (where to fetch it), and optionally
    ``jku``, a list of further JWK Set URLs that this issuer's tokens may name in their ``jku``
    header. A URL may belong to one issuer only: a key never verifies another issuer's tokens.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read the trusted issuers file {path} ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"trusted issuers file {path}: not valid JSON ({error.msg})") from error
    if not isinstance(raw, dict) or not raw:
        raise ConfigurationError(f"trusted issuers file {path}: expected a non-empty object keyed by issuer")
    issuers: dict[str, TrustedIssuer] = {}
    owner: dict[str, str] = {}  # JWK Set URL -> the one issuer it belongs to
    for issuer, entry in raw.items():
        trusted = _trusted_issuer(issuer, entry)
        for url in trusted.jku_urls:
            if owner.setdefault(url, issuer) != issuer:
                raise ConfigurationError(
                    f"trusted issuers {owner[url]!r} and {issuer!r} both name the JWK Set URL {url}: "
                    "a key set may belong to one issuer only"
                )
        issuers[issuer] = trusted
    return issuers


def _trusted_issuer(issuer: str, entry: Any) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"trusted issuers file: entry for {issuer!r} is not an object")
    unknown = sorted(set(entry) - ISSUER_ENTRY_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"trusted issuer {issuer!r}: unknown field(s) {', '.join(unknown)} (known: jwks, jwks_uri, jku)"
        )
    jwks, jwks_uri, jku = entry.get("jwks"), entry.get("jwks_uri"), entry.get("jku", [])
    if jwks is not None and jwks_uri is not None:
        raise ConfigurationError(f"trusted issuer {issuer!r}: give one of 'jwks' or 'jwks_uri', not both")
    if jwks is None and jwks_uri is None and not jku:
        raise ConfigurationError(f"trusted issuer {issuer!r}: give 'jwks', 'jwks_uri' or a 'jku' list")
    if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
        raise ConfigurationError(f"trusted issuer {issuer!r}: 'jwks' must be a JWK Set {{'keys': [...]}}")
    if not isinstance(jku, list) or not all(isinstance(url, str) for url in jku):
        raise ConfigurationError(f"trusted issuer {issuer!r}: 'jku' must be a list of URLs")
    if jwks_uri is not None and not isinstance(jwks_uri, str):
        raise ConfigurationError(f"trusted issuer {issuer!r}: 'jwks_uri' must be a URL")
    urls = [jwks_uri] if jwks_uri is not None else []
    try:
        normalised = [_normalised_jwks_url(url) for url in [*urls, *jku]]
    except ValueError as error:
        raise ConfigurationError(f"trusted issuer {issuer!r}: JWK Set URL refused ({error})") from error
    return TrustedIssuer(
        issuer=issuer,
        jwks=jwks,
        jwks_uri=normalised[0] if jwks_uri is not None else None,
        jku_urls=frozenset(normalised),
    )


_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$|^[0-9a-f:.]+$")
_DEFAULT_PORTS = {"https": 443, "http": 80}


# Stricter than rls_screen.urls.normalise on purpose: a JWK Set URL is matched by whole-string equality
# against the trusted-issuers file (never "under" a base), and must be https outside loopback.
def _normalised_jwks_url(url: str) -> str:
    """A JWK Set URL in one canonical form, compared by equality; ValueError says why it is refused.

    Strict: printable ASCII only; https, or http for a loopback host only; a host name or IP literal;
    no userinfo, query or fragment; no dot segment in the path, raw or percent-encoded (``%2e``),
    nor an encoded slash or backslash that could make one. Scheme and host are lower-cased and a
    default port dropped; the path is kept as written (``/jwks`` and ``/jwks/`` differ).
    """
    if not url or len(url) > MAX_CLAIM_CHARS or not all(0x21 <= ord(char) <= 0x7E for char in url):
        raise ValueError("not a URL of printable ASCII characters")
    if "\\" in url or "?" in url or "#" in url:
        raise ValueError("backslash, query or fragment")
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if "@" in parts.netloc:
        raise ValueError("userinfo in the URL")
    if not _HOST.match(host):
        raise ValueError("no host, or not a host name or IP literal")
    if scheme != "https" and not (scheme == "http" and is_loopback(host)):
        raise ValueError("not https (plain http only for loopback)")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError("port is not a number from 0 to 65535") from error
    path = parts.path or "/"
    if re.search(r"%(?:2f|5c)", path, re.IGNORECASE):
        raise ValueError("encoded slash or backslash in the path")
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise ValueError("dot segment in the path")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, path, "", ""))


class JwksCache:
    """JWK Sets fetched from URLs, reused for ``ttl_s``; an unknown kid triggers one early refetch."""

    def __init__(self, session: requests.Session, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._session, self._ttl, self._clock = session, ttl_s, clock
        self._sets: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def key(self, url: str, kid: str) -> Mapping[str, Any] | None:
        fetched = self._cached(url)
        if fetched is not None:
            found = _find_key(fetched[1], kid)
            if found is not None or self._clock() - fetched[0] < JWKS_REFETCH_MIN_INTERVAL_S:
                return found
        return _find_key(self._fetch(url), kid)

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


def _find_key(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any] | None:
    for key in jwks.get("keys", []):
        if isinstance(key, Mapping) and key.get("kid") == kid:
            return key
    return None


class ReplayCache:
    """(iss, jti) pairs seen, kept until their token expires; bounded by the token lifetime cap.

    In memory: right for one process (tests, a single uvicorn worker). Several workers must share
    what they have seen, or a token replayed to another worker would pass: see ``SqliteReplayCache``.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            if now >= self._next_sweep:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
                self._next_sweep = now + 60.0
            key = (issuer, jti)
            previous = self._seen.get(key)
            if previous is not None and previous > now:
                return False
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)


REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS jwt_seen (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
"""


class SqliteReplayCache:
    """The replay cache shared by every worker process of the service, in an SQLite file (WAL).

    One statement decides first use atomically across processes: the insert succeeds for a new
    (iss, jti), or replaces a row whose token has expired; otherwise it changes nothing (a replay).
    About 0.1 ms per call: WAL with synchronous=NORMAL does not sync to disk on every commit (a
    power cut may forget the last few jti, whose tokens expire within minutes anyway).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._db = open_state_db(path, REPLAY_SCHEMA, "JWT replay database")

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            try:
                if now >= self._next_sweep:
                    self._db.execute("DELETE FROM jwt_seen WHERE expires_at <= ?", (now,))
                    self._next_sweep = now + 60.0
                changed = self._db.execute(
                    "INSERT INTO jwt_seen VALUES (?, ?, ?) ON CONFLICT (issuer, jti) DO UPDATE "
                    "SET expires_at = excluded.expires_at WHERE jwt_seen.expires_at <= ?",
                    (issuer, jti, expires_at, now),
                ).rowcount
            except sqlite3.Error as error:
                # Fail closed: without the replay check a token could be used twice.
                raise AuthenticationError(f"replay check unavailable ({type(error).__name__})") from error
        return bool(changed == 1)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM jwt_seen").fetchone()
        return int(count)


@dataclass(frozen=True)
class _Claims:
    """The claims the service relies on, each of its one accepted type (checked before any use)."""

    iss: str
    aud: tuple[str, ...]
    exp: float
    iat: float
    nbf: float | None
    jti: str
    tenant: str | None


def _timestamp(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate (RFC 7519 section 2): a finite number of seconds between 1970 and 9999."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"claim {name} is missing or not a number")
    # Compared before float(): a 400-digit int overflows a float; NaN fails every comparison, so the
    # chained test below is false for NaN and +-Infinity too (json.loads accepts all three).
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthenticationError(f"claim {name} is not a finite time between 1970 and 9999")
    return float(value)


def _string(claims: Mapping[str, Any], name: str, max_chars: int) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise AuthenticationError(f"claim {name} is missing or not a string of 1-{max_chars} characters")
    return value


def _audiences(value: Any) -> tuple[str, ...]:
    """``aud``: one string or a non-empty array of strings (RFC 7519 section 4.1.3)."""
    if isinstance(value, str):
        return (value,)
    if (
        isinstance(value, list)
        and 0 < len(value) <= MAX_AUDIENCES
        and all(isinstance(item, str) and len(item) <= MAX_CLAIM_CHARS for item in value)
    ):
        return tuple(value)
    raise AuthenticationError("claim aud is neither a string nor an array of strings")


def _typed_claims(claims: Mapping[str, Any]) -> _Claims:
    tenant = _string(claims, "tenant", MAX_ID_CHARS) if "tenant" in claims else None
    return _Claims(
        iss=_string(claims, "iss", MAX_CLAIM_CHARS),
        aud=_audiences(claims.get("aud")),
        exp=_timestamp(claims, "exp"),
        iat=_timestamp(claims, "iat"),
        nbf=_timestamp(claims, "nbf") if "nbf" in claims else None,
        jti=_string(claims, "jti", MAX_ID_CHARS),
        tenant=tenant,
    )


class JwtVerifier:
    def __init__(
        self,
        *,
        issuers: Mapping[str, TrustedIssuer],
        public_url: str,
        jwks_cache: JwksCache,
        leeway_s: float,
        max_lifetime_s: float,
        replay: ReplayCache | SqliteReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers, self._public_url = issuers, public_url.rstrip("/")
        self._jwks, self._leeway, self._max_lifetime, self._clock = jwks_cache, leeway_s, max_lifetime_s, clock
        self._replay = replay if replay is not None else ReplayCache()
        self._parsed: dict[tuple[str, str, str, str], jwt.PyJWK] = {}
        self._parsed_lock = threading.Lock()

    def audience_for(self, path: str) -> str:
        return self._public_url + path

    def verify(self, authorization: str | None, path: str) -> VerifiedClient:
        """The caller of a request to ``path``, or AuthenticationError: never any other exception."""
        try:
            return self._verify(authorization, path)
        except AuthenticationError:
            raise
        except Exception as error:
            # Fail closed on what the checks below did not foresee: the input is unauthenticated, so
            # an error it provokes is a refused token (a bare 401), never a 500 that names the error.
            raise AuthenticationError(f"token could not be checked ({type(error).__name__})") from error

    def _verify(self, authorization: str | None, path: str) -> VerifiedClient:
        token = _bearer_token(authorization)
        header = _header(token)
        alg, kid = header["alg"], header["kid"]
        claims = _typed_claims(_unverified_claims(token))
        trusted = self._issuers.get(claims.iss)
        if trusted is None:
            raise AuthenticationError("issuer is not on the trusted-issuers list")
        now = self._clock()
        self._check_times(claims, now)
        self._check_audience(claims.aud, path)
        jwk = self._key(trusted, header, kid, alg)
        try:
            # The signature only: every claim was checked above, with our clock and our types.
            jwt.PyJWS().decode(token, key=jwk, algorithms=[alg])
        except jwt.InvalidTokenError as error:
            raise AuthenticationError(f"signature not valid ({type(error).__name__})") from error
        if not self._replay.first_use(trusted.issuer, claims.jti, claims.exp + self._leeway, now):
            raise AuthenticationError("jti already used (replay)")
        return VerifiedClient(issuer=trusted.issuer, tenant=claims.tenant)

    def _check_times(self, claims: _Claims, now: float) -> None:
        if claims.exp <= now - self._leeway:
            raise AuthenticationError("token expired")
        if claims.iat > now + self._leeway:
            raise AuthenticationError("token issued in the future (iat)")
        if claims.exp - now > self._max_lifetime:
            raise AuthenticationError("token lifetime exceeds the configured maximum")
        if claims.nbf is not None and claims.nbf > now + self._leeway:
            raise AuthenticationError("token not yet valid (nbf)")

    def _check_audience(self, audiences: tuple[str, ...], path: str) -> None:
        if self.audience_for(path) not in [value.rstrip("/") for value in audiences]:
            raise AuthenticationError("aud is not this endpoint's URL")

    def _key(self, trusted: TrustedIssuer, header: Mapping[str, Any], kid: str, alg: str) -> jwt.PyJWK:
        jku = header.get("jku")
        if jku is not None:
            try:
                url = _normalised_jwks_url(jku)
            except ValueError as error:
                raise AuthenticationError(f"jku refused ({error})") from error
            if url not in trusted.jku_urls:  # refused without fetching it
                raise AuthenticationError("jku is not one of the issuer's JWK Set URLs")
            source, raw = url, self._jwks.key(url, kid)
        elif trusted.jwks is not None:
            source, raw = "inline", _find_key(trusted.jwks, kid)
        elif trusted.jwks_uri is not None:
            source, raw = trusted.jwks_uri, self._jwks.key(trusted.jwks_uri, kid)
        else:
            raise AuthenticationError("issuer has no JWK Set for tokens without jku")
        if raw is None:
            raise AuthenticationError("kid not found in the issuer's JWK Set")
        return self._parse_key(trusted.issuer, source, kid, alg, raw)

    def _parse_key(self, issuer: str, source: str, kid: str, alg: str, raw: Mapping[str, Any]) -> jwt.PyJWK:
        cache_key = (issuer, source, kid, alg)  # a parsed key is reused for its own issuer only
        with self._parsed_lock:
            cached = self._parsed.get(cache_key)
        if cached is not None:
            return cached
        if raw.get("alg") not in (None, alg):
            raise AuthenticationError("the key's alg differs from the token's alg")
        if raw.get("use") not in (None, "sig"):
            raise AuthenticationError("the key is not a signing key")
        expected_kty = "EC" if alg == "ES384" else "RSA"
        if raw.get("kty") != expected_kty or (alg == "ES384" and raw.get("crv") != "P-384"):
            raise AuthenticationError("the key type does not fit the token's alg")
        try:
            parsed = jwt.PyJWK(dict(raw), algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as error:
            raise AuthenticationError(f"the key cannot be used ({type(error).__name__})") from error
        if isinstance(parsed.key, RSAPublicKey) and parsed.key.key_size < MIN_RSA_BITS:
            raise AuthenticationError("RSA key shorter than 2048 bits")
        with self._parsed_lock:
            self._parsed[cache_key] = parsed
        return parsed


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthenticationError("bearer token is not a compact JWS")
    return token


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise AuthenticationError(f"JWT header unreadable ({type(error).__name__})") from error
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise AuthenticationError(f"alg of type {type(alg).__name__} not allowed (ES384, RS384 only)")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationError(f"alg {alg[:16]!r} not allowed (ES384, RS384 only)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_ID_CHARS:
        raise AuthenticationError("JWT header kid is missing or not a string")
    typ = header.get("typ", "JWT")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise AuthenticationError("JWT header typ is not JWT")
    if "jku" in header and not (isinstance(header["jku"], str) and len(header["jku"]) <= MAX_CLAIM_CHARS):
        raise AuthenticationError("JWT header jku is not a URL string")
    if "crit" in header or "b64" in header:
        # RFC 7515 section 4.1.11 / RFC 7797: extensions we do not implement must make the token invalid.
        raise AuthenticationError("JWT header names extensions (crit, b64) this service does not support")
    return header


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as error:
        raise AuthenticationError(f"JWT payload unreadable ({type(error).__name__})") from error
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise AuthenticationError(f"JWT lacks required claims: {', '.join(missing)}")
    return claims
