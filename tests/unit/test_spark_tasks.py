"""The Spark engine's task functions without a JVM: each line and each patient decided as the NDJSON index does.

``spark_tasks`` runs inside Spark's Python tasks; here its stages are fed the Arrow batches Spark would give
them (lines with their file, block and row, Hadoop's BOM-stripped first line, a partition sorted by patient
cut into small batches), so a patient's lines straddle batches. Every patient's Outcome must be the one
``runner.offline_outcome`` gives over ``NdjsonIndex.patient_data``, and every skipped line the index's problem.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rls_screen.batch import sources
from rls_screen.batch.ndjson_lines import physical_lines
from rls_screen.batch.runner import offline_outcome
from rls_screen.batch.spark_tasks import (
    LINE_COLUMNS,
    UTF8_BOM,
    SourceFile,
    column_names,
    line_stage,
    line_verdict,
    patient_data_from_lines,
    screen_stage,
)
from rls_screen.knowledge import load_knowledge
from rls_screen.synth import generate_panel, write_ndjson

AS_OF = date(2026, 11, 25)


def _export(directory: Path) -> Path:
    write_ndjson(generate_panel(10, seed=8, as_of=AS_OF, id_prefix="tsk"), directory)
    observations = (directory / "Observation.ndjson").read_bytes().splitlines()
    other = json.loads(observations[1])
    other["subject"] = {"reference": "http://other.example/fhir/" + other["subject"]["reference"]}
    odd = [UTF8_BOM + observations[0], b"", b"{not json", b"\xff\xfe", json.dumps(other).encode(), b"[1]"]
    odd += [
        line.replace(b'"value":', b'"value":NaN,"x":', 1) if n % 4 == 0 else line
        for n, line in enumerate(observations[2:])
    ]
    (directory / "Observation.ndjson").write_bytes(
        b"".join(line + (b"\r\n" if n % 3 else b"\n") for n, line in enumerate(odd))
    )
    patients = (directory / "Patient.ndjson").read_bytes()
    (directory / "Patient.ndjson").write_bytes(patients + patients.splitlines()[2] + b"\n")  # a repeated patient
    return directory


def _files(directory: Path) -> list[SourceFile]:
    paths = sorted(p for p in directory.glob("*.ndjson") if p.name.split(".")[0] != "Group")
    return [SourceFile(p.as_uri(), p.name, p.read_bytes().startswith(UTF8_BOM)) for p in paths]


def _spark_lines(files: list[SourceFile], directory: Path, block_lines: int) -> list[dict[str, Any]]:
    """The rows Spark's text source gives: Hadoop drops a file's leading BOM; blocks of ``block_lines`` lines."""
    rows = []
    row_id = 0
    for source in files:
        data = (directory / source.name).read_bytes()
        for number, (_, _, content) in enumerate(physical_lines(data.removeprefix(UTF8_BOM))):
            block = (number // block_lines) * 1000
            rows.append({"content": content, "file_name": source.name, "block": block, "row": row_id})
            row_id += 1 if number % block_lines != block_lines - 1 else 1 << 20  # a new task: ids jump
    return rows


def test_line_verdict_gives_the_index_problems_and_patient_data_from_lines_its_patient_data(tmp_path: Path) -> None:
    directory = _export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(directory)
    files = _files(directory)
    problems, lines = [], {}
    for file_no, source in enumerate(files):
        last: list[str | None] = [None, None]
        for number, (_, _, content) in enumerate(physical_lines((directory / source.name).read_bytes()), start=1):
            patient_id, kind, problem = line_verdict(content, last)
            if problem is not None:
                problems.append(f"{source.name}:{number}: {problem}")
            if patient_id is not None and kind is not None:
                lines.setdefault(patient_id, []).append((kind, content, file_no))
    assert problems == index.problems
    assert any(":1: not JSON" in problem for problem in problems)  # the BOM line
    names = [source.name for source in files]
    for patient_id in dict.fromkeys(index.patient_ids()):
        assert repr(patient_data_from_lines(patient_id, lines[patient_id], names)) == repr(
            index.patient_data(patient_id)
        )
    index.close()


@pytest.mark.parametrize("batch_rows", [1, 7, 10_000])
def test_the_two_stages_give_each_patient_the_single_machine_outcome(tmp_path: Path, batch_rows: int) -> None:
    pa = pytest.importorskip("pyarrow")
    directory = _export(tmp_path / "export")
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(directory)
    files, knowledge = _files(directory), load_knowledge()
    rows = _spark_lines(files, directory, block_lines=13)
    schema = pa.schema(
        [("content", pa.binary()), ("file_name", pa.string()), ("block", pa.int64()), ("row", pa.int64())]
    )

    def batches(items: list[dict[str, Any]], arrow_schema: Any) -> list[Any]:
        return [
            pa.RecordBatch.from_pylist(items[i : i + batch_rows], schema=arrow_schema)
            for i in range(0, len(items), batch_rows)
        ]

    decided = [row for batch in line_stage(files)(iter(batches(rows, schema))) for row in batch.to_pylist()]
    # the shuffle: one partition, sorted by patient (problem and count rows first), then place in the files
    decided.sort(key=lambda r: (r["patient_id"] is not None, r["patient_id"] or "", r["file_no"], r["block"], r["row"]))
    line_schema = pa.schema(
        [
            (name, batch_type)
            for name, batch_type in zip(
                column_names(LINE_COLUMNS),
                [pa.string(), pa.string(), pa.binary(), pa.int32(), pa.int64(), pa.int64(), pa.string(), pa.int64()],
                strict=True,
            )
        ]
    )
    stage = screen_stage([source.name for source in files], knowledge, AS_OF)
    results = [row for batch in stage(iter(batches(decided, line_schema))) for row in batch.to_pylist()]

    screened = {
        r["patient_id"]: (r["patient_id"], r["result"], r["reason"]) for r in results if r["record"] == "patient"
    }
    expected = {
        pid: offline_outcome(index.patient_data, knowledge, AS_OF, pid) for pid in dict.fromkeys(index.patient_ids())
    }
    assert screened == expected
    assert sum(r["lines"] for r in results if r["record"] == "lines") == len(rows)
    notes = sorted(r["note"] for r in results if r["record"] == "problem")
    assert notes == sorted(problem.split(": ", 1)[1] for problem in index.problems)  # the BOM line's among them
    # the patients in the order of their first Patient line, as the index registers them
    first_lines = {r["patient_id"]: (r["file_no"], r["block"], r["row"]) for r in results if r["record"] == "patient"}
    assert sorted(first_lines, key=first_lines.__getitem__) == list(dict.fromkeys(index.patient_ids()))
    index.close()


def test_without_pyspark_the_modules_import_and_the_engine_names_the_extra() -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['pyspark'] = None; sys.modules['pyarrow'] = None\n"
        "import rls_screen.cli.batch, rls_screen.batch.spark_engine as engine\n"
        "from rls_screen.errors import ConfigurationError\n"
        "try:\n    engine.spark_session('local[1]')\n"
        "except ConfigurationError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert "needs the 'spark' extra" in done.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ndjson", "x", "--engine", "spark"], "add --dry-run"),
        (["--group", "Group/g", "--engine", "spark", "--dry-run"], "--engine spark reads --ndjson PATH"),
    ],
)
def test_the_spark_engine_refuses_what_it_does_not_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    from rls_screen.cli import main
    from rls_screen.settings import get_settings

    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert main(["batch", *arguments]) == 2
    get_settings.cache_clear()
    assert message in capsys.readouterr().err
