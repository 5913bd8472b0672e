"""The EHR's FHIR server as one CDS call may use it: allowlisted, with the call's token, under its deadline.

``FhirAccess`` builds the call's ``FhirClient`` on first use (the allowlist checked, the bearer token bound
to ``fhirServer`` alone, timeouts cut to the deadline) or says why it cannot; ``fhir_failure`` turns a
FHIR error into a PHI-free reason for the 412. ``FhirAccessConfig`` is what lives for the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests

from rls_screen.cds.errors import DataUnavailableError, DeadlinePassedError
from rls_screen.errors import (
    FhirAuthError,
    FhirError,
    FhirNotFoundError,
    FhirOperationError,
    FhirRedirectError,
    FhirRequestError,
    FhirResponseError,
    FhirUnavailableError,
    ServerNotAllowedError,
    UnsafeUrlError,
)
from rls_screen.fhir_client import Allowlist, BearerAuth, FhirClient, NoAuth, normalise_base
from rls_screen.urls import is_under

BATCH_REFUSAL_MEMORY_S = 600.0
"""How long a server that refused a batch read is read key by key before batch is tried again."""


@dataclass(frozen=True)
class FhirAccessConfig:
    """What the service allows when it reads from an EHR's FHIR server."""

    allowlist: Allowlist
    session: requests.Session
    connect_timeout_s: float
    read_timeout_s: float
    max_retries: int
    max_pages: int
    batch_refused_by: dict[str, float] = field(default_factory=dict)
    """Server (normalised base URL) -> when (time.monotonic()) it refused a batch: read key by key
    until BATCH_REFUSAL_MEMORY_S has passed, then batch is tried again (the server may have changed)."""


class FhirAccess:
    """A FhirClient for this call's ``fhirServer``, built on first use; why not, when it cannot be."""

    def __init__(
        self,
        config: FhirAccessConfig,
        fhir_server: str | None,
        token: str | None,
        deadline_at: float | None = None,
    ) -> None:
        self._config, self._server, self._token = config, fhir_server, token
        self._deadline_at = deadline_at  # time.monotonic() at which the EHR gets {"cards": []} instead
        self._client: FhirClient | None = None
        self._unavailable: str | None = None

    @property
    def server(self) -> str | None:
        """fhirServer in normal form; None when there is none or ``normalise_base`` refuses it."""
        if not self._server:
            return None
        try:
            return normalise_base(self._server)
        except UnsafeUrlError:
            return None

    def is_on_server(self, url: str) -> bool:
        """Whether ``url`` lies under this call's fhirServer (segment by segment, in normal form)."""
        server = self.server
        return server is not None and is_under(server, url)

    @property
    def max_pages(self) -> int:
        return self._config.max_pages

    @property
    def may_batch(self) -> bool:
        if self.server is None:
            return False
        refused_at = self._config.batch_refused_by.get(self.server)
        return refused_at is None or time.monotonic() - refused_at > BATCH_REFUSAL_MEMORY_S

    def refuses_batch(self) -> None:
        if self.server is not None:
            self._config.batch_refused_by[self.server] = time.monotonic()

    @property
    def requests_made(self) -> int:
        """FHIR requests sent for this call (for the log and the benchmark)."""
        return self._client.requests_made if self._client is not None else 0

    def check_deadline(self) -> None:
        """An abandoned call sends no further request to the EHR's server (its answer went out empty)."""
        if self._deadline_at is not None and time.monotonic() >= self._deadline_at:
            raise DeadlinePassedError("the call's deadline has passed: no further FHIR reads")

    def client(self, why: str) -> FhirClient:
        self.check_deadline()
        if self._client is not None:
            return self._client
        if self._unavailable is None:
            server = self.server
            if self._server is None:
                self._unavailable = "no fhirServer was given"
            elif server is None:
                self._unavailable = "fhirServer is refused (dot segments, userinfo or characters a URL should not hold)"
            else:
                try:
                    self._config.allowlist.check(server)
                    self._client = FhirClient(
                        server,
                        # This call's bearer token goes to its fhirServer only: next links, too, must
                        # stay under it, even when they name another server the module may call.
                        allowlist=Allowlist((server,)),
                        auth=BearerAuth(self._token) if self._token else NoAuth(),
                        session=self._config.session,
                        connect_timeout_s=self._config.connect_timeout_s,
                        read_timeout_s=self._config.read_timeout_s,
                        max_retries=self._config.max_retries,
                        max_pages=self._config.max_pages,
                        backoff_s=0.2,
                        deadline_at=self._deadline_at,
                    )
                    return self._client
                except ServerNotAllowedError:
                    self._unavailable = "fhirServer is not on this service's FHIR allowlist"
                except FhirRequestError:
                    self._unavailable = "the access token holds characters an HTTP header cannot carry"
        raise DataUnavailableError(f"{why} is needed, was not prefetched, and cannot be read: {self._unavailable}")


def fhir_failure(error: FhirError) -> str:
    """A PHI-free description (server messages may quote ids, so they are not passed on)."""
    if isinstance(error, FhirAuthError):
        return "the FHIR server refused the access token"
    if isinstance(error, FhirNotFoundError):
        return "the FHIR server does not have it"
    if isinstance(error, FhirUnavailableError):
        return "the FHIR server did not answer in time or failed"
    if isinstance(error, ServerNotAllowedError):
        return "a link pointed outside the allowed FHIR server"
    if isinstance(error, FhirRedirectError):
        return "the FHIR server answered with a redirect, which is not followed"
    if isinstance(error, FhirRequestError):
        return "the request could not be sent (the access token holds characters an HTTP header cannot carry)"
    if isinstance(error, FhirResponseError):
        return "the FHIR server's answer is not the FHIR JSON asked for"
    if isinstance(error, FhirOperationError):
        return f"the FHIR server rejected the request (HTTP {error.status or '4xx'})"
    return "reading from the FHIR server failed"
