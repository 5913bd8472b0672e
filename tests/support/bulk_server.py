"""A scripted Bulk Data export server (on ``scripted_server``): kick-off, status polls, manifest, files.

The server answers a kick-off of ``Group/g/$export`` with 202 and a status URL, then the status
requests it was given (202s, 429s, 5xx...), then a manifest listing its files, and serves them. It
counts the downloads running at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.scripted_server import Received, Reply

NDJSON = {"Content-Type": "application/fhir+ndjson"}


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(resource).encode() + b"\n" for resource in resources)


def patient(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1970-03-02"}


class BulkServer:
    """``polls``: answers to the status requests before the manifest; ``files``: name -> body."""

    def __init__(
        self,
        *,
        polls: list[Reply] | None = None,
        files: dict[str, bytes] | None = None,
        errors: dict[str, bytes] | None = None,
        requires_access_token: bool = True,
        manifest: Callable[[str], Any] | None = None,
        download_s: float = 0.0,
        file_base: str | None = None,
        delete_reply: Reply | None = None,
    ) -> None:
        self.polls = list(polls or [])
        self.files = files if files is not None else {"Patient-a": ndjson(patient("p1"))}
        self.errors = errors or {}
        self.requires_access_token = requires_access_token
        self.manifest = manifest
        self.download_s = download_s
        self.file_base = file_base
        self.delete_reply = delete_reply or Reply(202)
        self.base = ""
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def manifest_body(self) -> Any:
        if self.manifest is not None:
            return self.manifest(self.base)
        files = self.file_base or self.base
        return {
            "transactionTime": "2026-12-01T20:14:41.740+00:00",
            "request": f"{self.base}/Group/g/$export",
            "requiresAccessToken": self.requires_access_token,
            "output": [{"type": name.split("-")[0], "url": f"{files}/files/{name}"} for name in self.files],
            "error": [{"type": "OperationOutcome", "url": f"{files}/files/{name}"} for name in self.errors],
        }

    def __call__(self, received: Received) -> Reply:
        path = received.path.removeprefix("/fhir")
        if path.startswith("/Group/g/$export"):
            return Reply(202, None, headers={"Content-Location": f"{self.base}/status/1"})
        if path == "/status/1":
            if received.method == "DELETE":
                return self.delete_reply
            with self.lock:
                if self.polls:
                    return self.polls.pop(0)
            return Reply(200, self.manifest_body(), headers={"Content-Type": "application/json"})
        if path.startswith("/files/"):
            name = path.removeprefix("/files/")
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            time.sleep(self.download_s)
            with self.lock:
                self.in_flight -= 1
            body = {**self.files, **self.errors}.get(name)
            return Reply(200, body, headers=NDJSON) if body is not None else Reply(404, None)
        return Reply(404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
