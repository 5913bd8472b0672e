"""NDJSON files (a Bulk $export, or already on disk) indexed by patient, read back one patient at a time.

The index is a small SQLite file of where each patient's lines are (byte ranges), not the lines
themselves, so memory stays flat however large the panel is. Lines that are not JSON, not UTF-8, nested
too deeply or without a patient are skipped and reported (``NdjsonIndex.problems``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.context
import os
import sqlite3
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from rls_screen.batch.ndjson_lines import (
    BadLineError,
    is_plain,
    line_contents,
    line_patient,
    parse_line,
    physical_lines,
)
from rls_screen.batch.ndjson_lines import patient_id_from_text as patient_id_from_text
from rls_screen.contract import CONTRACT_TYPES
from rls_screen.errors import InputError
from rls_screen.patient_data import PatientData, group_resources

NDJSON_TYPES = CONTRACT_TYPES

_NDJSON_SCHEMA = """
CREATE TABLE IF NOT EXISTS source_file (
    file_no INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run (
    patient_id TEXT NOT NULL, type TEXT NOT NULL, file_no INTEGER NOT NULL,
    start INTEGER NOT NULL, stop INTEGER NOT NULL, lines INTEGER NOT NULL, plain INTEGER NOT NULL
);
"""
_StoredRun = tuple[str, int, int, int, int]
"""(type, file_no, start, stop, plain) of one run, as the index returns it for a patient."""
_IDS_PER_QUERY = 500
"""Patient ids per ``IN (...)`` query (SQLite allows at least 999 parameters)."""
_CHUNK_BYTES = 4 << 20
"""Work unit of the parallel indexing scan: a slice of one file, cut after a newline."""
_PARALLEL_FROM_BYTES = 32 << 20
"""Below this much NDJSON, indexing runs in-process (starting workers would cost more than it saves)."""


class _Run(NamedTuple):
    """Consecutive lines of one file about one patient and of one resource type: [start, stop) in bytes.

    A tuple (not a dataclass): a chunk of a Patient file yields one run per line, sent between processes.
    """

    patient_id: str
    kind: str
    file_no: int
    start: int
    stop: int
    lines: int
    plain: bool
    """Every line parses the same with orjson as with the json module (so the reader may use orjson)."""


@dataclass(frozen=True)
class _ChunkScan:
    file_no: int
    runs: list[_Run]
    problems: list[tuple[int, str]]
    """(line number within the chunk, 1-based; problem without the file:line prefix)."""
    lines: int


def _scan_chunk(task: tuple[int, str, int, int]) -> _ChunkScan:
    """Find the type and patient of every line of one slice of a file; group consecutive lines of one patient into runs.

    Lines are not made into Python objects here (``ndjson_lines.line_patient``): the reader parses each
    line once, when its patient is screened.
    """
    file_no, path, offset, stop = task
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read(stop - offset)
    chunk_plain = is_plain(data)
    runs: list[_Run] = []
    problems: list[tuple[int, str]] = []
    # the run being built, as locals (this loop runs once per line of the export)
    run_patient: str | None = None
    run_kind = ""
    run_start = run_stop = run_lines = 0
    run_plain = True
    last_reference: list[str | None] = [None, None]
    number = 0
    for number, (start, end, content) in enumerate(physical_lines(data), start=1):
        patient_id = kind = None
        plain = chunk_plain or is_plain(content)
        if content.strip():  # else a blank line, skipped
            try:
                patient_id, kind, problem = line_patient(content, plain, last_reference)
            except BadLineError as bad:
                # text mode strips more than bytes.strip() (e.g. U+00A0, U+001C): such a line was blank too
                if content.decode("utf-8", errors="replace").strip():
                    problems.append((number, f"{bad}, skipped"))
            else:
                if problem is not None:
                    problems.append((number, problem))
        if patient_id is not None and kind is not None and patient_id == run_patient and kind == run_kind:
            run_stop = offset + end
            run_lines += 1
            run_plain = run_plain and plain
            continue
        if run_patient is not None:
            runs.append(_Run(run_patient, run_kind, file_no, run_start, run_stop, run_lines, run_plain))
        run_patient = patient_id
        if patient_id is not None and kind is not None:
            run_kind, run_start, run_stop, run_lines, run_plain = kind, offset + start, offset + end, 1, plain
    if run_patient is not None:
        runs.append(_Run(run_patient, run_kind, file_no, run_start, run_stop, run_lines, run_plain))
    return _ChunkScan(file_no, runs, problems, number)


def _chunks(file_no: int, path: Path, chunk_bytes: int) -> Iterator[tuple[int, str, int, int]]:
    """Slices of a file of about ``chunk_bytes``, each ending just after a newline (or at the end)."""
    size = path.stat().st_size
    start = 0
    with path.open("rb") as stream:
        while start < size:
            stop = min(start + chunk_bytes, size)
            if stop < size:
                stream.seek(stop)
                while True:
                    block = stream.read(1 << 16)
                    newline = block.find(b"\n")
                    if newline >= 0:
                        stop += newline + 1
                        break
                    if not block:
                        stop = size
                        break
                    stop += len(block)
            yield file_no, str(path), start, stop
            start = stop


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where it is safe and cheap (Linux: workers inherit the loaded modules), spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _ordered_in_processes(
    executor: ProcessPoolExecutor, work: Callable[[Any], Any], tasks: Iterator[Any], window: int
) -> Iterator[Any]:
    """``map`` over worker processes, in task order, with at most ``window`` tasks in flight (memory stays flat).

    A worker that dies raises ``BrokenProcessPool`` here instead of leaving the caller waiting.
    """
    in_flight: deque[Future[Any]] = deque()
    for task in tasks:
        in_flight.append(executor.submit(work, task))
        if len(in_flight) >= window:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


class NdjsonIndex:
    """Where each patient's lines are in the NDJSON files (an SQLite file of runs), to read one patient at a time.

    Indexing checks every line and reads its type and patient (msgspec, without building the line's
    objects; across processes for large exports) and records, per file, the byte ranges of consecutive
    lines about one patient; the resources themselves stay in the files, so the index is small and
    memory stays flat however large the panel is. Reading a patient reads its byte ranges back and
    parses them: the one parse of each line into Python objects. The files must not change while a job
    uses the index: each file's size and modification time are recorded and checked when the index is
    reopened.
    """

    def __init__(self, path: Path, *, workers: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._legacy = self._has_table("resource")
        """An index written by an earlier version: resource bodies stored in the table itself."""
        if not self._legacy:
            self._db.executescript(_NDJSON_SCHEMA)
        self.problems: list[str] = []
        self._files: dict[int, int] = {}
        self._files_lock = threading.Lock()
        self._file_paths = self._check_files()

    def _has_table(self, name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def _check_files(self) -> dict[int, str]:
        if self._legacy:
            return {}
        paths: dict[int, str] = {}
        for file_no, path, size, mtime_ns in self._db.execute("SELECT file_no, path, size, mtime_ns FROM source_file"):
            try:
                stat = os.stat(path)
            except OSError as error:
                raise InputError(f"{path}, indexed for this job, cannot be read: {error.strerror}") from error
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                raise InputError(f"{path} changed after it was indexed for this job; start a new job")
            paths[file_no] = path
        return paths

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        """Pickles as its path: a worker process reopens the index with its own connection."""
        return NdjsonIndex, (self.path,)

    def close(self) -> None:
        self._db.close()
        with self._files_lock:
            for descriptor in self._files.values():
                os.close(descriptor)
            self._files.clear()

    def load(self, directory: Path) -> int:
        """Index every *.ndjson file of the resource types we use; returns resources indexed."""
        if not directory.is_dir():
            raise InputError(f"{directory} is not a directory")
        files = sorted(p for p in directory.glob("*.ndjson") if p.name.split(".")[0].split("-")[0] in NDJSON_TYPES)
        if not any(p.name.startswith("Patient") for p in files):
            raise InputError(f"{directory} has no Patient*.ndjson file")
        if self._legacy:  # pragma: no cover - only indexes written by an earlier version are legacy
            raise InputError(f"{self.path} was written by an earlier version; start a new job")
        first = int(self._db.execute("SELECT COALESCE(MAX(file_no), -1) + 1 FROM source_file").fetchone()[0])
        numbered = list(enumerate(files, start=first))
        for file_no, path in numbered:
            stat = path.stat()
            self._db.execute(
                "INSERT INTO source_file VALUES (?, ?, ?, ?)",
                (file_no, str(path.resolve()), stat.st_size, stat.st_mtime_ns),
            )
            self._file_paths[file_no] = str(path.resolve())
        tasks = (task for file_no, path in numbered for task in _chunks(file_no, path.resolve(), _CHUNK_BYTES))
        total_bytes = sum(path.stat().st_size for _, path in numbered)
        indexed = 0
        pending: _Run | None = None
        lines_before: dict[int, int] = {}
        batch: list[tuple[str, str, int, int, int, int, int]] = []

        def flush(run: _Run) -> None:
            batch.append((run.patient_id, run.kind, run.file_no, run.start, run.stop, run.lines, int(run.plain)))
            if len(batch) >= 5000:
                self._db.executemany("INSERT INTO run VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                batch.clear()

        names = {file_no: path.name for file_no, path in numbered}
        with contextlib.ExitStack() as stack:
            scans: Iterator[_ChunkScan]
            if self._workers > 1 and total_bytes >= _PARALLEL_FROM_BYTES:
                pool = stack.enter_context(ProcessPoolExecutor(self._workers, mp_context=_pool_context()))
                scans = _ordered_in_processes(pool, _scan_chunk, tasks, 2 * self._workers)
            else:
                scans = map(_scan_chunk, tasks)
            for scan in scans:
                file_no = scan.file_no
                before = lines_before.get(file_no, 0)
                lines_before[file_no] = before + scan.lines
                self.problems.extend(f"{names[file_no]}:{before + n}: {problem}" for n, problem in scan.problems)
                for run in scan.runs:
                    indexed += run.lines
                    if (
                        pending is not None
                        and pending.stop == run.start
                        and (pending.patient_id, pending.kind, pending.file_no) == (run.patient_id, run.kind, file_no)
                    ):  # one run cut in two by a chunk boundary
                        pending = _Run(
                            run.patient_id,
                            run.kind,
                            file_no,
                            pending.start,
                            run.stop,
                            pending.lines + run.lines,
                            pending.plain and run.plain,
                        )
                        continue
                    if pending is not None:
                        flush(pending)
                    pending = run
        if pending is not None:
            flush(pending)
        self._db.executemany("INSERT INTO run VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        self._db.execute("CREATE INDEX IF NOT EXISTS run_by_patient ON run (patient_id)")
        self._db.commit()
        return indexed

    def patient_ids(self) -> Iterator[str]:
        if self._legacy:
            query = "SELECT patient_id, 1 FROM resource WHERE type = 'Patient' ORDER BY rowid"
        else:
            query = "SELECT patient_id, lines FROM run WHERE type = 'Patient' ORDER BY rowid"
        for patient_id, lines in self._db.execute(query):
            for _ in range(lines):
                yield patient_id

    def _descriptor(self, file_no: int) -> int:
        with self._files_lock:
            descriptor = self._files.get(file_no)
            if descriptor is None:
                descriptor = os.open(self._file_paths[file_no], os.O_RDONLY)
                self._files[file_no] = descriptor
            return descriptor

    def _runs(self, patient_id: str) -> list[_StoredRun]:
        return self._db.execute(
            "SELECT type, file_no, start, stop, plain FROM run WHERE patient_id = ? ORDER BY rowid", (patient_id,)
        ).fetchall()

    def _resources(self, patient_id: str, runs: list[_StoredRun] | None = None) -> Iterator[tuple[str, Any]]:
        """(type, parsed resource) of every line about this patient, in file order."""
        if self._legacy:
            rows = self._db.execute(
                "SELECT type, body FROM resource WHERE patient_id = ? ORDER BY rowid", (patient_id,)
            ).fetchall()
            for kind, body in rows:
                yield kind, json.loads(body)
            return
        for kind, file_no, start, stop, plain in self._runs(patient_id) if runs is None else runs:
            data = os.pread(self._descriptor(file_no), stop - start, start)
            if len(data) != stop - start:
                raise InputError(f"{self._file_paths[file_no]} changed after it was indexed for this job")
            contents = line_contents(data)
            try:
                if plain:  # the common case: every line of the run parsed by orjson at once (same objects)
                    try:
                        resources = [orjson.loads(content) for content in contents]
                    except orjson.JSONDecodeError:
                        resources = [parse_line(content, True) for content in contents]
                else:
                    resources = [parse_line(content, False) for content in contents]
            except BadLineError as bad:
                # Parsed when indexed: the file changed in place, or the json module ran out of stack
                # here where it did not while indexing. This patient fails; the batch goes on.
                name = Path(self._file_paths[file_no]).name
                raise InputError(f"{name}: a line about this patient no longer parses ({bad})") from None
            for resource in resources:
                yield kind, resource

    def patient_data(self, patient_id: str, runs: list[_StoredRun] | None = None) -> PatientData:
        """One patient's resources, read back from the files (``runs``: already fetched by ``loader_for``)."""
        return patient_data_of(patient_id, self._resources(patient_id, runs))

    def loader_for(self, patient_ids: list[str]) -> Callable[[str], PatientData]:
        """``patient_data`` for a batch of patients, their runs fetched in one query instead of one per patient.

        Gives the same data, or raises the same error, for each patient as ``patient_data`` does.
        """
        if self._legacy or not patient_ids:
            return self.patient_data
        runs: dict[str, list[_StoredRun]] = {patient_id: [] for patient_id in patient_ids}
        for first in range(0, len(patient_ids), _IDS_PER_QUERY):
            some = patient_ids[first : first + _IDS_PER_QUERY]
            placeholders = ", ".join("?" * len(some))  # only "?" is formatted in; the ids are parameters
            query = "SELECT patient_id, type, file_no, start, stop, plain FROM run WHERE patient_id IN "
            rows = self._db.execute(query + f"({placeholders}) ORDER BY rowid", some)
            for patient_id, kind, file_no, start, stop, plain in rows:
                runs[patient_id].append((kind, file_no, start, stop, plain))

        def load(patient_id: str) -> PatientData:
            known = runs.get(patient_id)
            return self.patient_data(patient_id, known)

        return load


def patient_data_of(patient_id: str, resources: Iterable[tuple[str, Mapping[str, Any]]]) -> PatientData:
    """One patient's data from their (resource type, resource) in file order: the last Patient line is the
    Patient, the rest sorted by ``group_resources``. The one assembly of the NDJSON and Spark paths."""
    patient: Mapping[str, Any] | None = None
    others: list[Mapping[str, Any]] = []
    for kind, resource in resources:
        if kind == "Patient":
            patient = resource
        else:
            others.append(resource)
    if patient is None:
        raise InputError(f"Patient/{patient_id} is not in the NDJSON files")
    return group_resources(patient, others)
