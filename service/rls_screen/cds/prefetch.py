"""The data a call needs: from the prefetch when the EHR sent it, else from the EHR's FHIR server.

CDS Hooks 2.0 ("Providing FHIR Resources to a CDS Service"), per prefetch key:

- absent                   -> the EHR did not fill it: read it from ``fhirServer``
- ``null``                 -> no data exists (an empty list; for the Patient, data unobtainable)
- an OperationOutcome      -> the EHR's prefetch failed: read it from ``fhirServer``
- a Bundle with a next link -> the EHR paginated it: follow the links on ``fhirServer``

Reads use the ``fhirAuthorization`` bearer token, and only when ``fhirServer`` is on the module's
allowlist (FHIR_BASE_URL + RLS_SCREEN_FHIR_ALLOWLIST); next links must lie under that same server,
so the token never travels elsewhere (compared in normal form, by path segment: ``rls_screen.urls``;
redirects are never followed). A Bundle whose ``entry`` or ``link`` is not an array of objects is
an invalid request when the EHR sent it in the prefetch, and data unavailable when a server did.
When data is needed and cannot be had, ``DataUnavailableError`` (HTTP 412) says which and why,
without patient data. Keys are resolved lazily, so a call that needs no labs (a patient without
RLS) never asks for them.

When several keys are missing at once, ``fetch_missing`` reads them in one FHIR ``batch`` request
(one round trip instead of up to four: a patient-view without any prefetch costs two requests, the
Conditions first because a patient without RLS needs nothing else). A server that refuses batch
(4xx on the batch itself) is remembered and read key by key from then on; an entry of the batch
that failed is read again on its own, so its error is reported exactly as without batching.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypeGuard

from rls_screen import bundles
from rls_screen.cds.errors import DataUnavailableError, DeadlinePassedError, InvalidRequestError
from rls_screen.cds.fhir_access import FhirAccess as FhirAccess
from rls_screen.cds.fhir_access import FhirAccessConfig as FhirAccessConfig
from rls_screen.cds.fhir_access import fhir_failure
from rls_screen.contract import (
    CONDITIONS_KEY,
    MEDICATIONS_KEY,
    OBSERVATIONS_KEY,
    PATIENT_KEY,
    PROCEDURES_KEY,
)
from rls_screen.errors import (
    FhirError,
    FhirNotFoundError,
    FhirOperationError,
    FhirResponseError,
)
from rls_screen.knowledge import Knowledge
from rls_screen.references import check_patient

PREFETCH_PAGE_SIZE = "100"
SEARCH_BUNDLE_TYPES = frozenset({"searchset", "collection"})
BATCH_REFUSAL_STATUSES = frozenset({400, 404, 405})
"""Answers to a batch POST that mean "no batch here" (bad request, no such endpoint, method not allowed)."""
Source = Literal["prefetch", "prefetch+pages", "fetched", "fetched-in-batch", "null"]
log = logging.getLogger(__name__)


def prefetch_templates(knowledge: Knowledge) -> dict[str, str]:
    """Every prefetch template the services use, from the data contract (R4 search syntax)."""
    return knowledge.contract.prefetch_templates(PREFETCH_PAGE_SIZE)


def _what(knowledge: Knowledge, key: str) -> str:
    return "the Patient" if key == PATIENT_KEY else knowledge.contract.search_by_key[key].what


@dataclass
class PatientDataResolver:
    """Resolves the data sets of one call (the contract's keys), each at most once."""

    patient_id: str
    prefetch: Mapping[str, Any] | None
    access: FhirAccess
    knowledge: Knowledge
    as_of: date
    sources: dict[str, Source] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    # --- the data sets -----------------------------------------------------------------------

    def patient(self) -> Mapping[str, Any]:
        if PATIENT_KEY in self._cache:
            return dict(self._cache[PATIENT_KEY])
        value = self._prefetched(PATIENT_KEY)
        if value is None and self._has_null(PATIENT_KEY):
            raise DataUnavailableError("the Patient is needed and the prefetch says it does not exist")
        if value is None:
            patient = self._read_patient()
        else:
            if value.get("resourceType") != "Patient":
                raise InvalidRequestError("prefetch 'patient' is not a Patient resource")
            if value.get("id") != self.patient_id:
                raise InvalidRequestError("prefetch 'patient' is not the Patient of context.patientId")
            patient = value
            self.sources[PATIENT_KEY] = "prefetch"
        self._cache[PATIENT_KEY] = patient
        return patient

    def conditions(self) -> list[Mapping[str, Any]]:
        return self._search_key(CONDITIONS_KEY)

    def observations(self) -> list[Mapping[str, Any]]:
        return self._search_key(OBSERVATIONS_KEY)

    def procedures(self) -> list[Mapping[str, Any]]:
        return self._search_key(PROCEDURES_KEY)

    def medications(self) -> list[Mapping[str, Any]] | None:
        """Active MedicationRequests; optional: None when neither prefetched nor readable."""
        try:
            return self._search_key(MEDICATIONS_KEY)
        except DeadlinePassedError:
            raise
        except DataUnavailableError as error:
            log.info("cds: medications not available, aggravating-medication check skipped (%s)", error.message)
            return None

    def fetch_missing(self, keys: Sequence[str]) -> None:
        """Read the keys that will be needed and were not prefetched in one batch request.

        An entry the batch did not deliver is read on its own when it is asked for; a server that
        refuses batch is read key by key; a batch that fails as a whole is a 412 (DataUnavailableError).
        """
        missing = [key for key in keys if self._needs_read(key)]
        if len(missing) < 2 or not self.access.may_batch:
            return
        try:
            client = self.access.client("the data for this call")
        except DeadlinePassedError:
            raise
        except DataUnavailableError:
            return  # said precisely by the key that is asked for first
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": self._query(key)}} for key in missing],
        }
        try:
            answer = client.request_json("POST", "", json_body=batch, idempotent=True)
        except (FhirOperationError, FhirNotFoundError) as error:
            if error.status in BATCH_REFUSAL_STATUSES:  # the server does not do batch here
                log.info("cds: the FHIR server refused a batch read (HTTP %s): reading key by key", error.status)
                self.access.refuses_batch()
            return  # other 4xx (409, 422, ...): this batch only; the keys are read on their own
        except FhirError as error:
            # Unreachable, too slow, token refused, not JSON: reading key by key would fail the same
            # way and spend the deadline doing it. Every batch holds a required key (only the
            # medications are optional, and a batch has two keys or more), so the call cannot go on.
            needed = ", ".join(_what(self.knowledge, key) for key in missing)
            raise DataUnavailableError(f"{needed}: {fhir_failure(error)}") from error
        # R4 http.html#transaction: a batch-response with one entry per request, in request order.
        entries = answer.get("entry") if answer.get("type") == "batch-response" else None
        if not isinstance(entries, list) or len(entries) != len(missing):
            return
        for key, entry in zip(missing, entries, strict=True):
            self._take_batch_entry(key, entry)

    # --- batch reads ------------------------------------------------------------------------------

    def _query(self, key: str) -> str:
        """The relative URL of a key's read (a batch entry's request.url)."""
        if key == PATIENT_KEY:
            return f"Patient/{self.patient_id}"
        contract = self.knowledge.contract
        return contract.rest_query(contract.search_by_key[key], self.patient_id, self.as_of)

    def _needs_read(self, key: str) -> bool:
        return key not in self._cache and not self._has_null(key) and self._prefetched(key) is None

    def _take_batch_entry(self, key: str, entry: Any) -> None:
        """Cache one key from a batch-response entry when it succeeded; otherwise leave it to the lazy read."""
        if not isinstance(entry, Mapping):
            return
        response = entry.get("response")
        status = str(response.get("status", "")) if isinstance(response, Mapping) else ""
        resource = entry.get("resource")
        if not status.startswith("200") or not isinstance(resource, Mapping):
            return
        if key == PATIENT_KEY:
            if resource.get("resourceType") == "Patient" and resource.get("id") == self.patient_id:
                self._cache[PATIENT_KEY] = resource
                self.sources[PATIENT_KEY] = "fetched-in-batch"
            return
        search = self.knowledge.contract.search_by_key[key]
        resource_type, why = search.resource_type, search.what
        if resource.get("resourceType") != "Bundle" or resource.get("type") != "searchset":
            return
        try:
            resources = list(_entries(resource, resource_type))
            if _holds_other_resources(resource, resource_type):
                return  # not this key's answer (a server that reordered the entries): read it on its own
            resources += self._rest_of_pages(key, resource, resource_type, why)
        except DeadlinePassedError:
            raise
        except (DataUnavailableError, FhirResponseError):
            return  # malformed, or a later page failed: the key's own read decides (medications are optional)
        self._cache[key] = resources
        self.sources[key] = "fetched-in-batch"

    # --- mechanics --------------------------------------------------------------------------------

    def _has_null(self, key: str) -> bool:
        return self.prefetch is not None and key in self.prefetch and self.prefetch[key] is None

    def _prefetched(self, key: str) -> Mapping[str, Any] | None:
        """The usable prefetch value, or None when absent, null or an OperationOutcome (failed)."""
        if self.prefetch is None or key not in self.prefetch:
            return None
        value = self.prefetch[key]
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidRequestError(f"prefetch '{key}' is not a FHIR resource")
        if value.get("resourceType") == "OperationOutcome":
            log.info("cds: prefetch '%s' is an OperationOutcome (the EHR's prefetch failed): reading it", key)
            return None
        return value

    def _search_key(self, key: str) -> list[Mapping[str, Any]]:
        search = self.knowledge.contract.search_by_key[key]
        resource_type, why = search.resource_type, search.what
        if key in self._cache:
            return list(self._cache[key])
        if self._has_null(key):
            self.sources[key] = "null"
            resources: list[Mapping[str, Any]] = []
        else:
            value = self._prefetched(key)
            if value is None:
                params = self.knowledge.contract.rest_params(search, self.patient_id, self.as_of)
                resources = self._search(resource_type, params, why)
                self.sources[key] = "fetched"
            else:
                resources = self._from_bundle(key, value, resource_type, why)
        self._cache[key] = resources
        return list(resources)

    def _from_bundle(
        self, key: str, bundle: Mapping[str, Any], resource_type: str, why: str
    ) -> list[Mapping[str, Any]]:
        bundle_type = bundle.get("type", "searchset")
        if (
            bundle.get("resourceType") != "Bundle"
            or not isinstance(bundle_type, str)
            or bundle_type not in SEARCH_BUNDLE_TYPES
        ):
            raise InvalidRequestError(f"prefetch '{key}' is not a searchset Bundle")
        try:
            resources = list(_entries(bundle, resource_type))
            next_url = _next_link(bundle)
        except FhirResponseError as error:  # the EHR's own Bundle: its request is at fault
            raise InvalidRequestError(f"prefetch '{key}': {error}") from None
        if next_url is None:
            self.sources[key] = "prefetch"
            return resources
        resources += self._rest_of_pages(key, bundle, resource_type, why)
        self.sources[key] = "prefetch+pages"
        return resources

    def _rest_of_pages(
        self, key: str, bundle: Mapping[str, Any], resource_type: str, why: str
    ) -> list[Mapping[str, Any]]:
        """The entries of the pages after ``bundle``, read from this call's fhirServer only."""
        try:
            next_url = _next_link(bundle)
        except FhirResponseError as error:
            raise DataUnavailableError(f"{why}: {fhir_failure(error)}") from error
        if next_url is None:
            return []
        client = self.access.client(f"{why} (the rest of a paginated result)")
        resources: list[Mapping[str, Any]] = []
        pages = 1
        try:
            while next_url is not None:
                self.access.check_deadline()
                if not self.access.is_on_server(next_url):
                    raise DataUnavailableError(f"'{key}': a next link points outside fhirServer")
                pages += 1
                if pages > self.access.max_pages:
                    raise DataUnavailableError(f"'{key}': more than {pages - 1} pages")
                page = client.request_json("GET", next_url)
                if not isinstance(page, Mapping) or page.get("resourceType") != "Bundle":
                    raise DataUnavailableError(f"'{key}': a next page is not a Bundle")
                resources.extend(_entries(page, resource_type))
                next_url = _next_link(page)
        except FhirError as error:
            raise DataUnavailableError(f"{why}: {fhir_failure(error)}") from error
        except ValueError as error:
            raise DataUnavailableError(f"{why}: a next page is not JSON") from error
        return resources

    def _search(self, resource_type: str, params: Mapping[str, str], why: str) -> list[Mapping[str, Any]]:
        client = self.access.client(why)
        try:
            return [r for r in client.search(resource_type, params) if r.get("resourceType") == resource_type]
        except FhirError as error:
            raise DataUnavailableError(f"{why}: {fhir_failure(error)}") from error
        except ValueError as error:
            raise DataUnavailableError(f"{why}: the FHIR server's answer is not JSON") from error

    def _read_patient(self) -> Mapping[str, Any]:
        client = self.access.client("the Patient")
        try:
            patient = client.read("Patient", self.patient_id)
        except FhirError as error:
            raise DataUnavailableError(f"the Patient: {fhir_failure(error)}") from error
        except ValueError as error:
            raise DataUnavailableError("the Patient: the FHIR server's answer is not JSON") from error
        try:
            check_patient(patient, self.patient_id, "the Patient")
        except FhirError as error:  # another Patient than context.patientId is never used (D1)
            raise DataUnavailableError(str(error)) from error
        self.sources[PATIENT_KEY] = "fetched"
        return patient


def _is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """A JSON object: decoded JSON gives dicts (and None for an absent field), so the ABC check, slow even
    for None, is left for anything else."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _entries(bundle: Mapping[str, Any], resource_type: str) -> Iterator[Mapping[str, Any]]:
    """The matched resources of ``resource_type``; ``FhirResponseError`` when ``entry`` is malformed."""
    for entry in bundles.entries(bundle):
        search = entry.get("search")
        if _is_object(search) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if _is_object(resource) and resource.get("resourceType") == resource_type:
            yield resource


def _holds_other_resources(bundle: Mapping[str, Any], resource_type: str) -> bool:
    """Whether a searchset matches resources of another type (outcome and included entries aside)."""
    for entry in bundles.entries(bundle):
        search = entry.get("search")
        mode = search.get("mode") if _is_object(search) else "match"
        resource = entry.get("resource")
        if mode == "match" and _is_object(resource) and resource.get("resourceType") != resource_type:
            return True
    return False


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    """The next page's URL; ``FhirResponseError`` when ``link`` is malformed."""
    return bundles.next_link(bundle)
