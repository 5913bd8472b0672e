"""The trusted-issuers file (who may call the service, with which keys) and the JWK Set URL normal form.

Read once at start-up; any shape error is a ``ConfigurationError``. A JWK Set URL is compared by
whole-string equality after strict normalisation, and belongs to one issuer only, so a key never
verifies another issuer's tokens (CDS Hooks 2.0, "Trusting CDS Clients").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from rls_screen.errors import ConfigurationError
from rls_screen.fhir_client import is_loopback

MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class TrustedIssuer:
    """One entry of the trusted-issuers file. ``jku_urls`` (normalised) are the only JWK Set URLs a
    token of this issuer may name in ``jku``: its ``jwks_uri`` and its own ``jku`` list, no other's."""

    issuer: str
    jwks: Mapping[str, Any] | None
    jwks_uri: str | None
    jku_urls: frozenset[str] = frozenset()


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
        normalised = [normalised_jwks_url(url) for url in [*urls, *jku]]
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
def normalised_jwks_url(url: str) -> str:
    """A JWK Set URL in one canonical form, compared by equality; ValueError says why it is refused.

    Strict: printable ASCII only; https, or http for a loopback host only; a host name or IP literal;
    no userinfo, query or fragment; no dot segment in the path, raw or percent-encoded (``%2e``),
    nor an encoded slash or backslash that could make one. Scheme and host are lower-cased and a
    default port dropped; the path is kept as written (``/jwks`` and ``/jwks/`` differ).
    """
    if not url or len(url) > MAX_URL_CHARS or not all(0x21 <= ord(char) <= 0x7E for char in url):
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
