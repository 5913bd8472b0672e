"""The FastAPI application: routes, authentication, deadline, errors as OperationOutcome.

``create_app`` wires settings, knowledge and the feedback store into one app; nothing is built at
import. Routes:

- ``GET /cds-services``: discovery (JWT required, like every CDS call)
- ``POST /cds-services/{id}``: one route per service, each with its hook's request model
- ``POST /cds-services/{id}/feedback``: feedback, kept in the state store (``rls_screen.state``)
- ``GET /health`` (liveness) and ``GET /ready`` (knowledge loaded, state store answers); no JWT
- ``GET /rules/...``: the rule documentation cards link to (``rule_pages``); no JWT
- ``GET /metrics``: Prometheus text (``rls_screen.observability``); no JWT, keep it off the public route

Every other path, known or not, needs a JWT, verified by ``AuthenticationMiddleware`` before the
body is read: without a valid token the answer is a bare 401 whatever the body holds.
Every request ends in a CDS Hooks response or a 4xx with an OperationOutcome: validation errors
are 400, unknown paths 404, oversized bodies 413, missing data 412, a bad JWT a bare 401. A last
ASGI guard turns anything unexpected into a 500 OperationOutcome without echoing the error. A call
that outlives RLS_SCREEN_CDS_DEADLINE_MS answers ``{"cards": []}`` and logs why. Logs carry the
service, hook, hookInstance, counts and timings: never tokens, patient ids or clinical values.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Annotated, Any

import requests
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from requests.adapters import HTTPAdapter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rls_screen import __version__
from rls_screen.app.mount import APP_PATH_PREFIX, app_router
from rls_screen.app.settings import AppSettings, get_app_settings
from rls_screen.cds.auth import (
    JwksCache,
    JwtVerifier,
    StoredReplayCache,
    VerifiedClient,
    load_trusted_issuers,
)
from rls_screen.cds.draining import is_draining
from rls_screen.cds.error_handlers import install_error_handlers
from rls_screen.cds.errors import AuthenticationError, CdsError
from rls_screen.cds.feedback import FeedbackStore
from rls_screen.cds.guards import (
    CLIENT_SCOPE_KEY,
    AuthenticationMiddleware,
    BodySizeLimitMiddleware,
    CatchAllMiddleware,
    json_response,
    route_path,
)
from rls_screen.cds.models import (
    CdsResponse,
    Discovery,
    FeedbackRequest,
    HookRequest,
    OperationOutcome,
    OrderSelectRequest,
    OrderSignRequest,
    PatientViewRequest,
)
from rls_screen.cds.orders import load_drug_catalog
from rls_screen.cds.prefetch import FhirAccessConfig
from rls_screen.cds.request_body import CdsRoute
from rls_screen.cds.rule_pages import rule_pages_router
from rls_screen.cds.runtime import CdsRuntime
from rls_screen.cds.services import (
    ORDER_SELECT_SERVICE,
    ORDER_SIGN_SERVICE,
    PATIENT_VIEW_SERVICE,
    SERVICES_BY_ID,
    discovery,
)
from rls_screen.cds.settings import CdsSettings, get_cds_settings
from rls_screen.errors import ConfigurationError
from rls_screen.fhir_client import Allowlist
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.observability import cds_calls
from rls_screen.observability.metrics import exposition
from rls_screen.observability.tracing import TracingMiddleware, configure_tracing
from rls_screen.rescreen.endpoint import PREFIX as RESCREEN_PREFIX
from rls_screen.rescreen.endpoint import mount_rescreen
from rls_screen.rescreen.settings import RescreenSettings
from rls_screen.ruledocs import RuleDocs
from rls_screen.settings import Settings, get_settings
from rls_screen.state import StateDatabase, open_database, state_target

log = logging.getLogger("rls_screen.cds")
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OperationOutcome, "description": text}
    for status, text in (
        (400, "Malformed request (OperationOutcome)"),
        (404, "No such service"),
        (412, "Data needed but not obtainable (CDS Hooks 2.0)"),
        (413, "Request body too large"),
    )
}
ERROR_RESPONSES[401] = {"description": "JWT missing or not acceptable (bare 401, no body)"}
CALL_THREADS = 40
"""Hook calls running at once in a worker process (as many as Starlette's thread pool allows)."""


# --- the app ---------------------------------------------------------------------------------------


def _verifier(settings: CdsSettings, session: requests.Session, state_db: StateDatabase) -> JwtVerifier | None:
    if settings.cds_jku_allowlist.strip():
        raise ConfigurationError(
            "RLS_SCREEN_CDS_JKU_ALLOWLIST is no longer supported: it let one issuer's token name another's keys. "
            "Move each URL into the 'jku' list of the issuer it belongs to in the trusted-issuers file and unset "
            "the variable (docs/cds-hooks.md, 'Migrating from RLS_SCREEN_CDS_JKU_ALLOWLIST')"
        )
    if settings.cds_dev_mode:
        log.warning(
            "cds: DEVELOPMENT MODE - JWT verification is OFF; every caller is trusted. "
            "Never run RLS_SCREEN_CDS_DEV_MODE=true with real patient data."
        )
        return None
    if settings.public_url is None:
        raise ConfigurationError("RLS_SCREEN_PUBLIC_URL is required (a JWT's aud is checked against it)")
    if settings.cds_trusted_issuers_file is None:
        raise ConfigurationError("RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE is required (or enable dev mode)")
    return JwtVerifier(
        issuers=load_trusted_issuers(settings.cds_trusted_issuers_file),
        public_url=settings.public_url,
        jwks_cache=JwksCache(session, settings.cds_jwks_cache_s),
        leeway_s=settings.cds_jwt_leeway_s,
        max_lifetime_s=settings.cds_jwt_max_lifetime_s,
        replay=StoredReplayCache(state_db),  # shared by every worker and replica using this state store
    )


def _session() -> requests.Session:
    """One pooled session for all outgoing reads; it keeps no cookies (calls for different patients share it)."""
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


async def authenticated(request: Request) -> VerifiedClient:
    """The caller, verified by ``AuthenticationMiddleware`` before the body was read."""
    client = request.scope.get(CLIENT_SCOPE_KEY)
    if not isinstance(client, VerifiedClient):  # a route the middleware let through unverified: refuse
        raise AuthenticationError("request reached a route without authentication")
    return client


Client = Annotated[VerifiedClient, Depends(authenticated)]


def create_app(
    settings: CdsSettings | None = None,
    base_settings: Settings | None = None,
    *,
    knowledge: Knowledge | None = None,
    clock: Callable[[], datetime] | None = None,
    app_settings: AppSettings | None = None,
    rescreen_settings: RescreenSettings | None = None,
) -> FastAPI:
    """Build the service; every dependency may be injected (tests pass their own settings and clock)."""
    settings = settings or get_cds_settings()
    base_settings = base_settings or get_settings()
    knowledge = knowledge or load_knowledge(base_settings.conceptmap_dir)
    session = _session()
    # RLS_SCREEN_STATE_URL (PostgreSQL for replicas), else the one-host file: one pool per worker process.
    default_file = settings.feedback_db_path(base_settings.state_dir)
    state_db = open_database(
        state_target(base_settings.state_url_text(), default_file), pool_size=settings.cds_state_pool_size
    )
    verifier = _verifier(settings, session, state_db)
    salt = settings.cds_subject_salt.get_secret_value() if settings.cds_subject_salt else "rls-screen"
    if settings.cds_subject_salt is None and not settings.cds_dev_mode:
        log.warning(
            "cds: RLS_SCREEN_CDS_SUBJECT_SALT is not set; patient keys in the feedback database use a default salt"
        )
    deadline = min(settings.cds_deadline_ms / 1000, 60.0)
    call_threads = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="cds-call")
    runtime = CdsRuntime(
        knowledge=knowledge,
        settings=settings,
        store=FeedbackStore(state_db, salt=salt),
        access_config=FhirAccessConfig(
            allowlist=Allowlist.from_settings(base_settings),
            session=session,
            connect_timeout_s=min(base_settings.fhir_connect_timeout_s, deadline),
            read_timeout_s=min(base_settings.fhir_read_timeout_s, deadline),
            max_retries=settings.cds_fhir_max_retries,
            max_pages=base_settings.fhir_max_pages,
        ),
        catalog=load_drug_catalog(knowledge.terminology),
        clock=clock or (lambda: datetime.now(UTC)),
    )
    discovery_body = discovery(knowledge).model_dump(mode="json", exclude_none=True)

    app = FastAPI(
        title="rls-screen CDS Hooks service",
        version=__version__,
        description="CDS Hooks 2.0 services screening RLS patients for treatable secondary causes.",
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry spans would record url.query and validation errors' input values;
        # rls_screen.observability.tracing makes the server span instead, with route and status only.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.router.route_class = CdsRoute  # the routes below decode their JSON bodies with msgspec
    app.state.runtime = runtime
    app.state.verifier = verifier
    smart_app = app_router(
        app_settings or get_app_settings(), base_settings, public_url=settings.public_url, knowledge=knowledge
    )
    if smart_app is not None:
        app.include_router(smart_app)

    install_error_handlers(app, max_body_bytes=settings.cds_max_body_bytes)

    async def run_call(service_id: str, body: HookRequest, client: VerifiedClient) -> Response:
        started = cds_calls.call_started(service_id, body.hook, str(body.hook_instance))
        deadline_at = time.monotonic() + deadline
        # In a thread of the call pool, with this call's context (its hookInstance on the logs, its span):
        # an executor's future costs about half of anyio's thread hop (issue 18), and at the deadline
        # it is dropped at once while the thread finishes on its own.
        context = contextvars.copy_context()
        work = asyncio.get_running_loop().run_in_executor(
            call_threads, context.run, runtime.call, service_id, body, client, deadline_at
        )
        try:
            outcome = await asyncio.wait_for(work, timeout=deadline)
        except Exception as error:
            # Past the deadline the answer is "no cards", whatever the worker ran into on its way
            # there (a read cut short by the deadline, a 412 it would have given): the EHR asked for
            # an answer in time, and a late error is worth no more than a late card.
            if not isinstance(error, TimeoutError) and time.monotonic() < deadline_at:
                cds_calls.call_refused(service_id, started, error.status if isinstance(error, CdsError) else 500)
                raise
            cds_calls.call_past_deadline(service_id, started)
            log.warning(
                "cds: %s hook_instance=%s passed the %d ms deadline: answered no cards",
                service_id,
                body.hook_instance,
                settings.cds_deadline_ms,
            )
            return json_response({"cards": []})
        elapsed_ms = (time.perf_counter() - started) * 1000
        cds_calls.call_answered(service_id, started, outcome.response.cards, outcome.suppressed)
        log.info(
            "cds: %s %s hook_instance=%s cards=%d suppressed=%d data=%s fhir_requests=%d in %.0f ms",
            service_id,
            body.hook,
            body.hook_instance,
            len(outcome.response.cards),
            outcome.suppressed,
            ",".join(f"{k}:{v}" for k, v in sorted(outcome.sources.items())) or "-",
            outcome.fhir_requests,
            elapsed_ms,
        )
        return json_response(outcome.response.model_dump(mode="json", exclude_none=True))

    # --- routes ---------------------------------------------------------------------------------

    @app.get("/cds-services", response_model=Discovery, responses=ERROR_RESPONSES, tags=["CDS Hooks"])
    async def get_discovery(client: Client) -> Response:
        return json_response(discovery_body)

    @app.post(
        f"/cds-services/{PATIENT_VIEW_SERVICE}",
        response_model=CdsResponse,
        responses=ERROR_RESPONSES,
        tags=["CDS Hooks"],
        summary=SERVICES_BY_ID[PATIENT_VIEW_SERVICE].title,
    )
    async def patient_view(body: PatientViewRequest, client: Client) -> Response:
        return await run_call(PATIENT_VIEW_SERVICE, body, client)

    @app.post(
        f"/cds-services/{ORDER_SELECT_SERVICE}",
        response_model=CdsResponse,
        responses=ERROR_RESPONSES,
        tags=["CDS Hooks"],
        summary=SERVICES_BY_ID[ORDER_SELECT_SERVICE].title,
    )
    async def order_select(body: OrderSelectRequest, client: Client) -> Response:
        return await run_call(ORDER_SELECT_SERVICE, body, client)

    @app.post(
        f"/cds-services/{ORDER_SIGN_SERVICE}",
        response_model=CdsResponse,
        responses=ERROR_RESPONSES,
        tags=["CDS Hooks"],
        summary=SERVICES_BY_ID[ORDER_SIGN_SERVICE].title,
    )
    async def order_sign(body: OrderSignRequest, client: Client) -> Response:
        return await run_call(ORDER_SIGN_SERVICE, body, client)

    def feedback_route(service_id: str) -> Callable[[FeedbackRequest, VerifiedClient], Awaitable[Response]]:
        async def post_feedback(body: FeedbackRequest, client: Client) -> Response:
            outcome = await run_in_threadpool(runtime.feedback, service_id, client, body)
            ignored = ", ".join(f"{reason}: {n}" for reason, n in sorted(outcome.ignored.items()))
            log.info(
                "cds: feedback for %s: %d item(s) stored, %d ignored%s",
                service_id,
                outcome.recorded,
                sum(outcome.ignored.values()),
                f" ({ignored})" if ignored else "",
            )
            # 200 {} whether or not an item was recorded: CDS Hooks expects 200, and the same answer for
            # a foreign card as for a made-up one tells a caller nothing about other clients' cards.
            return json_response({})

        return post_feedback

    for service_id in SERVICES_BY_ID:
        app.add_api_route(
            f"/cds-services/{service_id}/feedback",
            feedback_route(service_id),
            methods=["POST"],
            responses=ERROR_RESPONSES,
            tags=["CDS Hooks"],
            summary=f"Feedback on {service_id} cards",
        )

    app.include_router(rule_pages_router(RuleDocs.load()))

    @app.get("/health", tags=["Operations"])
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/metrics", tags=["Operations"], include_in_schema=False)
    async def metrics() -> Response:
        body, media_type = exposition()  # every worker's figures, in multiprocess mode
        return Response(body, media_type=media_type)

    @app.get("/ready", tags=["Operations"])
    async def ready() -> Response:
        if is_draining():  # SIGTERM received: out of the load balancer's rotation before the socket closes
            return json_response({"status": "draining", "checks": {}}, 503)
        database = await run_in_threadpool(state_db.ping)
        checks = {
            "knowledge": f"rule set {knowledge.ruleset.version}",
            "state-store": f"ok ({state_db.dialect})" if database else "unavailable",
            "jwt": "dev mode (verification off)" if verifier is None else "verifying",
        }
        return json_response(
            {"status": "ready" if database else "not ready", "checks": checks}, 200 if database else 503
        )

    # Outermost last: CORS answers preflights before anything else; the catch-all wraps the rest;
    # the JWT is verified before the body size is counted or the body parsed.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.cds_max_body_bytes)
    # Re-screen on FHIR Subscription notifications (docs/subscriptions.md): routes with their own secret.
    rescreen = mount_rescreen(app, base_settings=base_settings, knowledge=knowledge, settings=rescreen_settings)
    app.state.rescreen = rescreen
    app.state.state_db = state_db  # closed on shutdown by whoever owns the lifespan (one pool per worker)
    own_auth = ((APP_PATH_PREFIX,) if smart_app else ()) + ((RESCREEN_PREFIX,) if rescreen is not None else ())
    app.add_middleware(AuthenticationMiddleware, verifier=verifier, own_auth_prefixes=own_auth)
    app.add_middleware(CatchAllMiddleware)
    if configure_tracing():  # RLS_SCREEN_OTLP_ENDPOINT set: the server span wraps everything but CORS
        known = frozenset(getattr(route, "path", "") for route in app.routes)
        app.add_middleware(
            TracingMiddleware, route_of=lambda scope: p if (p := route_path(scope)) in known else "other"
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    log.info("cds: %d services ready (rule set %s)", len(SERVICES_BY_ID), knowledge.ruleset.version)
    return app
