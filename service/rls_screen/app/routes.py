"""The app's routes under /app: EHR and standalone launch, the callback, the summary page, the actions.

- ``GET /app/launch?iss=&launch=``: EHR launch (SMART App Launch 2.0); without ``launch``: standalone
  launch on that FHIR server (scope ``launch/patient``). ``GET /app/start``: standalone on FHIR_BASE_URL.
- ``GET /app/callback``: ``state`` taken once and checked against the browser's launch cookie, the
  code exchanged with the PKCE verifier, the id_token's nonce checked; a session cookie is set.
- ``GET /app/summary``: the patient in context; ``POST /app/flags/{id}``, ``POST /app/proposal/{id}``:
  the user's actions (CSRF token checked); ``POST /app/logout``.

Every answer carries the security headers of ``pages.security_headers`` (CSP without script). Log
lines name the route and the outcome only: never a token, a code, a state or a patient id.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, urlsplit

import requests
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from rls_screen.app import actions, pages
from rls_screen.app.sessions import PendingLaunch, SessionStore, UserSession
from rls_screen.app.settings import AppSettings
from rls_screen.app.smart import LaunchError, Pkce, SmartClient
from rls_screen.app.summary import read_summary
from rls_screen.errors import FhirError
from rls_screen.fhir_client import BearerAuth, FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.urls import Allowlist, is_loopback

log = logging.getLogger("rls_screen.app")
LAUNCH_COOKIE = "rls_app_launch"
SESSION_COOKIE = "rls_app_session"
PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class AppContext:
    """What the routes share for the life of the process."""

    settings: AppSettings
    public_url: str
    default_iss: str
    smart: SmartClient
    store: SessionStore
    knowledge: Knowledge
    fhir_allowlist: Allowlist
    session: requests.Session
    today: Callable[[], date]
    clock: Callable[[], float]

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/app/callback"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies except on a loopback http URL (development and tests)."""
        parts = urlsplit(self.public_url)
        return not (parts.scheme == "http" and is_loopback(parts.hostname))

    def fhir(self, user: UserSession) -> FhirClient:
        """The FHIR server the user launched from, with the user's own token (never the module's)."""
        return FhirClient(
            user.iss,
            allowlist=self.fhir_allowlist,
            auth=BearerAuth(user.access_token),
            session=self.session,
            max_retries=1,
        )


def create_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/app", tags=["SMART app"])
    headers = pages.security_headers(ctx.settings.frame_ancestors)

    def page(status: int, body: str, *, title: str = "RLS workup summary") -> HTMLResponse:
        return HTMLResponse(pages.layout(title, body), status_code=status, headers=headers)

    def problem(error: LaunchError) -> HTMLResponse:
        log.info("app: launch refused (%d): %s", error.status, error.message)
        return page(error.status, pages.problem(error.message), title="The app could not start")

    def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            secure=ctx.secure_cookies,
            samesite="lax",  # sent on the authorization server's redirect back (a top-level GET)
            path="/app",
        )

    def start(iss: str, launch: str | None) -> Response:
        if launch is not None and not (0 < len(launch) <= 2048 and launch.isascii() and launch.isprintable()):
            raise LaunchError("the launch parameter is not acceptable")
        config = ctx.smart.discover(iss)
        base = ctx.smart.check_iss(iss)
        scopes = ctx.settings.scope.split()
        scopes.insert(0, "launch" if launch is not None else "launch/patient")
        state, browser_key, pkce = SessionStore.new_key(), SessionStore.new_key(), Pkce.new()
        nonce = SessionStore.new_key() if "openid" in scopes else None
        ctx.store.add_launch(
            state,
            PendingLaunch(
                iss=base,
                config=config,
                pkce=pkce,
                nonce=nonce,
                browser_key=browser_key,
                standalone=launch is None,
                expires_at=ctx.clock() + ctx.settings.launch_ttl_s,
            ),
        )
        url = ctx.smart.authorize_url(
            config,
            iss=iss,  # aud is the iss exactly as the EHR sent it (checked above); requests go to its normal form
            redirect_uri=ctx.redirect_uri,
            scope=" ".join(dict.fromkeys(scopes)),
            state=state,
            pkce=pkce,
            nonce=nonce,
            launch=launch,
        )
        response = RedirectResponse(url, status_code=302, headers=headers)
        set_cookie(response, LAUNCH_COOKIE, browser_key, ctx.settings.launch_ttl_s)
        log.info("app: %s launch sent to the authorization server", "standalone" if launch is None else "EHR")
        return response

    @router.get("/launch")
    async def launch(iss: str | None = None, launch: str | None = None) -> Response:
        if not iss:
            return problem(LaunchError("the launch has no iss (the FHIR server)"))
        try:
            return await run_in_threadpool(start, iss, launch)
        except LaunchError as error:
            return problem(error)

    @router.get("/start")
    async def standalone() -> Response:
        try:
            return await run_in_threadpool(start, ctx.default_iss, None)
        except LaunchError as error:
            return problem(error)

    def finish(request: Request, code: str, state: str, iss: str | None) -> Response:
        pending = ctx.store.take_launch(state)
        if pending is None:
            raise LaunchError("this sign-in is unknown, used or expired; launch the app again")
        if iss is not None and pending.config.issuer is not None and iss != pending.config.issuer:
            # RFC 9207: the answer came from another authorization server than the one asked (mix-up)
            raise LaunchError("the sign-in answer came from another authorization server")
        browser_key = request.cookies.get(LAUNCH_COOKIE, "")
        if not secrets.compare_digest(browser_key.encode(), pending.browser_key.encode()):
            raise LaunchError("this sign-in was started in another browser; launch the app again")
        answer = ctx.smart.exchange(pending.config, code=code, redirect_uri=ctx.redirect_uri, pkce=pending.pkce)
        claims = {}
        if pending.nonce is not None:
            if answer.id_token is None:
                raise LaunchError("the authorization server sent no id_token for an openid sign-in", status=502)
            claims = ctx.smart.id_token_claims(pending.config, answer.id_token, nonce=pending.nonce)
        if answer.patient is None or not PATIENT_ID.fullmatch(answer.patient):
            raise LaunchError("the authorization server gave no patient in context", status=502)
        fhir_user, name = claims.get("fhirUser"), claims.get("name")
        user = UserSession(
            iss=pending.iss,
            patient=answer.patient,
            access_token=answer.access_token,
            scope=answer.scope,
            fhir_user=fhir_user if isinstance(fhir_user, str) else None,
            user_name=name if isinstance(name, str) else None,
            csrf_token=SessionStore.new_key(),
            expires_at=ctx.clock() + min(answer.expires_in or ctx.settings.session_ttl_s, ctx.settings.session_ttl_s),
        )
        key = ctx.store.add_session(user)
        response = RedirectResponse(f"{ctx.public_url}/app/summary", status_code=303, headers=headers)
        response.delete_cookie(LAUNCH_COOKIE, path="/app")
        set_cookie(response, SESSION_COOKIE, key, ctx.settings.session_ttl_s)
        log.info("app: signed in (%s launch)", "standalone" if pending.standalone else "EHR")
        return response

    @router.get("/callback")
    async def callback(
        request: Request,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
        iss: str | None = None,
    ) -> Response:
        if error is not None:
            safe = error if error.isascii() and error.replace("_", "").isalnum() else "error"
            return problem(LaunchError(f"the authorization server did not grant access ({safe[:40]})", status=403))
        if not code or not state:
            return problem(LaunchError("the callback has no code or state"))
        try:
            return await run_in_threadpool(finish, request, code, state, iss)
        except LaunchError as failure:
            return problem(failure)

    def signed_in(request: Request) -> UserSession | None:
        return ctx.store.session(request.cookies.get(SESSION_COOKIE))

    @router.get("/summary")
    async def summary(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return page(401, pages.problem("You are not signed in, or the session ended: launch the app again."))
        try:
            data = await run_in_threadpool(read_summary, ctx.fhir(user), user.patient, ctx.knowledge, ctx.today())
        except FhirError as failure:
            log.info("app: summary read failed: %s", type(failure).__name__)
            return page(502, pages.problem("The patient's record could not be read from the FHIR server."))
        return page(200, pages.summary(data, user, ctx.knowledge))

    async def form_user(request: Request) -> tuple[UserSession | None, dict[str, str]]:
        """The signed-in user when the form carries their CSRF token (a form from another site does not)."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        user = signed_in(request)
        csrf = form.get("csrf", "")
        if user is None or not secrets.compare_digest(csrf.encode(), user.csrf_token.encode()):
            return None, form
        return user, form

    @router.post("/flags/{flag_id}")
    async def flag_action(request: Request, flag_id: str) -> Response:
        user, form = await form_user(request)
        if user is None:
            return page(403, pages.problem("The form has expired; open the summary again."))
        action, reason = form.get("action", ""), form.get("reason", "")
        try:
            await run_in_threadpool(actions.change_flag, ctx.fhir(user), user, flag_id, action, reason, ctx.today())
        except actions.ActionError as failure:
            return page(400, pages.problem(failure.message))
        except FhirError as failure:
            log.info("app: flag action failed: %s", type(failure).__name__)
            return page(502, pages.problem("The FHIR server did not accept the change."))
        log.info("app: flag %s by the user", action)
        return RedirectResponse(f"{ctx.public_url}/app/summary", status_code=303, headers=headers)

    @router.post("/proposal/{request_id}")
    async def accept_proposal(request: Request, request_id: str) -> Response:
        user, _ = await form_user(request)
        if user is None:
            return page(403, pages.problem("The form has expired; open the summary again."))
        try:
            await run_in_threadpool(actions.accept_proposal, ctx.fhir(user), user, request_id, ctx.today())
        except actions.ActionError as failure:
            return page(400, pages.problem(failure.message))
        except FhirError as failure:
            log.info("app: proposal action failed: %s", type(failure).__name__)
            return page(502, pages.problem("The FHIR server did not accept the change."))
        log.info("app: iron-studies proposal accepted by the user")
        return RedirectResponse(f"{ctx.public_url}/app/summary", status_code=303, headers=headers)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        user, _ = await form_user(request)
        if user is None:  # no signing out a user from another site's form
            return page(403, pages.problem("The form has expired; open the summary again."))
        ctx.store.end_session(request.cookies.get(SESSION_COOKIE))
        response = page(200, pages.problem("You are signed out of the RLS workup summary."), title="Signed out")
        response.delete_cookie(SESSION_COOKIE, path="/app")
        return response

    @router.get("/app.css")
    async def stylesheet() -> Response:
        return Response(pages.STYLESHEET, media_type="text/css", headers=headers)

    return router
