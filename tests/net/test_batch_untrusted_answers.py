"""The batch against a loopback FHIR server that answers some patients in hostile or broken ways.

Each such patient fails with a reason that says what happened (never "internal error", never data
read from where a redirect pointed), and the other patients are screened.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.batch.jobs import JobStore
from rls_screen.batch.runner import BatchOptions, run_job
from rls_screen.engine import load_knowledge
from rls_screen.fhir_client import Allowlist, FhirClient

AS_OF = date(2026, 11, 25)
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0}


def test_each_bad_answer_is_that_patients_failure_reason(tmp_path: Path) -> None:
    with scripted_server(lambda r: Reply(200, EMPTY)) as elsewhere:
        bad: dict[str, Reply] = {
            "redirect": Reply(302, None, headers={"Location": f"{base_url(elsewhere)}/Observation"}),
            "entry-object": Reply(200, {**EMPTY, "entry": {"resource": {}}}),
            "link-strings": Reply(200, {**EMPTY, "link": ["next"]}),
            "gzip": Reply(200, json.dumps(EMPTY).encode(), headers={"Content-Encoding": "gzip"}),
            "deep": Reply(200, b"[" * 100_000 + b"]" * 100_000),
        }

        def script(received: Received) -> Reply:
            path = received.path
            if path.startswith("/fhir/Patient/"):
                patient_id = path.removeprefix("/fhir/Patient/")
                return Reply(200, {"resourceType": "Patient", "id": patient_id, "gender": "female"})
            if path.startswith("/fhir/Observation?"):
                return next((reply for name, reply in bad.items() if f"Patient%2Fb-{name}&" in path), Reply(200, EMPTY))
            if path == "/fhir/Device":  # the dry run's conditional create of our Device
                return Reply(201, None, headers={"Location": "http://127.0.0.1/fhir/Device/dev-1/_history/1"})
            if received.method == "POST":  # the pre-write read of what exists: nothing
                entries = [{"resource": EMPTY, "response": {"status": "200 OK"}} for _ in range(3)]
                return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries})
            return Reply(200, EMPTY)

        with scripted_server(script) as server:
            url = base_url(server)
            client = FhirClient(url, allowlist=Allowlist((url,)), max_retries=0, sleep=lambda s: None)
            store = JobStore(tmp_path / "jobs.sqlite")
            job = store.create_job(created="c", source="patients:test", as_of=AS_OF, dry_run=True, fhir_base_url=url)
            store.add_patients(job.id, ["good-1", *(f"b-{name}" for name in bad)])
            options = BatchOptions(knowledge=load_knowledge(), recorded=datetime(2026, 11, 25, tzinfo=UTC))
            try:
                counts = run_job(store, job, client, options)
            finally:
                client.close()
            reasons: dict[str, Any] = {row.patient_id: row.reason for row in store.rows(job.id)}
            store.close()
        assert elsewhere.received == []

    assert counts == {"pending": 0, "done": 1, "failed": 5}, reasons
    assert reasons["good-1"] is None
    assert reasons["b-redirect"].startswith(
        "redirected: GET Observation: the server answered with a redirect (HTTP 302)"
    )
    assert "Bundle's entry is a JSON object" in reasons["b-entry-object"]
    assert "Bundle's link holds an item that is not a JSON object" in reasons["b-link-strings"]
    assert "Content-Encoding" in reasons["b-gzip"]
    assert "nested too deeply" in reasons["b-deep"]
    assert not any("internal error" in str(reason) for reason in reasons.values())
