"""The FHIR Bulk Data $export client (SMART Bulk Data IG v2): a Group's contract data as NDJSON files.

One export, start to end, through the module's one FHIR seam (``FhirClient``: allowlist, auth,
timeouts, typed errors):

1. Kick-off: ``_type`` and ``_typeFilter`` come from the data contract (``DataContract.bulk_types`` and
   ``bulk_type_filters(as_of)``, the job's as-of date), so the server exports what a REST read of
   the same patients would return, not every Observation of the Group. Each filter is its own
   ``_typeFilter`` parameter (the IG allows repeating it): joined with commas, a filter's own commas
   (the code lists) make the list ambiguous, and HAPI 8.8 then drops the MedicationRequest filter
   (its split pattern expects a type name of one capital, docs/bulk-export.md). When that GET URL
   would be longer than ``MAX_GET_URL_CHARS`` the kick-off is a POST of a Parameters resource.
2. Status polling with ``Retry-After`` in both RFC 9110 forms, bounded by settings; 429 and
   transient 5xx answers are waited out with backoff; a failed export is a typed error naming the
   status and the server's OperationOutcome text.
3. The manifest, checked field by field (``bulk_manifest.parse_manifest``); every file URL is
   checked against the client's allowlist before the first download.
4. Downloads, a few at a time (``BulkOptions.download_workers``), each streamed to a hidden temporary
   file, flushed to disk and renamed: a crash never leaves a partial file under the name
   ``NdjsonIndex`` reads (``<Type>-<n>.ndjson``). The client's Authorization header goes with the
   downloads only when the manifest says ``requiresAccessToken``.
5. The ``error`` files, read into ``ExportProblem``s (per patient where an outcome names one).
6. A best-effort DELETE of the status URL, which tells the server it may drop the files.

Logs carry counts, statuses and the X-Progress percentage or status word, never URLs (the status
URL and file URLs are the server's, and may carry ids), file contents or tokens.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from rls_screen.batch.bulk_manifest import (
    ExportFile,
    ExportProblem,
    Manifest,
    parse_manifest,
    progress_text,
    read_error_file,
)
from rls_screen.contract import DataContract
from rls_screen.errors import (
    FhirError,
    FhirOperationError,
    FhirResponseError,
    FhirUnavailableError,
    InputError,
)
from rls_screen.fhir_answers import FHIR_JSON, outcome_text
from rls_screen.fhir_client import FhirClient, parse_json_object, retry_after_seconds
from rls_screen.settings import Settings

log = logging.getLogger(__name__)

MAX_GET_URL_CHARS = 4096
"""Longest kick-off URL sent as a GET. Tomcat, nginx and Apache refuse a request line plus headers
over 8 KiB by default; half of that leaves room for a SMART access token (1-2 KB) and proxies' own
headers. Longer kick-offs are POSTed as a Parameters resource (IG v2 "Bulk Data Kick-off Request")."""
MIN_POLL_S = 1.0
"""Shortest pause between status requests, whatever Retry-After says (a past HTTP-date gives 0)."""
MAX_POLL_ERRORS = 6
"""Transient failures of the status request in a row (429 aside) before the export is given up."""
DOWNLOAD_ATTEMPTS = 3
"""Tries per file when its download fails on a transient error (connection lost, 5xx, 429)."""
RETRY_POLL_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ISSUE_CODES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)
"""FHIR R4 IssueType "transient" and its children: IG v2 asks servers to use one for a polling
failure that is not a failure of the export; any other 5xx OperationOutcome ends the export."""
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class BulkOptions:
    download_workers: int = 4
    max_wait_s: float = 3600.0
    """Longest time spent waiting (paused between status requests) for the export to complete."""
    max_poll_interval_s: float = 30.0
    """Longest pause between status requests, even when Retry-After asks for more."""
    first_poll_interval_s: float = 2.0
    """Pause before the second status request when the server gives no Retry-After; grows by 1.5x."""
    delete_when_done: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> BulkOptions:
        return cls(
            download_workers=settings.bulk_download_workers,
            max_wait_s=settings.bulk_max_wait_s,
            max_poll_interval_s=settings.bulk_poll_max_s,
            first_poll_interval_s=min(2.0, settings.bulk_poll_max_s),
        )


@dataclass(frozen=True)
class BulkExport:
    directory: Path
    manifest: Manifest
    files: int
    """Output files downloaded (of the contract's types)."""
    problems: tuple[ExportProblem, ...]
    """From the manifest's error files, in file and line order."""


def bulk_export(
    client: FhirClient,
    group: str,
    out_dir: Path,
    *,
    contract: DataContract,
    as_of: date,
    options: BulkOptions | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BulkExport:
    """Export the contract's data for a Group's members into ``out_dir``; see the module docstring."""
    options = options or BulkOptions()
    group_id = group.removeprefix("Group/")
    if _FHIR_ID.fullmatch(group_id) is None:
        raise InputError("the Group to export must be Group/<id> with a FHIR id")
    started = time.monotonic()
    status_url = kick_off(client, group_id, contract.bulk_types(), contract.bulk_type_filters(as_of))
    manifest = wait_for_manifest(client, status_url, options, sleep)
    for item in (*manifest.output, *manifest.error):
        client.allowlist.check(item.url)  # every file, before the first download
    wanted = set(contract.bulk_types())
    outputs = [item for item in manifest.output if item.type in wanted]
    if len(outputs) < len(manifest.output):
        log.info("bulk export: %d output file(s) of other types not downloaded", len(manifest.output) - len(outputs))
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _file_names(outputs, out_dir)
    error_dir = out_dir / "error"
    if manifest.error:
        error_dir.mkdir(exist_ok=True)
    error_plan = [(item, error_dir / f"error-{n}.ndjson") for n, item in enumerate(manifest.error, start=1)]
    size = download_all(
        client,
        plan + error_plan,
        authorize=manifest.requires_access_token,
        workers=options.download_workers,
        sleep=sleep,
    )
    problems: list[ExportProblem] = []
    for n, (_, path) in enumerate(error_plan, start=1):
        problems.extend(read_error_file(path, f"export error file {n}"))
    log.info(
        "bulk export complete: %d file(s), %d bytes, %d error file(s) with %d issue(s), in %.0f s",
        len(plan),
        size,
        len(error_plan),
        len(problems),
        time.monotonic() - started,
    )
    if options.delete_when_done:
        _delete(client, status_url)
    return BulkExport(out_dir, manifest, len(plan), tuple(problems))


def kick_off(client: FhirClient, group_id: str, types: tuple[str, ...], filters: tuple[str, ...]) -> str:
    """Start the export; returns the absolute status URL (Content-Location of the 202)."""
    path = client.url(f"Group/{group_id}/$export")
    pairs = [("_type", ",".join(types)), *(("_typeFilter", value) for value in filters)]
    url = f"{path}?{urlencode(pairs)}"
    headers = {"Prefer": "respond-async", "Accept": FHIR_JSON}
    if len(url) <= MAX_GET_URL_CHARS:
        response = client.request("GET", url, headers=headers)
    else:
        parameters = {"resourceType": "Parameters", "parameter": [{"name": n, "valueString": v} for n, v in pairs]}
        response = client.request("POST", path, json_body=parameters, headers=headers)
    location = response.headers.get("Content-Location")
    if response.status_code != 202 or not location:
        raise FhirOperationError(
            f"bulk export kick-off answered HTTP {response.status_code} without a status URL",
            status=response.status_code,
        )
    return urljoin(client.base_url + "/", location)  # the IG says absolute; a relative one is read as the server meant


def wait_for_manifest(
    client: FhirClient, status_url: str, options: BulkOptions, sleep: Callable[[float], None]
) -> Manifest:
    """Poll the status URL until the export completes; its manifest, or a typed error."""
    waited = 0.0
    backoff = options.first_poll_interval_s
    failures = 0
    while True:
        response = client.request(
            "GET", status_url, headers={"Accept": "application/json"}, also_accept=RETRY_POLL_STATUSES
        )
        status = response.status_code
        if status == 200:
            return parse_manifest(parse_json_object(response, "bulk export status request"))
        if status == 202:
            failures = 0
            why = progress_text(response.headers.get("X-Progress"))
        elif status in RETRY_POLL_STATUSES:
            if status != 429:
                outcome = _operation_outcome(response)
                if outcome is not None and not _is_transient(outcome):
                    detail = outcome_text(outcome)
                    raise FhirOperationError(
                        f"bulk export failed: the status request answered HTTP {status}"
                        + (f": {detail}" if detail else ""),
                        status=status,
                    )
                failures += 1
                if failures > MAX_POLL_ERRORS:
                    raise FhirUnavailableError(
                        f"bulk export status request failed {failures} times in a row (last HTTP {status})",
                        status=status,
                    )
            why = f"HTTP {status}"
        else:  # another 2xx, or a redirect not followed: not a status the IG defines
            raise FhirResponseError(f"bulk export status request answered HTTP {status}", status=status)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        pause = min(max(retry_after if retry_after is not None else backoff, MIN_POLL_S), options.max_poll_interval_s)
        if waited + pause > options.max_wait_s:
            raise FhirUnavailableError(
                f"bulk export not complete after {waited:.0f} s (RLS_SCREEN_BULK_MAX_WAIT_S is {options.max_wait_s:g})"
            )
        log.info("bulk export: %s; next status request in %.0f s", why, pause)
        sleep(pause)
        waited += pause
        if retry_after is None:
            backoff = min(backoff * 1.5, options.max_poll_interval_s)


def _operation_outcome(response: requests.Response) -> Mapping[str, Any] | None:
    """The OperationOutcome of an error answer, or None (a proxy's page, an empty body)."""
    try:
        body = parse_json_object(response, "bulk export status request")
    except FhirError:
        return None
    return body if body.get("resourceType") == "OperationOutcome" else None


def _is_transient(outcome: Mapping[str, Any]) -> bool:
    issues = outcome.get("issue")
    return any(
        isinstance(issue, Mapping) and issue.get("code") in TRANSIENT_ISSUE_CODES
        for issue in (issues if isinstance(issues, list) else [])
    )


def _file_names(outputs: list[ExportFile], out_dir: Path) -> list[tuple[ExportFile, Path]]:
    """``<Type>-<n>.ndjson``, numbered per type in manifest order (the names ``NdjsonIndex`` reads)."""
    counters: dict[str, int] = {}
    plan: list[tuple[ExportFile, Path]] = []
    for item in outputs:
        counters[item.type] = counters.get(item.type, 0) + 1
        plan.append((item, out_dir / f"{item.type}-{counters[item.type]}.ndjson"))
    return plan


def download_all(
    client: FhirClient,
    plan: list[tuple[ExportFile, Path]],
    *,
    authorize: bool,
    workers: int,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Download every file of ``plan``, at most ``workers`` at once; bytes written. The first failure
    cancels the files not started and is raised once those under way have ended."""
    if not plan:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(plan))), thread_name_prefix="bulk-download") as pool:
        futures = [pool.submit(_download_one, client, item, path, authorize, sleep) for item, path in plan]
        try:
            return sum(future.result() for future in as_completed(futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _download_one(
    client: FhirClient, item: ExportFile, destination: Path, authorize: bool, sleep: Callable[[float], None]
) -> int:
    """One file, streamed to ``.<name>.part`` (not a name the index reads), synced, then renamed."""
    part = destination.with_name(f".{destination.name}.part")
    attempt = 0
    while True:
        attempt += 1
        try:
            written = client.download(item.url, part, authorize=authorize)
            descriptor = os.open(part, os.O_RDWR)
            try:
                os.fsync(descriptor)  # the rename must not reach the disk before the data does
            finally:
                os.close(descriptor)
            os.replace(part, destination)
            return written
        except FhirUnavailableError as error:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise
            delay = 2.0 * attempt
            log.warning(
                "bulk export: a %s file download failed (%s), retry %d in %.0f s",
                item.type,
                error.status or "connection",
                attempt,
                delay,
            )
            sleep(delay)
        finally:
            part.unlink(missing_ok=True)


def _delete(client: FhirClient, status_url: str) -> None:
    """Best effort: IG v2 "Bulk Data Delete Request" lets the server free the files now."""
    try:
        client.request("DELETE", status_url)
    except FhirError as error:
        # HAPI 8.8 answers 404 for a job that has completed; the files then expire on the server's schedule
        log.info("bulk export: the server did not delete the finished export (%s)", type(error).__name__)
