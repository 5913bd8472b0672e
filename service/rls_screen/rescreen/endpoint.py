"""The notification endpoint of ``rls-screen serve``, and the wiring of queue, workers and FHIR client.

Routes (under ``NOTIFICATION_PATH``; see ``notifications`` for what each shape means):

- ``PUT  /rescreen/notification/{type}/{id}``: an R4 rest-hook delivery of one resource
- ``DELETE /rescreen/notification/{type}/{id}``: a deletion (names no patient; counted and logged)
- ``POST /rescreen/notification``: a Backport IG notification Bundle, or an empty rest-hook ping
- ``GET  /rescreen/queue``: the queue's counts by state (no patient ids)

Every route needs the ``X-Rls-Screen-Secret`` header that ``rls-screen subscribe`` put in the
Subscription, compared in constant time before the body is read: a missing header is 401, a wrong
one 403, each with an OperationOutcome, and nothing is queued. (These paths are not behind the CDS
JWT middleware: the FHIR server, not an EHR's CDS client, calls them.) A notification is answered
as soon as it is queued; the re-screen follows after the debounce. Never logged: the secret, the
body, patient ids.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rls_screen.errors import RlsScreenError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.rescreen import notifications
from rls_screen.rescreen.queue import RescreenQueue, StateRescreenQueue, Timing, rescreen_state_target
from rls_screen.rescreen.settings import RescreenSettings, get_rescreen_settings
from rls_screen.rescreen.worker import RescreenWorkers, RetryPolicy
from rls_screen.scopes import scopes_for
from rls_screen.screening import screen_patient
from rls_screen.settings import Settings

SECRET_HEADER = "X-Rls-Screen-Secret"  # noqa: S105 - the header's name, not a secret
PREFIX = "/rescreen/"
NOTIFICATION_PATH = "/rescreen/notification"
MAX_REFERENCES = 20
"""``id-only`` entries read per notification; more is not a notification a FHIR server sends."""
FHIR_JSON = "application/fhir+json"
log = logging.getLogger("rls_screen.rescreen")


def _outcome(status: int, code: str, text: str, severity: str = "error") -> Response:
    # Built here, not with rls_screen.cds.errors: the CDS app imports this module (no import cycle).
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}
    return Response(orjson.dumps(outcome), status_code=status, media_type=FHIR_JSON)


def secret_matches(given: list[bytes], secret: str) -> bool:
    """Exactly one header, equal to the secret (constant time: the comparison tells nothing about how close)."""
    return len(given) == 1 and hmac.compare_digest(given[0], secret.encode())


@dataclass
class Rescreen:
    """What ``mount_rescreen`` built, for the app and for tests."""

    queue: RescreenQueue
    workers: RescreenWorkers
    client: FhirClient


def _screen_with(client: FhirClient, knowledge: Knowledge) -> Any:
    def screen(patient_id: str) -> bool:
        # As `rls-screen screen` does: today's date, the time of the write to the second.
        result = screen_patient(
            client,
            patient_id,
            knowledge=knowledge,
            as_of=date.today(),
            recorded=datetime.now(UTC).replace(microsecond=0),
        )
        return result.written

    return screen


def mount_rescreen(
    app: FastAPI,
    *,
    base_settings: Settings,
    knowledge: Knowledge,
    settings: RescreenSettings | None = None,
) -> Rescreen | None:
    """Add the notification routes and the workers (started with the app) when a secret is set; else None."""
    settings = settings or get_rescreen_settings()
    if settings.secret is None:
        return None
    secret = settings.secret.get_secret_value()
    timing = Timing(settings.debounce_s, settings.max_wait_s, settings.lease_s)
    queue = StateRescreenQueue(rescreen_state_target(settings, base_settings), timing, clock=time.time)
    client = FhirClient.from_settings(base_settings, scopes=scopes_for(write=True))
    workers = RescreenWorkers(
        queue,
        _screen_with(client, knowledge),
        workers=settings.workers,
        retry=RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
    )

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        workers.start()  # patients queued before a restart are screened now
        try:
            yield
        finally:
            await run_in_threadpool(workers.stop)
            client.close()

    router = APIRouter(prefix=NOTIFICATION_PATH.rsplit("/", 1)[0], tags=["Re-screen"], lifespan=lifespan)

    def refused(request: Request) -> Response | None:
        given = [value for name, value in request.scope.get("headers", []) if name == SECRET_HEADER.lower().encode()]
        if not given:
            log.info("rescreen: 401 (no %s header)", SECRET_HEADER)
            return _outcome(401, "login", f"the {SECRET_HEADER} header is required")
        if not secret_matches(given, secret):
            log.warning("rescreen: 403 (wrong %s)", SECRET_HEADER)
            return _outcome(403, "forbidden", "the notification secret is not accepted")
        return None

    async def queued(found: notifications.Notification) -> Response:
        if found.references:
            found = await run_in_threadpool(_read_references, client, found)
        count = await run_in_threadpool(queue.note, found.patient_ids) if found.patient_ids else 0
        if count:
            workers.wake()
        log.info("rescreen: notification: %d patient(s) queued, %d resource(s) name no patient", count, found.unlinked)
        return _outcome(200, "informational", f"{count} patient(s) queued for re-screening", "information")

    async def body_json(request: Request) -> Any:
        body = await request.body()
        return orjson.loads(body) if body.strip() else None

    @router.put("/notification/{resource_type}/{resource_id}", summary="R4 rest-hook delivery of one resource")
    async def put_resource(request: Request, resource_type: str, resource_id: str) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            resource = await body_json(request)
        except orjson.JSONDecodeError:
            return _outcome(400, "structure", "the body is not valid JSON")
        return await queued(notifications.from_resource(resource, client.base_url))

    @router.post("/notification", summary="Backport IG notification Bundle, or a rest-hook ping")
    async def post_notification(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = await body_json(request)
        except orjson.JSONDecodeError:
            return _outcome(400, "structure", "the body is not valid JSON")
        if body is None:  # a rest-hook without payload: names no patient (batch --since catches up)
            return _outcome(200, "informational", "notification without content: nothing queued", "information")
        return await queued(notifications.from_resource(body, client.base_url))

    @router.delete("/notification/{resource_type}/{resource_id}", summary="R4 rest-hook deletion")
    async def delete_resource(request: Request, resource_type: str, resource_id: str) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        # A deletion carries no body, so no patient: see docs/subscriptions.md ("Deletions").
        log.warning("rescreen: a %s was deleted; deletions name no patient and are not re-screened", resource_type)
        return _outcome(200, "informational", "deletion noted: names no patient, nothing queued", "information")

    @router.get("/queue", summary="Re-screen queue counts by state")
    async def queue_counts(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        return Response(orjson.dumps(await run_in_threadpool(queue.counts)), media_type="application/json")

    app.include_router(router)
    log.info("rescreen: notification endpoint at %s, %d worker(s)", NOTIFICATION_PATH, settings.workers)
    return Rescreen(queue, workers, client)


def _read_references(client: FhirClient, found: notifications.Notification) -> notifications.Notification:
    """Read the resources of ``id-only`` entries on the configured FHIR server to learn their patient."""
    for reference in found.references[:MAX_REFERENCES]:
        resource_type, _, resource_id = reference.partition("/")
        try:
            patient = notifications.patient_of(client.read(resource_type, resource_id), client.base_url)
        except RlsScreenError as error:
            log.warning("rescreen: could not read an id-only notification entry (%s)", type(error).__name__)
            patient = None
        if patient is None:
            found.unlinked += 1
        else:
            found.add_patient(patient)
    found.unlinked += max(0, len(found.references) - MAX_REFERENCES)
    found.references = []
    return found
