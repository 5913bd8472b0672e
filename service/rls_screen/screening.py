"""Screen patients on a FHIR server: read, evaluate, plan the write-back, write it.

The orchestration shared by ``rls-screen screen`` (one patient) and the batch runner (a group of
patients: one pre-write read and one transaction for the group, ``write_back_group``). The clock is
injected (``recorded``), so a run is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from rls_screen.assessment import assess
from rls_screen.errors import FhirError, FhirUnavailableError
from rls_screen.fhir_client import FhirClient, parse_json_object
from rls_screen.fhir_reader import read_existing_state, read_group_states, read_patient_data
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment
from rls_screen.writeback import (
    DEVICE_ID_SYSTEM,
    DEVICE_IDENTIFIER,
    WritePlan,
    build_device,
    plan_writeback,
    risk_assessment_identifier,
    to_json,
)

_devices: dict[str, str] = {}
_devices_lock = threading.Lock()


def ensure_device(client: FhirClient) -> str:
    """The module's Device on this server (conditional create once per process and server)."""
    with _devices_lock:
        known = _devices.get(client.base_url)
        if known is not None:
            return known
        response = client.request(
            "POST",
            "Device",
            json_body=to_json(build_device()),
            headers={
                "If-None-Exist": f"identifier={DEVICE_ID_SYSTEM}|{DEVICE_IDENTIFIER}",
                "Prefer": "return=representation",
            },
            idempotent=True,  # a conditional create is safe to repeat
        )
        location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
        device_id = location.split("/Device/", 1)[-1].split("/", 1)[0] if "/Device/" in location else ""
        if not device_id:
            body = parse_json_object(response, "POST Device") if response.content else {}
            device_id = str(body.get("id", ""))
        reference = f"Device/{device_id}"
        _devices[client.base_url] = reference
        return reference


@dataclass(frozen=True)
class ScreenResult:
    assessment: Assessment
    plan: WritePlan | None
    """None when the run did not look at the server's state (an offline dry run)."""
    written: bool
    response: dict[str, Any] | None


def write_back(
    client: FhirClient,
    assessment: Assessment,
    *,
    knowledge: Knowledge,
    recorded: datetime,
    dry_run: bool = False,
) -> ScreenResult:
    """Plan against what the server holds and send the one transaction (unless dry run or no change)."""
    patient_id = assessment.patient.removeprefix("Patient/")
    plan = plan_writeback(
        assessment,
        read_existing_state(client, patient_id, risk_assessment_identifier(assessment)),
        terminology=knowledge.terminology,
        rules=knowledge.ruleset,
        recorded=recorded,
        device_ref=ensure_device(client),
    )
    if dry_run or plan.bundle is None:
        return ScreenResult(assessment, plan, False, None)
    return ScreenResult(assessment, plan, True, client.transaction(plan.bundle))


def screen_patient(
    client: FhirClient,
    patient_id: str,
    *,
    knowledge: Knowledge,
    as_of: date,
    recorded: datetime,
    dry_run: bool = False,
) -> ScreenResult:
    data = read_patient_data(client, patient_id, knowledge, as_of)
    assessment = assess(data, knowledge=knowledge, as_of=as_of)
    return write_back(client, assessment, knowledge=knowledge, recorded=recorded, dry_run=dry_run)


def merged_transaction(plans: Sequence[WritePlan]) -> dict[str, Any]:
    """One transaction Bundle holding every plan's entries (their fullUrls and conditions are per patient)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry for plan in plans if plan.bundle for entry in plan.bundle["entry"]],
    }


def write_back_group(
    client: FhirClient,
    assessments: Sequence[Assessment],
    *,
    knowledge: Knowledge,
    recorded: datetime,
    dry_run: bool = False,
) -> dict[str, ScreenResult | FhirError]:
    """``write_back`` for a group of patients: one pre-write read, one transaction for every change.

    The server applies a transaction whole or not at all, so when it rejects the group's transaction
    nothing of it was written, and each patient's own transaction is sent instead: one patient's bad
    entry never costs another patient's write. A transient failure of the group's transaction (the
    server may have applied it) is each of its patients' failure; the next round's fresh read finds
    what was applied and sends only what is missing. Keys are patient ids (``Patient/`` removed).
    """
    ids = [a.patient.removeprefix("Patient/") for a in assessments]
    wanted = {pid: risk_assessment_identifier(a) for pid, a in zip(ids, assessments, strict=True)}
    states = read_group_states(client, wanted)
    device_ref = ensure_device(client)
    plans = {
        pid: plan_writeback(
            a,
            states[pid],
            terminology=knowledge.terminology,
            rules=knowledge.ruleset,
            recorded=recorded,
            device_ref=device_ref,
        )
        for pid, a in zip(ids, assessments, strict=True)
    }
    results: dict[str, ScreenResult | FhirError] = {
        pid: ScreenResult(a, plans[pid], False, None) for pid, a in zip(ids, assessments, strict=True)
    }
    changed = [pid for pid in ids if plans[pid].bundle is not None]
    if dry_run or not changed:
        return results
    by_id = dict(zip(ids, assessments, strict=True))
    if len(changed) > 1:
        try:
            response = client.transaction(merged_transaction([plans[pid] for pid in changed]))
        except FhirUnavailableError as error:
            return {**results, **dict.fromkeys(changed, error)}
        except FhirError:
            pass  # rejected, so nothing of it was applied: each patient's own transaction below
        else:
            return {**results, **{pid: ScreenResult(by_id[pid], plans[pid], True, response) for pid in changed}}
    for pid in changed:
        bundle = plans[pid].bundle
        if bundle is None:  # pragma: no cover - ``changed`` holds only plans with a bundle
            continue
        try:
            results[pid] = ScreenResult(by_id[pid], plans[pid], True, client.transaction(bundle))
        except FhirError as error:
            results[pid] = error
    return results
