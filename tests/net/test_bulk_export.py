"""The Bulk Data $export client against a scripted loopback Bulk server (real sockets, no HAPI).

``tests.support.bulk_server.BulkServer`` plays the server; every request is recorded, so the tests
see what the client asked, with which headers, and how many downloads ran at once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.support.bulk_server import BulkServer, ndjson, patient
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.batch import bulk_export as bulk
from rls_screen.batch.bulk_export import BulkOptions, bulk_export
from rls_screen.batch.bulk_manifest import ExportProblem
from rls_screen.engine import load_knowledge
from rls_screen.errors import FhirOperationError, FhirResponseError, FhirUnavailableError, ServerNotAllowedError
from rls_screen.fhir_client import Allowlist, BearerAuth, FhirClient

AS_OF = date(2026, 11, 25)
TOKEN = "tok-bulk-123"
CONTRACT = load_knowledge().contract


@pytest.fixture
def serve() -> Iterator[Callable[[BulkServer], str]]:
    """Start a scripted Bulk server; returns its FHIR base URL (servers stop at the end of the test)."""
    stack: list[Any] = []

    def start(script: BulkServer) -> str:
        context = scripted_server(script)
        server = context.__enter__()
        stack.append((context, server))
        script.base = base_url(server)
        return script.base

    yield start
    for context, _ in reversed(stack):
        context.__exit__(None, None, None)


def run(
    base: str,
    out_dir: Path,
    *,
    allow: tuple[str, ...] = (),
    options: BulkOptions | None = None,
) -> tuple[bulk.BulkExport, list[float]]:
    slept: list[float] = []
    client = FhirClient(base, allowlist=Allowlist((base, *allow)), auth=BearerAuth(TOKEN), sleep=slept.append)
    result = bulk_export(
        client,
        "Group/g",
        out_dir,
        contract=CONTRACT,
        as_of=AS_OF,
        options=options or BulkOptions(max_poll_interval_s=30.0),
        sleep=slept.append,
    )
    client.close()
    return result, slept


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[Received]:
    """Every request any scripted server of the test received, in order."""
    seen: list[Received] = []
    original = BulkServer.__call__

    def record(self: BulkServer, request: Received) -> Reply:
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(BulkServer, "__call__", record)
    return seen


# --- kick-off: _type and _typeFilter from the contract ---------------------------------------------


def test_a_short_kickoff_is_a_get_with_each_type_filter_as_its_own_parameter(
    serve: Callable[[BulkServer], str], recording: list[Received], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "MAX_GET_URL_CHARS", 100_000)
    run(serve(BulkServer()), tmp_path)
    kickoff = recording[0]
    assert kickoff.method == "GET"
    assert kickoff.headers["Prefer"] == "respond-async"
    query = parse_qs(urlsplit(kickoff.path).query)
    assert query["_type"] == [",".join(CONTRACT.bulk_types())]
    # one parameter per filter: a filter's own commas (its code list) cannot split the list
    assert query["_typeFilter"] == list(CONTRACT.bulk_type_filters(AS_OF))
    assert any(f.startswith("Observation?") and "combo-code=" in f and "date=" not in f for f in query["_typeFilter"])


def test_a_kickoff_longer_than_a_safe_url_is_posted_as_parameters(
    serve: Callable[[BulkServer], str], recording: list[Received], tmp_path: Path
) -> None:
    run(serve(BulkServer()), tmp_path)
    kickoff = recording[0]
    assert (kickoff.method, urlsplit(kickoff.path).query) == ("POST", "")
    body = json.loads(kickoff.body)
    assert body["resourceType"] == "Parameters"
    pairs = [(p["name"], p["valueString"]) for p in body["parameter"]]
    assert pairs == [
        ("_type", ",".join(CONTRACT.bulk_types())),
        *(("_typeFilter", f) for f in CONTRACT.bulk_type_filters(AS_OF)),
    ]


# --- status polling ----------------------------------------------------------------------------------


def test_retry_after_as_an_http_date_sets_the_next_poll(serve: Callable[[BulkServer], str], tmp_path: Path) -> None:
    later = email.utils.formatdate(time.time() + 9, usegmt=True)
    _, slept = run(serve(BulkServer(polls=[Reply(202, None, headers={"Retry-After": later})])), tmp_path)
    assert len(slept) == 1
    assert 6.5 < slept[0] <= 9.0  # not the 2 s of our own backoff


def test_retry_after_in_seconds_is_honoured_up_to_the_setting(
    serve: Callable[[BulkServer], str], tmp_path: Path
) -> None:
    polls = [Reply(202, None, headers={"Retry-After": "4"}), Reply(202, None, headers={"Retry-After": "120"})]
    _, slept = run(serve(BulkServer(polls=polls)), tmp_path, options=BulkOptions(max_poll_interval_s=10.0))
    assert slept == [4.0, 10.0]


def test_429_and_transient_5xx_while_polling_are_waited_out(serve: Callable[[BulkServer], str], tmp_path: Path) -> None:
    transient = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}
    polls = [
        *[Reply(429, None, headers={"Retry-After": "3"}) for _ in range(5)],  # more than the client's own retries
        Reply(503, b"<html>busy</html>", headers={"Content-Type": "text/html"}),
        Reply(500, transient),
        Reply(202, None, headers={"X-Progress": "50%"}),
    ]
    result, slept = run(serve(BulkServer(polls=polls)), tmp_path)
    assert slept[:5] == [3.0] * 5
    assert slept[5:] == [2.0, 3.0, 4.5]  # our backoff where no Retry-After was given
    assert (result.directory / "Patient-1.ndjson").exists()


def test_the_export_is_given_up_after_the_longest_wait(serve: Callable[[BulkServer], str], tmp_path: Path) -> None:
    polls = [Reply(202, None, headers={"Retry-After": "10"}) for _ in range(10)]
    with pytest.raises(FhirUnavailableError, match="not complete after 30 s"):
        run(serve(BulkServer(polls=polls)), tmp_path, options=BulkOptions(max_wait_s=35.0))


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            Reply(
                500,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "processing", "diagnostics": "disk full"}],
                },
            ),
            FhirOperationError,
            "bulk export failed: the status request answered HTTP 500: disk full",
        ),
        (
            Reply(
                400,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad _typeFilter"}],
                },
            ),
            FhirOperationError,
            "HTTP 400: bad _typeFilter",
        ),
    ],
)
def test_a_failed_export_is_a_typed_error_naming_the_status(
    serve: Callable[[BulkServer], str], tmp_path: Path, reply: Reply, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        run(serve(BulkServer(polls=[Reply(202), reply])), tmp_path)
    assert raised.value.status == reply.status  # type: ignore[attr-defined]


def test_x_progress_is_logged_without_what_else_it_says(
    serve: Callable[[BulkServer], str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    polls = [Reply(202, None, headers={"X-Progress": "45% done: Patient/secret-77 Jane Doe"})]
    with caplog.at_level(logging.INFO, logger="rls_screen"):
        run(serve(BulkServer(polls=polls)), tmp_path)
    assert "bulk export: 45%; next status request in 2 s" in caplog.text
    assert "secret-77" not in caplog.text
    assert "Doe" not in caplog.text
    assert "/status/1" not in caplog.text  # no URLs in logs
    assert "/files/" not in caplog.text


@pytest.mark.parametrize(
    "manifest",
    [
        lambda base: ["not", "an", "object"],
        lambda base: {"requiresAccessToken": True, "output": []},
        lambda base: {"transactionTime": "2026-12-01T20:14:41Z", "requiresAccessToken": "yes", "output": []},
        lambda base: {"transactionTime": "2026-12-01T20:14:41Z", "requiresAccessToken": True, "output": [{"url": 1}]},
        lambda base: {
            "transactionTime": "2026-12-01T20:14:41Z",
            "requiresAccessToken": True,
            "output": [{"type": "../Patient", "url": f"{base}/files/x"}],
        },
        lambda base: b"<html>Sign in</html>",
    ],
)
def test_a_malformed_manifest_is_a_typed_error(
    serve: Callable[[BulkServer], str], tmp_path: Path, manifest: Callable[[str], Any]
) -> None:
    with pytest.raises(FhirResponseError, match="bulk export"):
        run(serve(BulkServer(manifest=manifest)), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- downloads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("requires_token", [True, False])
def test_downloads_carry_the_token_only_when_the_manifest_requires_it(
    serve: Callable[[BulkServer], str], recording: list[Received], tmp_path: Path, requires_token: bool
) -> None:
    files = {"Patient-a": ndjson(patient("p1")), "Observation-b": b""}
    run(serve(BulkServer(files=files, requires_access_token=requires_token)), tmp_path)
    downloads = [r for r in recording if r.path.startswith("/fhir/files/")]
    others = [r for r in recording if not r.path.startswith("/fhir/files/")]
    assert len(downloads) == 2
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in others)
    expected = f"Bearer {TOKEN}" if requires_token else None
    assert [r.headers.get("Authorization") for r in downloads] == [expected, expected]


def test_a_file_off_the_allowlist_is_refused_before_any_download(
    serve: Callable[[BulkServer], str], recording: list[Received], tmp_path: Path
) -> None:
    elsewhere = serve(BulkServer())  # another loopback server: a host the allowlist does not name
    storage = BulkServer(files={"Patient-a": ndjson(patient("p1"))})
    base = serve(storage)

    def manifest(base: str) -> dict[str, Any]:
        return {
            "transactionTime": "2026-12-01T20:14:41Z",
            "requiresAccessToken": False,
            "output": [
                {"type": "Patient", "url": f"{base}/files/Patient-a"},
                {"type": "Observation", "url": f"{elsewhere}/files/Patient-a"},
            ],
            "error": [],
        }

    storage.manifest = manifest
    with pytest.raises(ServerNotAllowedError, match="not on the allowlist"):
        run(base, tmp_path / "out")
    assert [r for r in recording if "/files/" in r.path] == []  # not even the allowed file
    assert not (tmp_path / "out").exists()


def test_files_download_in_parallel_up_to_the_setting(serve: Callable[[BulkServer], str], tmp_path: Path) -> None:
    files = {
        f"{kind}-{n}": ndjson({"resourceType": kind, "id": f"{kind}-{n}"})
        for kind in ("Patient", "Observation")
        for n in "abc"
    }
    files["Practitioner-x"] = ndjson({"resourceType": "Practitioner", "id": "x"})  # outside the contract
    script = BulkServer(files=files, download_s=0.3)
    started = time.monotonic()
    result, _ = run(serve(script), tmp_path, options=BulkOptions(download_workers=3))
    elapsed = time.monotonic() - started
    assert script.most_in_flight == 3
    assert elapsed < 6 * 0.3  # not one after the other
    assert result.files == 6
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{kind}-{n}.ndjson" for kind in ("Observation", "Patient") for n in (1, 2, 3)]
    for kind in ("Patient", "Observation"):
        for n, letter in enumerate("abc", start=1):
            assert json.loads((tmp_path / f"{kind}-{n}.ndjson").read_text())["id"] == f"{kind}-{letter}"


class CutServer:
    """Serves files whose body stops halfway (Content-Length promises more), ``cuts`` times, then whole."""

    def __init__(self, body: bytes, cuts: int) -> None:
        self.body, self.cuts = body, cuts
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+ndjson\r\n"
                    f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
                )
                body = self.body[: len(self.body) // 2] if self.cuts > 0 else self.body
                self.cuts -= 1
                connection.sendall(head.encode() + body)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("cuts", [1, 3])
def test_a_download_cut_off_never_leaves_a_file_that_looks_complete(
    serve: Callable[[BulkServer], str], tmp_path: Path, cuts: int
) -> None:
    body = ndjson(*(patient(f"p{n}") for n in range(200)))
    cut = CutServer(body, cuts)
    try:
        storage = BulkServer(file_base=cut.base, files={"Patient-a": body})
        base = serve(storage)
        if cuts < bulk.DOWNLOAD_ATTEMPTS:
            _, slept = run(base, tmp_path, allow=(cut.base,))
            assert (tmp_path / "Patient-1.ndjson").read_bytes() == body
            assert slept == [2.0]
        else:
            with pytest.raises(FhirUnavailableError, match="download"):
                run(base, tmp_path, allow=(cut.base,))
            assert not (tmp_path / "Patient-1.ndjson").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    finally:
        cut.close()


# --- error files and the end of the job --------------------------------------------------------------


def test_error_files_are_read_into_problems_per_patient(serve: Callable[[BulkServer], str], tmp_path: Path) -> None:
    errors = {
        "error-1": ndjson(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "processing", "diagnostics": "Observation of Patient/p2 unreadable"}
                ],
            },
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "too-costly", "expression": ["Patient/p3"]}],
            },
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "fatal", "code": "exception", "diagnostics": "shard 4 lost"}],
            },
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational", "diagnostics": "ok"}],
            },
        )
    }
    result, _ = run(serve(BulkServer(errors=errors)), tmp_path)
    assert result.problems == (
        ExportProblem("error", "processing: Observation of Patient/p2 unreadable", "p2"),
        ExportProblem("error", "too-costly", "p3"),
        ExportProblem("fatal", "exception: shard 4 lost"),
        ExportProblem("information", "informational: ok"),
    )
    assert (tmp_path / "error" / "error-1.ndjson").exists()
    assert not any(p.name.startswith("error") for p in tmp_path.glob("*.ndjson"))  # not read as output


@pytest.mark.parametrize("answer", [Reply(202), Reply(404, None), Reply(501, None)])
def test_the_finished_export_is_deleted_best_effort(
    serve: Callable[[BulkServer], str], recording: list[Received], tmp_path: Path, answer: Reply
) -> None:
    run(serve(BulkServer(delete_reply=answer)), tmp_path)
    assert [r.method for r in recording if r.path == "/fhir/status/1"] == ["GET", "DELETE"]
    assert (tmp_path / "Patient-1.ndjson").exists()
