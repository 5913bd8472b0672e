"""Builds the app's router for ``rls-screen serve`` when RLS_SCREEN_APP_CLIENT_ID is set.

The app needs RLS_SCREEN_PUBLIC_URL (its redirect URI is ``{public_url}/app/callback``, the EHR
launch URL ``{public_url}/app/launch``) and at least one allowed authorization server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from http.cookiejar import DefaultCookiePolicy

import requests
from fastapi import APIRouter

from rls_screen.app.routes import AppContext, create_router
from rls_screen.app.sessions import SessionStore
from rls_screen.app.settings import AppSettings
from rls_screen.app.smart import SmartClient
from rls_screen.errors import ConfigurationError, UnsafeUrlError
from rls_screen.knowledge import Knowledge
from rls_screen.settings import Settings
from rls_screen.urls import Allowlist, normalise_base

APP_PATH_PREFIX = "/app/"
"""Paths of the app: signed in by the SMART launch and the session cookie, not by a CDS Hooks JWT."""


def _auth_servers(settings: AppSettings) -> Allowlist:
    try:
        bases = tuple(normalise_base(u) for u in settings.auth_servers.split(",") if u.strip())
    except UnsafeUrlError as error:
        raise ConfigurationError(f"RLS_SCREEN_APP_AUTH_SERVERS: {error}") from None
    if not bases:
        raise ConfigurationError("RLS_SCREEN_APP_AUTH_SERVERS is required when the SMART app is on")
    return Allowlist(bases)


def app_router(
    settings: AppSettings,
    base_settings: Settings,
    *,
    public_url: str | None,
    knowledge: Knowledge,
    today: Callable[[], date] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter | None:
    """The router, or None when the app is off (no client id)."""
    if not settings.client_id:
        return None
    if public_url is None:
        raise ConfigurationError("RLS_SCREEN_PUBLIC_URL is required when the SMART app is on (its redirect URI)")
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # one session serves every user
    fhir_allowlist = Allowlist.from_settings(base_settings)
    smart = SmartClient(
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value() if settings.client_secret else None,
        fhir_allowlist=fhir_allowlist,
        auth_servers=_auth_servers(settings),
        session=session,
        fallback_configuration_url=settings.smart_configuration_url,
        timeout_s=(base_settings.fhir_connect_timeout_s, min(base_settings.fhir_read_timeout_s, 15.0)),
    )
    context = AppContext(
        settings=settings,
        public_url=public_url,
        default_iss=normalise_base(base_settings.fhir_base_url),
        smart=smart,
        store=SessionStore(clock=clock),
        knowledge=knowledge,
        fhir_allowlist=fhir_allowlist,
        session=session,
        today=today or (lambda: datetime.now(UTC).date()),
        clock=clock,
    )
    return create_router(context)
