"""The ASGI guards in front of the CDS routes, outermost first: the catch-all (anything unexpected is a 500
OperationOutcome), the JWT check (before a byte of the body is read), the body size limit; and the few
response helpers they and the routes share.

``OPEN_PATHS`` and ``OPEN_PREFIXES`` are the only paths answered without a JWT (docs/threat-model.md,
"Paths that do not take a CDS JWT"); routes that authenticate their caller themselves (the SMART app's
session cookie, the FHIR server's notification secret) are passed as ``own_auth_prefixes``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rls_screen.cds.auth import DEV_MODE_CLIENT, JwtVerifier, VerifiedClient
from rls_screen.cds.errors import AuthenticationError, operation_outcome
from rls_screen.cds.rule_pages import RULES_PREFIX
from rls_screen.observability import cds_calls

FHIR_JSON = "application/fhir+json"
log = logging.getLogger("rls_screen.cds")


def json_response(content: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=media_type)


def outcome_response(status: int, code: str, diagnostics: str) -> Response:
    return json_response(operation_outcome(code, diagnostics), status, FHIR_JSON)


def unauthorized() -> Response:
    return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})


# --- ASGI guards (outermost first: catch-all, then body size) ---------------------------------------


class CatchAllMiddleware:
    """Anything unexpected becomes a 500 OperationOutcome; the log gets the type and the frames only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:  # the last guard must catch everything
            frames = "".join(traceback.format_tb(error.__traceback__))
            log.error("cds: unhandled %s on %s\n%s", type(error).__name__, scope.get("path", "?"), frames)
            if not started:
                response = outcome_response(500, "exception", "internal error; the service log has details")
                await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """413 with an OperationOutcome for bodies over the limit, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = outcome_response(413, "too-costly", f"request body exceeds {self.max_bytes} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await outcome_response(400, "invalid", "Content-Length is not a number")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        received = 0

        async def counting_receive() -> Message:
            # A body without Content-Length (chunked) is counted as it arrives; FastAPI re-raises
            # HTTPException from the body read, so this ends as a 413 OperationOutcome.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, counting_receive, send)


OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", RULES_PREFIX})
"""The only paths answered without a JWT; every other path, known or not, needs one (fail closed)."""
OPEN_PREFIXES = (f"{RULES_PREFIX}/",)
"""Path prefixes answered without a JWT: the rule documentation a card links to (read-only, no patient data)."""
CLIENT_SCOPE_KEY = "rls_screen.client"


class AuthenticationMiddleware:
    """Verifies the JWT before the app reads a byte of the body: a bad token is a 401 whatever the body.

    FastAPI parses a route's body (and answers 400 for broken JSON) before the route's dependencies
    run, so a dependency cannot put authentication first; an ASGI layer in front of the router can.
    The verified client travels in the ASGI scope to the ``Client`` dependency of the routes.
    """

    def __init__(self, app: ASGIApp, verifier: JwtVerifier | None, own_auth_prefixes: tuple[str, ...] = ()) -> None:
        self.app, self.verifier = app, verifier
        # Paths whose routes authenticate the caller themselves: the SMART app's pages (its session
        # cookie, when the app is on) and the FHIR server's notifications (their secret header).
        self.own_auth_prefixes = own_auth_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if scope["type"] != "http" or open_path or self._own_auth(path):
            await self.app(scope, receive, send)
            return
        try:
            scope[CLIENT_SCOPE_KEY] = await self._client(scope, path)
        except AuthenticationError as error:
            log.info("cds: 401 on %s: %s", path, error.reason)
            cds_calls.jwt_rejected(error.reason)
            await unauthorized()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _own_auth(self, path: str) -> bool:
        return bool(self.own_auth_prefixes) and path.startswith(self.own_auth_prefixes)

    async def _client(self, scope: Scope, path: str) -> VerifiedClient:
        if self.verifier is None:
            return DEV_MODE_CLIENT
        values = [value for name, value in scope.get("headers", []) if name == b"authorization"]
        if len(values) > 1:
            raise AuthenticationError("more than one Authorization header")
        authorization = values[0].decode("latin-1") if values else None
        # In a worker thread: verifying may fetch a JWK Set.
        return await run_in_threadpool(self.verifier.verify, authorization, path)


def route_path(scope: Scope) -> str:
    """The path as routed (without a proxy's root_path): what follows RLS_SCREEN_PUBLIC_URL."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
