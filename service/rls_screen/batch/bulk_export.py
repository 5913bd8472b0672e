"""The FHIR Bulk Data $export client: kick off a Group export, poll it, download its NDJSON files.

The files land in one directory as ``<Type>-<n>.ndjson``, which ``sources.NdjsonIndex`` reads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rls_screen.contract import CONTRACT_TYPES
from rls_screen.errors import FhirOperationError
from rls_screen.fhir_client import FhirClient

log = logging.getLogger(__name__)


def bulk_export(
    client: FhirClient,
    group: str,
    out_dir: Path,
    *,
    types: tuple[str, ...] = CONTRACT_TYPES,
    max_wait_s: float = 900.0,
    sleep: Any = time.sleep,
) -> Path:
    """FHIR Bulk Data $export of a Group: kick off, poll (honouring Retry-After), download NDJSON."""
    group_id = group.removeprefix("Group/")
    kickoff = client.request(
        "GET",
        f"Group/{group_id}/$export",
        params={"_type": ",".join(types)},
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    status_url = kickoff.headers.get("Content-Location")
    if kickoff.status_code != 202 or not status_url:
        raise FhirOperationError(f"bulk export kick-off answered HTTP {kickoff.status_code} without a status URL")
    waited = 0.0
    delay = 2.0
    while True:
        response = client.request("GET", status_url, headers={"Accept": "application/json"})
        if response.status_code == 200:
            manifest = response.json()
            break
        retry_after = response.headers.get("Retry-After")
        pause = float(retry_after) if retry_after and retry_after.isdigit() else delay
        pause = min(pause, 30.0)
        if waited + pause > max_wait_s:
            raise FhirOperationError(f"bulk export not complete after {int(waited)} s")
        log.info(
            "bulk export in progress (%s); next poll in %.0f s",
            response.headers.get("X-Progress", "?"),
            pause,
        )
        sleep(pause)
        waited += pause
        delay = min(delay * 1.5, 15.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    counters: dict[str, int] = {}
    for item in manifest.get("output", []):
        kind = str(item.get("type"))
        counters[kind] = counters.get(kind, 0) + 1
        client.download(str(item["url"]), out_dir / f"{kind}-{counters[kind]}.ndjson")
    if manifest.get("error"):
        log.warning("bulk export reported %d error file(s)", len(manifest["error"]))
    return out_dir
