"""SMART App Launch 2.0 for the app: discovery, PKCE S256, the authorize URL, the token exchange, the id_token.

Every URL the module calls is checked first: ``iss`` against the FHIR allowlist, the authorization
server's endpoints against RLS_SCREEN_APP_AUTH_SERVERS; redirects are never followed. Discovery
reads ``{iss}/.well-known/smart-configuration`` (SMART 2.0, "Conformance"); only when that answers
404 and the site configured RLS_SCREEN_APP_SMART_CONFIGURATION_URL is that document read instead.
Errors are ``LaunchError`` with a message fit for the user's page and the log: never a token, a
code or a patient id.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests

from rls_screen.errors import RlsScreenError, ServerNotAllowedError
from rls_screen.urls import Allowlist, normalise_base

JSON_HEADERS = {"Accept": "application/json"}
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]


class LaunchError(RlsScreenError):
    """A launch that cannot go on; ``message`` is safe to show and log."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of a smart-configuration document the app uses."""

    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def of(cls, verifier: str) -> Pkce:
        """RFC 7636 section 4.2: S256 challenge = BASE64URL(SHA256(ASCII(verifier)))."""
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))

    @classmethod
    def new(cls) -> Pkce:
        """A 64-character random verifier (43 to 128 allowed) and its challenge."""
        return cls.of(secrets.token_urlsafe(48))


@dataclass(frozen=True)
class TokenAnswer:
    """What the token endpoint granted; the access token stays in the server-side session."""

    access_token: str
    scope: str
    patient: str | None
    id_token: str | None
    expires_in: int | None


@dataclass(frozen=True)
class SmartClient:
    """The app as one OAuth client: its id, secret, the servers it may use and the HTTP session."""

    client_id: str
    client_secret: str | None
    fhir_allowlist: Allowlist
    auth_servers: Allowlist
    session: requests.Session
    fallback_configuration_url: str | None = None
    timeout_s: tuple[float, float] = (3.0, 10.0)

    # --- discovery ------------------------------------------------------------------------------

    def check_iss(self, iss: str) -> str:
        """The FHIR base in normal form, or ``LaunchError`` when it is not an allowlisted FHIR server."""
        try:
            base = normalise_base(iss)
            self.fhir_allowlist.check(base)
        except ServerNotAllowedError:
            raise LaunchError("the launching FHIR server (iss) is not one this app may use", status=403) from None
        return base

    def discover(self, iss: str) -> SmartConfiguration:
        base = self.check_iss(iss)
        status, document = self._get_json(f"{base}/.well-known/smart-configuration", allow_404=True)
        if status == 404 and self.fallback_configuration_url:
            self._check_auth_url(self.fallback_configuration_url, "smart-configuration")
            status, document = self._get_json(self.fallback_configuration_url)
        if status == 404 or document is None:
            raise LaunchError("the FHIR server publishes no SMART configuration", status=502)
        return self._configuration(document)

    def _configuration(self, document: Mapping[str, Any]) -> SmartConfiguration:
        def text(name: str) -> str | None:
            value = document.get(name)
            return value if isinstance(value, str) and value else None

        authorize, token = text("authorization_endpoint"), text("token_endpoint")
        if authorize is None or token is None:
            raise LaunchError("the SMART configuration names no authorization or token endpoint", status=502)
        methods = document.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            # SMART 2.0: servers SHALL support S256; one that does not say so is not used (no plain PKCE).
            raise LaunchError("the authorization server does not support PKCE S256", status=502)
        jwks = text("jwks_uri")
        for url, what in ((authorize, "authorization"), (token, "token"), (jwks, "JWK Set")):
            if url is not None:
                self._check_auth_url(url, what)
        return SmartConfiguration(text("issuer"), authorize, token, jwks)

    def _check_auth_url(self, url: str, what: str) -> None:
        try:
            self.auth_servers.check(url)
        except ServerNotAllowedError:
            raise LaunchError(
                f"the {what} endpoint is not on an allowed authorization server (RLS_SCREEN_APP_AUTH_SERVERS)",
                status=502,
            ) from None

    def _get_json(self, url: str, *, allow_404: bool = False) -> tuple[int, dict[str, Any] | None]:
        try:
            response = self.session.get(url, headers=JSON_HEADERS, timeout=self.timeout_s, allow_redirects=False)
        except requests.RequestException as error:
            raise LaunchError(f"could not reach the server ({type(error).__name__})", status=502) from None
        if allow_404 and response.status_code == 404:
            return 404, None
        if response.status_code != 200:
            raise LaunchError(f"the server answered HTTP {response.status_code}", status=502)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LaunchError("the server's answer is not a JSON object", status=502)
        return 200, body

    # --- authorize and token --------------------------------------------------------------------

    def authorize_url(
        self,
        config: SmartConfiguration,
        *,
        iss: str,
        redirect_uri: str,
        scope: str,
        state: str,
        pkce: Pkce,
        nonce: str | None,
        launch: str | None,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "aud": iss,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        if launch is not None:
            params["launch"] = launch
        if nonce is not None:
            params["nonce"] = nonce
        separator = "&" if "?" in config.authorization_endpoint else "?"
        return f"{config.authorization_endpoint}{separator}{urlencode(params)}"

    def exchange(self, config: SmartConfiguration, *, code: str, redirect_uri: str, pkce: Pkce) -> TokenAnswer:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pkce.verifier,
        }
        auth: tuple[str, str] | None = None
        if self.client_secret is None:
            form["client_id"] = self.client_id
        else:
            auth = (self.client_id, self.client_secret)
        try:
            response = self.session.post(
                config.token_endpoint,
                data=form,
                auth=auth,
                headers=JSON_HEADERS,
                timeout=self.timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise LaunchError(f"the token endpoint could not be reached ({type(error).__name__})", status=502) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error_code = body.get("error") if isinstance(body, dict) else None
            reason = error_code if isinstance(error_code, str) and error_code.isascii() else "no reason given"
            raise LaunchError(f"the authorization server refused the code (HTTP {response.status_code}: {reason[:60]})")
        token = body.get("access_token")
        if not isinstance(token, str) or not token or str(body.get("token_type", "")).lower() != "bearer":
            raise LaunchError("the token answer holds no bearer access token", status=502)
        patient, id_token, expires = body.get("patient"), body.get("id_token"), body.get("expires_in")
        return TokenAnswer(
            access_token=token,
            scope=str(body.get("scope", "")),
            patient=patient if isinstance(patient, str) and patient else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            expires_in=expires if isinstance(expires, int) and not isinstance(expires, bool) else None,
        )

    def id_token_claims(self, config: SmartConfiguration, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The id_token's claims once its signature (the server's JWK Set), issuer, audience and nonce check out."""
        if config.jwks_uri is None or config.issuer is None:
            raise LaunchError("an id_token arrived but the SMART configuration names no issuer or JWK Set", status=502)
        _, keys = self._get_json(config.jwks_uri)
        return check_id_token(id_token, keys or {}, issuer=config.issuer, client_id=self.client_id, nonce=nonce)


def check_id_token(
    id_token: str, jwks: Mapping[str, Any], *, issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The id_token's claims, when signed by a key of ``jwks`` for this issuer and client, with this nonce."""
    try:
        header = jwt.get_unverified_header(id_token)
        key_set = jwt.PyJWKSet.from_dict(dict(jwks))
        candidates = [k for k in key_set.keys if header.get("kid") in (None, k.key_id)]
        if not candidates:
            raise LaunchError("the id_token is signed with a key the server does not publish", status=502)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            candidates[0],
            algorithms=ID_TOKEN_ALGORITHMS,
            audience=client_id,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=60,
        )
    except jwt.PyJWTError as error:
        raise LaunchError(f"the id_token was not accepted ({type(error).__name__})", status=502) from None
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise LaunchError("the id_token's nonce does not match this sign-in", status=400)
    return claims
