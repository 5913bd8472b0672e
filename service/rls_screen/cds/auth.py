"""Verifies the EHR's bearer JWT on every call, as CDS Hooks 2.0 ("Trusting CDS Clients") requires.

Order of checks (cheap and local first, so a malformed or untrusted token costs no JWKS fetch):

1. ``Authorization: Bearer <jwt>`` is present and the JWT has three parts.
2. Header, each field of its one accepted type: ``alg`` the string ES384 or RS384 (never ``none``,
   never HMAC), ``kid`` a string, ``typ`` "JWT" (CDS Hooks requires it), ``jku`` (if any) a string, checked in
   step 4; no ``crit`` or ``b64`` (JWS extensions we do not implement).
3. Claims, read once unverified, each of its one accepted type: ``iss`` a string naming a trusted
   issuer; ``aud`` a string or an array of strings; ``exp``, ``iat`` and ``nbf`` (if sent) finite
   numbers between 1970 and 9999 (no NaN, no infinity, no 400-digit integer); ``jti`` a string;
   ``tenant`` a string when sent; and, so that a stale token costs no key fetch, ``exp`` not passed
   and at most the lifetime cap away. Nothing is accepted on these alone.
4. The key (``issuers`` and ``jwks``): ``kid`` in the issuer's own JWK Set: inline or ``jwks_uri``
   for a token without ``jku``; with ``jku``, only a URL that this issuer's entry names, never
   another issuer's, and never fetched otherwise. The key has the type ``alg`` needs (EC P-384 for
   ES384, RSA >= 2048 bits for RS384).
5. One verifying PyJWT decode: the signature with that one algorithm, ``iss``, ``aud`` (holds
   RLS_SCREEN_PUBLIC_URL + the request path), ``exp`` in the future, ``iat`` not in the future,
   ``nbf`` passed, all with the leeway.
6. ``jti`` replay cache (``replay``): a (iss, jti) pair is accepted once until its ``exp`` has passed.

Any failure raises ``AuthenticationError`` (``verify`` turns any other exception into one, so no
token can provoke a 500): the API answers a bare 401. The reason goes to the log; the token never does.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from rls_screen.cds.errors import AuthenticationError
from rls_screen.cds.issuers import TrustedIssuer, load_trusted_issuers, normalised_jwks_url
from rls_screen.cds.jwks import JwksCache, find_key
from rls_screen.cds.replay import ReplayCache, StoredReplayCache

__all__ = [
    "DEV_MODE_CLIENT",
    "JwksCache",
    "JwtVerifier",
    "ReplayCache",
    "StoredReplayCache",
    "TrustedIssuer",
    "VerifiedClient",
    "load_trusted_issuers",
]

# CDS Hooks 2.0: "ES384 and RS384 are RECOMMENDED"; none and symmetric (HMAC) algorithms SHALL NOT be used.
ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384"})
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
MIN_RSA_BITS = 2048
MAX_TOKEN_CHARS = 16384
MAX_CLAIM_CHARS = 2048  # iss, each aud, jku: URLs
MAX_ID_CHARS = 256  # jti, kid, tenant
MAX_AUDIENCES = 20
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: a later exp, iat or nbf is malformed, not far off
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedClient:
    """Who called: the issuer and tenant of a verified JWT (or dev mode's placeholder)."""

    issuer: str
    tenant: str | None = None
    verified: bool = True


# Dev mode has no JWT: every caller is this one fixed local client, so feedback still has a scope.
DEV_MODE_CLIENT = VerifiedClient(issuer="urn:rls-screen:dev-mode", tenant="local", verified=False)


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
        replay: ReplayCache | StoredReplayCache | None = None,
    ) -> None:
        # No injected clock: PyJWT checks exp, iat and nbf against the wall clock, and the lifetime cap
        # and the replay cache must use the same one.
        self._issuers, self._public_url = issuers, public_url.rstrip("/")
        self._jwks, self._leeway, self._max_lifetime = jwks_cache, leeway_s, max_lifetime_s
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
        claims = _typed_claims(_peeked_claims(token))
        trusted = self._issuers.get(claims.iss)
        if trusted is None:
            raise AuthenticationError("issuer is not on the trusted-issuers list")
        # Before the key: a stale token, or one that lives too long, costs no JWK Set fetch. The
        # verifying decode below checks exp again, with iat, nbf and aud.
        now = time.time()
        if claims.exp <= now - self._leeway:
            raise AuthenticationError("token expired")
        if claims.exp - now > self._max_lifetime:
            raise AuthenticationError("token lifetime exceeds the configured maximum")
        jwk = self._key(trusted, header, kid, alg)
        audience = self.audience_for(path)
        try:
            # One verifying decode: the signature with that one algorithm, and iss, aud, exp, iat (not
            # in the future) and nbf with the leeway; the types were checked above, before any use.
            jwt.decode(
                token,
                key=jwk,
                algorithms=[alg],
                audience=[audience, audience + "/"],
                issuer=trusted.issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True, "verify_sub": False},
            )
        except jwt.InvalidTokenError as error:
            raise AuthenticationError(_refusal(error)) from error
        if not self._replay.first_use(trusted.issuer, claims.jti, claims.exp + self._leeway, now):
            raise AuthenticationError("jti already used (replay)")
        return VerifiedClient(issuer=trusted.issuer, tenant=claims.tenant)

    def _key(self, trusted: TrustedIssuer, header: Mapping[str, Any], kid: str, alg: str) -> jwt.PyJWK:
        jku = header.get("jku")
        if jku is not None:
            try:
                url = normalised_jwks_url(jku)
            except ValueError as error:
                raise AuthenticationError(f"jku refused ({error})") from error
            if url not in trusted.jku_urls:  # refused without fetching it
                raise AuthenticationError("jku is not one of the issuer's JWK Set URLs")
            source, raw = url, self._jwks.key(url, kid)
        elif trusted.jwks is not None:
            source, raw = "inline", find_key(trusted.jwks, kid)
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
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.upper() != "JWT":  # required by CDS Hooks 2.0 ("Fixed value: JWT")
        raise AuthenticationError("JWT header typ is missing or not JWT")
    if "jku" in header and not (isinstance(header["jku"], str) and len(header["jku"]) <= MAX_CLAIM_CHARS):
        raise AuthenticationError("JWT header jku is not a URL string")
    if "crit" in header or "b64" in header:
        # RFC 7515 section 4.1.11 / RFC 7797: extensions we do not implement must make the token invalid.
        raise AuthenticationError("JWT header names extensions (crit, b64) this service does not support")
    return header


def _peeked_claims(token: str) -> dict[str, Any]:
    """The payload, not yet verified: read once, for the issuer (which key) and the claims' types."""
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError: ValueError
        raise AuthenticationError(f"JWT payload unreadable ({type(error).__name__})") from error
    if not isinstance(claims, dict):
        raise AuthenticationError("JWT payload unreadable (not a JSON object)")
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise AuthenticationError(f"JWT lacks required claims: {', '.join(missing)}")
    return claims


# PyJWT's refusals in this service's words (the log's reason; the caller only ever sees a bare 401).
_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.InvalidAudienceError, "aud is not this endpoint's URL"),
    (jwt.InvalidIssuerError, "iss is not the issuer whose key verified the token"),
    (jwt.MissingRequiredClaimError, "JWT lacks a required claim"),
    (jwt.InvalidIssuedAtError, "claim iat is not a number"),
)


def _refusal(error: jwt.InvalidTokenError) -> str:
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token issued in the future (iat)" if "(iat)" in str(error) else "token not yet valid (nbf)"
    for kind, reason in _REFUSALS:
        if isinstance(error, kind):
            return reason
    return f"signature not valid ({type(error).__name__})"
