"""The offline NDJSON path: batch reads from the index, batched job-store writes, worker processes.

``NdjsonIndex.loader_for`` fetches a batch of patients' runs in one query; for every patient it must give
what ``patient_data`` gives (or raise the same error), on a file with the odd cases of real exports. The
runner screens batches (in worker processes when asked) and records each batch in one transaction; the
stored rows must be those the one-patient-at-a-time path stores.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import knowledge

from rls_screen.batch import ndjson_index, runner, sources
from rls_screen.batch.jobs import JobStore, result_text
from rls_screen.batch.runner import BatchOptions, run_job
from rls_screen.errors import InputError
from rls_screen.patient_data import PatientData
from rls_screen.synth import generate_panel, write_ndjson

pytestmark = pytest.mark.unit
AS_OF = date(2026, 11, 25)


def _odd_export(directory: Path) -> Path:
    """A small export with a BOM, CR/CRLF, blank and odd lines, NaN, a 30-digit integer, bad JSON."""
    write_ndjson(generate_panel(12, seed=6, as_of=AS_OF, id_prefix="odd"), directory)
    observations = (directory / "Observation.ndjson").read_bytes().split(b"\n")
    odd = [b"\xef\xbb\xbf" + observations[0], b"", b"   ", b"{not json", b"[1]"]
    for n, line in enumerate(observations[1:]):
        if not line:
            continue
        if n % 9 == 1:
            line = line.replace(b'"value":', b'"value":NaN,"x":', 1)
        elif n % 9 == 2:
            line = line.replace(b'"value":', b'"value":123456789012345678901234567890,"x":', 1)
        elif n % 9 == 3:
            line = line.replace(b'"status":"final"', b'"status":"final\\ud800"', 1)
        odd.append(line)
    text = b""
    for n, line in enumerate(odd):
        text += line + (b"\r\n" if n % 5 == 1 else b"\r" if n % 7 == 3 else b"\n")
    (directory / "Observation.ndjson").write_bytes(text)
    return directory


def _outcome(load: Any, patient_id: str) -> str:
    try:
        data: PatientData = load(patient_id)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return repr(data)


@pytest.mark.parametrize("pooled", [False, True])
def test_loader_for_reads_each_patient_as_patient_data_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: bool
) -> None:
    if pooled:  # indexing in worker processes over small slices: runs cut at slice edges are joined again
        monkeypatch.setattr(ndjson_index, "_PARALLEL_FROM_BYTES", 0)
        monkeypatch.setattr(ndjson_index, "_CHUNK_BYTES", 2000)
    directory = _odd_export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite", workers=2)
    index.load(directory)
    ids = [*dict.fromkeys(index.patient_ids()), "not-there"]
    assert len(ids) == 13
    assert any("not JSON" in problem for problem in index.problems)
    monkeypatch.setattr(ndjson_index, "_IDS_PER_QUERY", 5)  # several IN (...) queries per batch
    batch = index.loader_for(ids)
    compared = [(_outcome(batch, patient_id), _outcome(index.patient_data, patient_id)) for patient_id in ids]
    index.close()
    assert all(got == expected for got, expected in compared)
    assert compared[-1][0] == "InputError: Patient/not-there is not in the NDJSON files"
    assert sum("nan" in got for got, _ in compared) > 0  # the NaN lines were read by the json module


def test_loader_for_reports_a_file_changed_after_indexing(tmp_path: Path) -> None:
    directory = _odd_export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(directory)
    ids = list(dict.fromkeys(index.patient_ids()))
    load = index.loader_for(ids)
    (directory / "Observation.ndjson").write_bytes(b"{}\n")
    with pytest.raises(InputError, match="changed after it was indexed"):
        load(ids[-1])
    index.close()


def test_mark_many_stores_what_mark_done_and_mark_failed_store(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    jobs = [store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="u") for _ in "ab"]
    for job in jobs:
        store.add_patients(job.id, ["p1", "p2", "p3"])
    result = {"findings": {"anemia": "mild"}, "values": {"ferritin": 12.5}, "written": False}
    store.mark_done(jobs[0].id, "p1", result, False)
    store.mark_failed(jobs[0].id, "p2", "bad data: " + "x" * 600)
    store.mark_many(jobs[1].id, [("p1", result_text(result), False)], [("p2", "bad data: " + "x" * 600)])
    rows = [
        [(r.patient_id, r.status, r.attempts, r.reason, r.result, r.written) for r in store.rows(j.id)] for j in jobs
    ]
    store.close()
    assert rows[0] == rows[1]
    assert rows[1][2] == ("p3", "pending", 0, None, None, False)


def _stored(job_db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(job_db) as db:
        return db.execute(
            "SELECT patient_id, status, attempts, reason, result FROM patient ORDER BY position"
        ).fetchall()


def _run(tmp_path: Path, name: str, directory: Path, *, concurrency: int, chunk_loader: bool) -> list[tuple[Any, ...]]:
    index = sources.NdjsonIndex(tmp_path / f"{name}.sqlite")
    index.load(directory)
    store = JobStore(tmp_path / f"{name}-jobs.sqlite")
    job = store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="u")
    store.add_patients(job.id, [*index.patient_ids(), "missing"])
    options = BatchOptions(
        knowledge=knowledge(),
        recorded=None,  # type: ignore[arg-type]  # offline: nothing is written
        concurrency=concurrency,
        loader=index.patient_data,
        chunk_loader=index.loader_for if chunk_loader else None,
    )
    counts = run_job(store, job, None, options)
    store.close()
    index.close()
    assert counts == {"pending": 0, "done": 12, "failed": 1}
    return _stored(tmp_path / f"{name}-jobs.sqlite")


def test_batches_in_worker_processes_store_what_one_patient_at_a_time_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _odd_export(tmp_path / "export")
    monkeypatch.setattr(runner, "OFFLINE_CHUNK", 3)
    one_by_one = _run(tmp_path, "single", directory, concurrency=1, chunk_loader=False)
    batched = _run(tmp_path, "batched", directory, concurrency=1, chunk_loader=True)
    pooled = _run(tmp_path, "pooled", directory, concurrency=2, chunk_loader=True)
    assert one_by_one == batched == pooled
    assert one_by_one[-1][:4] == ("missing", "failed", 1, "bad data: Patient/missing is not in the NDJSON files")


def test_a_chunk_loader_that_fails_falls_back_to_one_patient_at_a_time(tmp_path: Path) -> None:
    directory = _odd_export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(directory)
    ids = list(dict.fromkeys(index.patient_ids()))

    def broken(patient_ids: list[str]) -> Any:
        raise RuntimeError("index unavailable")

    k = knowledge()
    assert runner._offline_batch(index.patient_data, broken, k, AS_OF, ids) == runner._offline_batch(
        index.patient_data, None, k, AS_OF, ids
    )
    index.close()


# --- lines that no parser should be asked to survive -----------------------------------------------------

NOT_UTF8 = b'{"resourceType": "Observation", "status": "\xff\xfe final"}'
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"resourceType": "Observation", "x": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"
DEEP_LONG_NUMBER = b'{"resourceType": "Observation", "n": 12345678901234567890, "x": ' + DEEP + b"}"
"""A 19+ digit number: the line is read by the json module, not orjson, even in the scan's fast path."""


def _hostile_export(directory: Path, patients: int = 20) -> tuple[Path, list[int]]:
    """An export with a non-UTF-8 line and 100k-deep lines among good ones; returns the bad line numbers."""
    write_ndjson(generate_panel(patients, seed=4, as_of=AS_OF, id_prefix="hx"), directory)
    lines = (directory / "Observation.ndjson").read_bytes().splitlines()
    bad = [NOT_UTF8, DEEP, DEEP_OBJECT, DEEP_LONG_NUMBER]
    numbers = [3, 8, 13, 18]
    for number, line in zip(numbers, bad, strict=True):
        lines.insert(number - 1, line)
    (directory / "Observation.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return directory, numbers


@pytest.mark.parametrize("pooled", [False, True])
def test_a_line_that_is_not_utf8_or_nested_too_deeply_is_skipped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: bool
) -> None:
    if pooled:  # the scan in worker processes: the same lines must be skipped there
        monkeypatch.setattr(ndjson_index, "_PARALLEL_FROM_BYTES", 0)
        monkeypatch.setattr(ndjson_index, "_CHUNK_BYTES", 5000)
    directory, numbers = _hostile_export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite", workers=2)
    index.load(directory)
    ids = list(dict.fromkeys(index.patient_ids()))
    loaded = [index.patient_data(patient_id) for patient_id in ids]
    index.close()
    assert len(loaded) == 20
    assert index.problems == [
        f"Observation.ndjson:{numbers[0]}: not UTF-8 text, skipped",
        *(f"Observation.ndjson:{n}: not JSON (nested too deeply), skipped" for n in numbers[1:]),
    ]


def test_batch_ndjson_with_hostile_lines_screens_every_good_patient_and_reports_the_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rls_screen.cli import main
    from rls_screen.settings import get_settings

    directory, numbers = _hostile_export(tmp_path / "export")
    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    argv = ["batch", "--ndjson", str(directory), "--dry-run", "--as-of", AS_OF.isoformat()]
    argv += ["--job-db", str(tmp_path / "jobs.sqlite"), "--report-dir", str(tmp_path / "reports")]
    try:
        code = main(argv)
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Observation.ndjson:{numbers[0]}: not UTF-8 text, skipped" in out
    assert f"Observation.ndjson:{numbers[1]}: not JSON (nested too deeply), skipped" in out
    store = JobStore(tmp_path / "jobs.sqlite")
    (job,) = store.job_ids()
    assert sorted(row.status for row in store.rows(job)) == ["done"] * 20
    store.close()
    assert list((tmp_path / "reports").glob("*.html"))


def test_a_line_that_no_longer_parses_when_read_back_fails_that_patient_only(tmp_path: Path) -> None:
    """The index holds byte ranges: a line rewritten in place (same size and time) fails its patient only."""
    write_ndjson(generate_panel(3, seed=4, as_of=AS_OF, id_prefix="rb"), tmp_path / "export")
    path = tmp_path / "export" / "Observation.ndjson"
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(tmp_path / "export")
    ids = list(dict.fromkeys(index.patient_ids()))
    data = path.read_bytes()
    first_line = data.split(b"\n", 1)[0]
    stat = path.stat()
    path.write_bytes(b"\xff" * len(first_line) + data[len(first_line) :])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    outcomes = [_outcome(index.patient_data, patient_id) for patient_id in ids]
    index.close()
    broken = [outcome for outcome in outcomes if outcome.startswith("InputError")]
    assert broken == ["InputError: Observation.ndjson: a line about this patient no longer parses (not UTF-8 text)"]
    assert len(outcomes) == 3
