"""URLs the module may call: one parse, one normal form, a comparison by path segment, the allowlist.

Every URL compared with the allowlist (its own entries, a CDS call's ``fhirServer``, each request
URL and Bundle next link of ``FhirClient``, JWK Set URLs) goes through ``normalise`` first. Refusing
is safer than resolving: a server, a proxy and our parser may each read ``..``, ``%2e%2e``, ``..;``,
``a\\b`` or ``user@host`` differently (RFC 3986 sections 5.2.4 and 7.3), so such URLs are refused,
not cleaned, and the URL that is sent is the normal form that was checked.

``normalise`` refuses with ``UnsafeUrlError`` (a ``ServerNotAllowedError`` and a ``ValueError``):

- anything but ``http``/``https``, no host, userinfo, a malformed port or host, a percent sign in
  the host;
- a backslash, whitespace, a control or a non-ASCII character anywhere (IDN hosts: use punycode);
- a dot segment (``.``, ``..``), raw or percent-encoded in any case, also with ``;parameters``;
- an empty segment (``//``) other than a trailing slash, and an encoded ``/``, ``\\`` or NUL in a
  segment.

The normal form lower-cases scheme and host, drops the default port and the fragment, and keeps the
path segments and query as given. ``is_under(base, url)`` compares scheme, host, port and then whole
path segments: ``https://a/fhir`` holds ``https://a/fhir/Patient/1``, not ``https://a/fhirevil/x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from rls_screen.errors import ConfigurationError, ServerNotAllowedError, UnsafeUrlError

if TYPE_CHECKING:
    from rls_screen.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 reg-name restricted to what DNS and container names use (underscore: compose service names).
_HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")
# Visible ASCII only: no space, control, DEL, non-ASCII (which parsers and servers decode differently).
_SAFE_CHARS = re.compile(r"[\x21-\x7e]*")
_DOT_SEGMENTS = frozenset({".", ".."})


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int | None
    """None for the scheme's default port."""
    segments: tuple[str, ...]
    trailing_slash: bool
    query: str

    def text(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        path = "".join(f"/{segment}" for segment in self.segments)
        if self.trailing_slash:
            path += "/"
        return f"{self.scheme}://{self.host}{port}{path}" + (f"?{self.query}" if self.query else "")


def _refuse(reason: str) -> UnsafeUrlError:
    return UnsafeUrlError(f"refusing a URL with {reason}; no request was sent")


def _host(hostname: str | None, netloc: str) -> str:
    if "@" in netloc:
        raise _refuse("userinfo (user@host)")
    if "%" in netloc:
        raise _refuse("a percent-encoded host")
    if not hostname:
        raise _refuse("no host")
    if ":" in hostname:  # urlsplit removed the brackets of an IPv6 literal
        try:
            return f"[{ip_address(hostname).compressed}]"
        except ValueError:
            raise _refuse("a malformed IPv6 host") from None
    if not _HOST_NAME.fullmatch(hostname):
        raise _refuse("a malformed host name")
    return hostname


def _segment(segment: str) -> str:
    once = unquote(segment)
    for decoded in (once, unquote(once)):  # decoded twice too: some proxies decode before the server does
        # "..;x" is ".." to Tomcat and Jetty, which drop path parameters before resolving dot segments.
        if decoded.split(";", 1)[0] in _DOT_SEGMENTS:
            raise _refuse("a dot segment (., .., or percent-encoded)")
        if any(c in decoded for c in "/\\\x00"):
            raise _refuse("an encoded slash, backslash or NUL in the path")
    return segment


def _parse(url: str) -> _Url:
    if not isinstance(url, str) or not _SAFE_CHARS.fullmatch(url):
        raise _refuse("whitespace, a control or a non-ASCII character")
    if "\\" in url:
        raise _refuse("a backslash")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket
        raise _refuse("a malformed host") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _refuse("a scheme other than http or https")
    host = _host(parts.hostname, parts.netloc)
    try:
        port = parts.port
    except ValueError:
        raise _refuse("a malformed port") from None
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    path = parts.path
    if path and not path.startswith("/"):  # pragma: no cover - urlsplit gives "" or "/..." after a netloc
        raise _refuse("a relative path")
    segments = path.split("/")[1:] if path else []
    trailing_slash = bool(segments) and segments[-1] == ""
    if trailing_slash:
        segments.pop()
    if "" in segments:
        raise _refuse("an empty path segment (//)")
    return _Url(scheme, host, port, tuple(_segment(s) for s in segments), trailing_slash, parts.query)


def normalise(url: str) -> str:
    """The normal form of an absolute http(s) URL (module docstring); ``UnsafeUrlError`` when refused."""
    return _parse(url).text()


def _parse_base(url: str) -> _Url:
    parsed = _parse(url.strip() if isinstance(url, str) else url)
    if parsed.query or "#" in url:
        raise _refuse("a query or fragment in a base URL")
    return _Url(parsed.scheme, parsed.host, parsed.port, parsed.segments, False, "")


def normalise_base(url: str) -> str:
    """A FHIR base URL in normal form without a trailing slash (surrounding spaces of a setting are
    dropped); ``UnsafeUrlError`` when refused, or when it has a query or a fragment."""
    return _parse_base(url).text()


def is_under(base: str, url: str) -> bool:
    """Whether ``url`` is ``base`` or lies under it, segment by segment. Never raises: False when
    either URL is refused by ``normalise`` (or ``base`` by ``normalise_base``)."""
    try:
        parent, child = _parse_base(base), _parse(url)
    except UnsafeUrlError:
        return False
    return (parent.scheme, parent.host, parent.port) == (child.scheme, child.host, child.port) and child.segments[
        : len(parent.segments)
    ] == parent.segments


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url_scheme(url: str) -> None:
    """https, or plain http to a loopback host only; ``ServerNotAllowedError`` otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _refuse("a malformed host") from None
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise ServerNotAllowedError(f"refusing {parts.scheme}://{parts.hostname}: plain http is allowed only for loopback")


@dataclass(frozen=True)
class Allowlist:
    """FHIR base URLs the module may call; a URL is allowed when it lies under one of them (``is_under``).

    The bases are put in normal form when the allowlist is built; a base that ``normalise_base``
    refuses raises ``UnsafeUrlError`` then (``from_settings``: ``ConfigurationError``).
    """

    bases: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "bases", tuple(dict.fromkeys(normalise_base(base) for base in self.bases)))

    @classmethod
    def from_settings(cls, settings: Settings) -> Allowlist:
        entries = [("FHIR_BASE_URL", settings.fhir_base_url)]
        entries += [("RLS_SCREEN_FHIR_ALLOWLIST", u) for u in settings.fhir_allowlist.split(",") if u.strip()]
        bases: list[str] = []
        for name, url in entries:
            try:
                bases.append(normalise_base(url))
            except UnsafeUrlError as error:  # the message names the reason, not the URL (it may hold a password)
                raise ConfigurationError(f"{name}: {error}") from None
        return cls(tuple(bases))

    def allows(self, url: str) -> bool:
        return any(is_under(base, url) for base in self.bases)

    def check(self, url: str) -> None:
        """``ServerNotAllowedError`` (``UnsafeUrlError`` when refused outright) unless ``allows(url)`` and
        the scheme is https or loopback http."""
        normalise(url)  # a refused URL says why
        if not self.allows(url):
            host = urlsplit(url).hostname or "?"
            raise ServerNotAllowedError(
                f"FHIR server at {host} is not on the allowlist (FHIR_BASE_URL, RLS_SCREEN_FHIR_ALLOWLIST); "
                "no request was sent"
            )
        check_base_url_scheme(url)
