#!/usr/bin/env python3
"""Smoke test of a running local FHIR server (started with deploy/fhir-up.sh). Standard library only.

    python3 deploy/fhir-smoke.py [--base http://127.0.0.1:8080/fhir] [--skip-export] [--skip-hook]

Checks: metadata; a transaction Bundle (PUT Patient/pat-x1 + POST Observation); conditional create with
If-None-Exist (twice -> one resource); token search with _sort=-date and _count=1000; $validate (invalid and
valid Observation); a rest-hook Subscription (accepted, activated, and delivered to a local HTTP listener);
Group-level Bulk Data $export (202 + Content-Location, polled until 200 with NDJSON output).
Exits 0 when every check passes; prints one line per check and a closing "N passed, N failed" line.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

FHIR_JSON = "application/fhir+json"
LOINC_FERRITIN = "2276-4"


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None


def request(method: str, url: str, body=None, headers: dict[str, str] | None = None, timeout=60) -> Response:
    data = None
    hdrs = {"Accept": FHIR_JSON}
    if body is not None:
        data = json.dumps(body).encode("utf-8") if not isinstance(body, bytes) else body
        hdrs["Content-Type"] = FHIR_JSON
    hdrs.update(headers or {})
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)  # noqa: S310 - http(s) checked above
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def issue_severities(outcome) -> list[str]:
    return [i.get("severity", "") for i in (outcome or {}).get("issue", [])]


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        t0 = time.monotonic()
        try:
            detail = fn()
        except AssertionError as err:
            self.failed += 1
            print(f"FAIL {name}: {err}", flush=True)
            return
        except Exception as err:  # a smoke test reports any failure
            self.failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            return
        self.passed += 1
        print(f"ok   {name} ({time.monotonic() - t0:.1f}s){': ' + detail if detail else ''}", flush=True)


class HookListener:
    """A loopback HTTP listener that records rest-hook deliveries."""

    def __init__(self):
        self.received: list[tuple[str, bytes]] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                listener.received.append((self.path, self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT = _record  # noqa: N815 - BaseHTTPRequestHandler's method names

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def main() -> int:
    port = os.environ.get("FHIR_PORT", "8080")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=f"http://127.0.0.1:{port}/fhir")
    ap.add_argument("--skip-export", action="store_true", help="skip the bulk export check")
    ap.add_argument("--skip-hook", action="store_true", help="skip the rest-hook delivery check")
    ap.add_argument("--export-timeout", type=int, default=300, help="seconds to wait for the export")
    ap.add_argument("--patient-id", default="pat-x1", help="client-assigned id of the test Patient (PUT)")
    args = ap.parse_args()
    base = args.base.rstrip("/")
    pid = args.patient_id
    run_id = uuid.uuid4().hex[:8]
    checks = Checks()

    def metadata():
        r = request("GET", f"{base}/metadata")
        assert r.status == 200, f"HTTP {r.status}"
        cs = r.json()
        assert cs["resourceType"] == "CapabilityStatement", cs["resourceType"]
        assert cs["fhirVersion"] == "4.0.1", cs.get("fhirVersion")
        software = cs.get("software", {})
        return f"FHIR {cs['fhirVersion']}, {software.get('name', '')} {software.get('version', '')}"

    def transaction():
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "id": pid,
                        "gender": "female",
                        "name": [{"family": "Smoke", "given": ["X1"]}],
                        "birthDate": "1970-01-01",
                    },
                    "request": {"method": "PUT", "url": f"Patient/{pid}"},
                },
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": LOINC_FERRITIN}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectiveDateTime": "2024-05-01T08:00:00Z",
                        "valueQuantity": {
                            "value": 32,
                            "unit": "ng/mL",
                            "system": "http://unitsofmeasure.org",
                            "code": "ng/mL",
                        },
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
        r = request("POST", base, bundle)
        assert r.status == 200, f"HTTP {r.status}: {r.body[:300]!r}"
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert len(statuses) == 2, statuses
        assert all(s.startswith(("200", "201")) for s in statuses), statuses
        return ", ".join(e["response"]["location"] for e in r.json()["entry"])

    def conditional_create():
        ident = f"cond-{run_id}"
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:rls-screen:smoke", "value": ident}],
            "code": {"coding": [{"system": "http://loinc.org", "code": LOINC_FERRITIN}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2024-06-01T08:00:00Z",
            "valueQuantity": {"value": 18, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"},
        }
        hdr = {"If-None-Exist": f"identifier=urn:rls-screen:smoke|{ident}"}
        first = request("POST", f"{base}/Observation", obs, hdr)
        second = request("POST", f"{base}/Observation", obs, hdr)
        assert first.status == 201, f"first create HTTP {first.status}"
        assert second.status == 200, f"second create HTTP {second.status} (expected 200: matched existing)"
        count = request("GET", f"{base}/Observation?identifier=urn:rls-screen:smoke%7C{ident}&_summary=count").json()
        assert count["total"] == 1, f"{count['total']} resources with the identifier"
        return f"201 then 200, one resource ({first.headers.get('location')})"

    def search_sorted():
        r = request("GET", f"{base}/Observation?code=http://loinc.org%7C{LOINC_FERRITIN}&_sort=-date&_count=1000")
        assert r.status == 200, f"HTTP {r.status}"
        b = r.json()
        dates = [e["resource"].get("effectiveDateTime", "") for e in b.get("entry", [])]
        assert len(dates) >= 2, f"expected >= 2 ferritin Observations, got {len(dates)}"
        assert dates == sorted(dates, reverse=True), f"not sorted descending: {dates}"
        return f"{len(dates)} results, newest first"

    def validate_invalid():
        bad_code = request(
            "POST",
            f"{base}/Observation/$validate",
            {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
        )
        oo = bad_code.json()
        assert oo, bad_code.body[:200]
        assert oo["resourceType"] == "OperationOutcome", bad_code.body[:200]
        assert "error" in issue_severities(oo) or "fatal" in issue_severities(oo), issue_severities(oo)
        missing = request(
            "POST",
            f"{base}/Observation/$validate",
            {"resourceType": "Observation", "subject": {"reference": f"Patient/{pid}"}},
        )
        oo2 = missing.json()
        assert oo2, missing.body[:200]
        assert oo2["resourceType"] == "OperationOutcome", missing.body[:200]
        assert "error" in issue_severities(oo2), issue_severities(oo2)
        return (
            f"status=bogus -> HTTP {bad_code.status} error; "
            f"no status/code -> HTTP {missing.status} {issue_severities(oo2).count('error')} errors"
        )

    def validate_valid():
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": LOINC_FERRITIN}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2024-06-01T08:00:00Z",
            "valueQuantity": {"value": 18, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"},
        }
        r = request("POST", f"{base}/Observation/$validate", obs)
        oo = r.json()
        assert r.status == 200, f"HTTP {r.status}"
        sev = issue_severities(oo)
        assert "error" not in sev, [i.get("diagnostics") for i in oo["issue"]]
        assert "fatal" not in sev, [i.get("diagnostics") for i in oo["issue"]]
        return f"HTTP 200, severities {sorted(set(sev))}"

    def subscription():
        hook = None if args.skip_hook else HookListener()
        try:
            endpoint = f"http://127.0.0.1:{hook.port}/hook" if hook else "http://127.0.0.1:9/hook"
            code = f"smoke-{run_id}"
            sub = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "fhir-smoke",
                "criteria": f"Observation?code=urn:rls-screen:smoke|{code}",
                "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR_JSON},
            }
            r = request("POST", f"{base}/Subscription", sub)
            assert r.status == 201, f"HTTP {r.status}: {r.body[:300]!r}"
            sub_id = r.json()["id"]
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                status = request("GET", f"{base}/Subscription/{sub_id}").json().get("status")
                if status == "active":
                    break
                time.sleep(1)
            assert status == "active", f"Subscription/{sub_id} status {status}"
            if not hook:
                return f"Subscription/{sub_id} active"
            obs = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "urn:rls-screen:smoke", "code": code}]},
                "subject": {"reference": f"Patient/{pid}"},
            }
            created = request("POST", f"{base}/Observation", obs)
            assert created.status == 201, f"Observation create HTTP {created.status}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not hook.received:
                time.sleep(0.5)
            assert hook.received, "no rest-hook delivery within 60 s"
            # deactivate so later runs on the same server do not post to a closed port
            s = request("GET", f"{base}/Subscription/{sub_id}").json()
            s["status"] = "off"
            request("PUT", f"{base}/Subscription/{sub_id}", s)
            return f"Subscription/{sub_id} active; delivered {hook.received[0][0]}"
        finally:
            if hook:
                hook.close()

    def bulk_export():
        group = {
            "resourceType": "Group",
            "id": "grp-smoke",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{pid}"}}],
        }
        r = request("PUT", f"{base}/Group/grp-smoke", group)
        assert r.status in (200, 201), f"Group PUT HTTP {r.status}"
        kick = request(
            "GET", f"{base}/Group/grp-smoke/$export?_type=Patient,Observation", headers={"Prefer": "respond-async"}
        )
        assert kick.status == 202, f"kick-off HTTP {kick.status}: {kick.body[:300]!r}"
        poll_url = kick.headers.get("content-location")
        assert poll_url, "no Content-Location header"
        t0 = time.monotonic()
        while True:
            p = request("GET", poll_url)
            if p.status == 200:
                break
            assert p.status == 202, f"poll HTTP {p.status}: {p.body[:300]!r}"
            assert time.monotonic() - t0 < args.export_timeout, f"export not finished in {args.export_timeout}s"
            time.sleep(2)
        manifest = p.json()
        outputs = manifest.get("output", [])
        types = sorted({o["type"] for o in outputs})
        assert {"Patient", "Observation"} <= set(types), f"output types {types}"
        binary = request("GET", outputs[0]["url"], headers={"Accept": "application/fhir+ndjson"})
        assert binary.status == 200, f"Binary HTTP {binary.status}"
        lines = [ln for ln in binary.body.decode("utf-8").splitlines() if ln.strip()]
        assert lines, "empty NDJSON file"
        assert all(json.loads(ln)["resourceType"] == outputs[0]["type"] for ln in lines), lines[:2]
        waited = time.monotonic() - t0
        return f"202 -> 200 after {waited:.0f}s; outputs {types}; {len(lines)} NDJSON line(s) in first file"

    checks.run("metadata", metadata)
    checks.run(f"transaction Bundle (PUT Patient/{pid} + POST Observation)", transaction)
    checks.run("conditional create (If-None-Exist) twice -> one resource", conditional_create)
    checks.run("Observation?code=loinc|2276-4&_sort=-date&_count=1000", search_sorted)
    checks.run("$validate invalid Observation -> error OperationOutcome", validate_invalid)
    checks.run("$validate valid Observation -> no error", validate_valid)
    checks.run("rest-hook Subscription", subscription)
    if not args.skip_export:
        checks.run("Group bulk $export (Patient,Observation)", bulk_export)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    socket.setdefaulttimeout(120)
    sys.exit(main())
