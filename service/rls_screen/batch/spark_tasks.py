"""What runs inside the Spark tasks of ``batch --engine spark``: one NDJSON line's patient, one patient's Outcome.

Two stages, both ``mapInArrow`` functions over Arrow record batches (``spark_engine`` builds the plan):

- ``line_stage`` decides each line as the NDJSON indexer does (``ndjson_lines.line_patient``, the same
  problems for blank, bad and patient-less lines), keeping the line's bytes and its place in the files.
- ``screen_stage`` receives a partition sorted by patient and by place in the files, rebuilds each
  patient's ``PatientData`` from their lines in file order (as ``NdjsonIndex.patient_data`` reads them) and
  calls ``runner.offline_outcome``: the function the single-machine offline path calls for each patient.

No pyspark import here (the tasks get pyarrow batches), and pyarrow is imported when a stage runs, so
the module imports without the ``spark`` extra and its per-line logic is tested without a JVM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from rls_screen.batch.ndjson_index import patient_data_of
from rls_screen.batch.ndjson_lines import BadLineError, is_plain, line_patient, parse_line
from rls_screen.batch.runner import Outcome, offline_outcome
from rls_screen.errors import InputError
from rls_screen.knowledge import Knowledge
from rls_screen.patient_data import PatientData

UTF8_BOM = b"\xef\xbb\xbf"
RecordBatches = Iterator[Any]
"""pyarrow ``RecordBatch``es (pyarrow has no type stubs: Any at this seam)."""
ArrowStage = Callable[[RecordBatches], RecordBatches]

LINE_COLUMNS = (
    "patient_id string, kind string, content binary, file_no int, block long, row long, note string, lines long"
)
"""The line stage's rows: a patient's line, or (patient_id null) a problem line (note) or a count of lines."""
RESULT_COLUMNS = (
    "record string, patient_id string, result string, reason string, "
    "file_no int, block long, row long, note string, lines long"
)
"""The screen stage's rows: record 'patient' (result or reason; file_no/block/row: its first Patient line),
'problem' (a line skipped, note) or 'lines' (lines of one file block seen, to number the problem lines)."""


@dataclass(frozen=True)
class SourceFile:
    """One NDJSON file of the job, as the driver listed it (file numbers follow the index's order: by name)."""

    uri: str
    name: str
    starts_with_bom: bool
    """Hadoop's line reader drops a UTF-8 BOM at the start of a file; the line stage puts it back, so the first
    line is decided as the single-machine reader decides it (a BOM is not JSON: that line is skipped)."""


def line_verdict(content: bytes, last: list[str | None]) -> tuple[str | None, str | None, str | None]:
    """(patient id, resource type, problem) of one line, as ``ndjson_index`` decides it when indexing.

    A blank line gives (None, None, None); a line that is not JSON, not UTF-8 or names no patient gives a
    problem text (no content, so no PHI).
    """
    if not content.strip():
        return None, None, None
    try:
        return line_patient(content, is_plain(content), last)
    except BadLineError as bad:
        # text mode strips more than bytes.strip() (e.g. U+00A0, U+001C): such a line was blank too
        if content.decode("utf-8", errors="replace").strip():
            return None, None, f"{bad}, skipped"
        return None, None, None


def line_stage(files: Sequence[SourceFile]) -> ArrowStage:
    """The ``mapInArrow`` function of the first stage: input columns content, file_name, block, row."""
    numbers = {source.name: (file_no, source.starts_with_bom) for file_no, source in enumerate(files)}

    def run(batches: RecordBatches) -> RecordBatches:
        import pyarrow as pa  # type: ignore[import-untyped]  # no stubs: batches are Any here

        schema = _arrow_schema(LINE_COLUMNS)
        last: list[str | None] = [None, None]
        first_line_seen: set[int] = set()
        for batch in batches:
            out: dict[str, list[Any]] = {name: [] for name in schema.names}
            counts: dict[tuple[int, int], list[int]] = {}
            columns = (batch.column(name).to_pylist() for name in ("content", "file_name", "block", "row"))
            for content, name, block, row in zip(*columns, strict=True):
                file_no, bom = numbers[name]
                if bom and block == 0 and file_no not in first_line_seen:
                    # a file's first block is read by one task, in order: its first row is the file's first line
                    first_line_seen.add(file_no)
                    content = UTF8_BOM + content
                seen = counts.setdefault((file_no, block), [0, row])
                seen[0] += 1
                seen[1] = min(seen[1], row)
                patient_id, kind, problem = line_verdict(content, last)
                if patient_id is not None:
                    _append(out, patient_id, kind, content, file_no, block, row, None, None)
                elif problem is not None:
                    _append(out, None, None, None, file_no, block, row, problem, None)
            for (file_no, block), (lines, first_row) in counts.items():
                _append(out, None, None, None, file_no, block, first_row, None, lines)
            yield pa.RecordBatch.from_pydict(out, schema=schema)

    return run


def patient_data_from_lines(
    patient_id: str, lines: Sequence[tuple[str, bytes, int]], names: Sequence[str]
) -> PatientData:
    """One patient's data from their (type, line, file number), in file order: what ``NdjsonIndex.patient_data``
    gives for the same lines (``ndjson_index.patient_data_of``, the one assembly of both paths)."""

    def parsed() -> Iterator[tuple[str, Mapping[str, Any]]]:
        for kind, content, file_no in lines:
            try:
                yield kind, parse_line(content, is_plain(content))
            except BadLineError as bad:  # accepted by line_verdict: only a json module out of stack comes here
                raise InputError(f"{names[file_no]}: a line about this patient no longer parses ({bad})") from None

    return patient_data_of(patient_id, parsed())


def screen_lines(
    patient_id: str, lines: Sequence[tuple[str, bytes, int]], names: Sequence[str], knowledge: Knowledge, as_of: date
) -> Outcome:
    """One patient's Outcome from their lines: ``runner.offline_outcome``, the single-machine path's function."""
    return offline_outcome(lambda pid: patient_data_from_lines(pid, lines, names), knowledge, as_of, patient_id)


def screen_stage(names: Sequence[str], knowledge: Knowledge, as_of: date) -> ArrowStage:
    """The ``mapInArrow`` function of the second stage: a partition sorted by patient_id, file_no, block, row.

    A patient's lines may straddle record batches; the patient is screened when the next one starts.
    Lines of an id without a Patient line are not screened (the single-machine path registers patients
    from the Patient file only). Problem and count rows pass through.
    """
    names = tuple(names)

    def run(batches: RecordBatches) -> RecordBatches:
        import pyarrow as pa

        schema = _arrow_schema(RESULT_COLUMNS)
        current: str | None = None
        lines: list[tuple[str, bytes, int]] = []
        first_patient_line: tuple[int, int, int] | None = None

        def flush(out: dict[str, list[Any]]) -> None:
            if current is None or first_patient_line is None:
                return
            _, result, reason = screen_lines(current, lines, names, knowledge, as_of)
            _append(out, "patient", current, result, reason, *first_patient_line, None, None)

        for batch in batches:
            out: dict[str, list[Any]] = {name: [] for name in schema.names}
            columns = (batch.column(name).to_pylist() for name in column_names(LINE_COLUMNS))
            for patient_id, kind, content, file_no, block, row, note, count in zip(*columns, strict=True):
                if patient_id is None:
                    _append(
                        out,
                        "problem" if note is not None else "lines",
                        None,
                        None,
                        None,
                        file_no,
                        block,
                        row,
                        note,
                        count,
                    )
                    continue
                if patient_id != current:
                    flush(out)
                    current, lines, first_patient_line = patient_id, [], None
                lines.append((kind, content, file_no))
                if kind == "Patient" and first_patient_line is None:
                    first_patient_line = (file_no, block, row)
            yield pa.RecordBatch.from_pydict(out, schema=schema)
        out = {name: [] for name in schema.names}
        flush(out)
        yield pa.RecordBatch.from_pydict(out, schema=schema)

    return run


def _append(out: dict[str, list[Any]], *values: Any) -> None:
    for column, value in zip(out.values(), values, strict=True):
        column.append(value)


def column_names(columns: str) -> list[str]:
    return [field.split()[0] for field in columns.split(",")]


_ARROW_TYPES = {"string": "string", "binary": "binary", "int": "int32", "long": "int64"}


def _arrow_schema(columns: str) -> Any:
    import pyarrow as pa

    fields = [field.strip().split(" ") for field in columns.split(",")]
    return pa.schema([(name, getattr(pa, _ARROW_TYPES[kind])()) for name, kind in fields])
