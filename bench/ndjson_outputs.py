"""Everything the offline NDJSON path outputs for a directory, in one folder, to diff two versions of the code.

    python bench/ndjson_outputs.py NDJSON_DIR OUT_DIR [AS_OF]
    python bench/ndjson_outputs.py --odd-panel PANEL_DIR     # write the odd-case panel first
    diff -r OUT_BEFORE OUT_AFTER

Runs ``rls-screen batch --ndjson DIR --dry-run`` and writes what a person or a later step reads: the
per-patient CSV and the HTML report (the job id and creation time masked), the job store's patient and
problem rows, the printed output, and the repr of every patient's whole Assessment (all fields, floats
exact), read from the index one patient at a time. The odd-case panel is a synthetic export with the odd
lines of real exports (a BOM, CR/CRLF, blank lines, NaN, a 30-digit integer, lone surrogates, bad JSON).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import sys
import tempfile
from datetime import date
from pathlib import Path

AS_OF = date(2026, 11, 25)


def write_odd_panel(directory: Path, patients: int = 300) -> Path:
    """A synthetic export whose Observation file holds the odd lines of real exports (as the unit tests do)."""
    from rls_screen.synth import generate_panel, write_ndjson

    write_ndjson(generate_panel(patients, seed=6, as_of=AS_OF, id_prefix="odd"), directory)
    observations = (directory / "Observation.ndjson").read_bytes().split(b"\n")
    odd = [b"\xef\xbb\xbf" + observations[0], b"", b"   ", b"{not json", b"[1]", b'{"resourceType":"Observation"}']
    for n, line in enumerate(observations[1:]):
        if not line:
            continue
        if n % 9 == 1:
            line = line.replace(b'"value":', b'"value":NaN,"x":', 1)
        elif n % 9 == 2:
            line = line.replace(b'"value":', b'"value":123456789012345678901234567890,"x":', 1)
        elif n % 9 == 3:
            line = line.replace(b'"status":"final"', b'"status":"final\\ud800"', 1)
        elif n % 9 == 4:
            line = line.replace(b'"value":', b'"value":"7.5","x":', 1)
        elif n % 9 == 5:
            line = line.replace(b'"code":{"coding":[', b'"code":{"coding":[7,', 1)
        elif n % 9 == 6:
            line = line.replace(b'"valueQuantity":{', b'"valueQuantity":{"comparator":"~",', 1)
        elif n % 9 == 7:
            line = line.replace(b'"status":', b'"status":"final","status":', 1)
        odd.append(line)
    text = b""
    for n, line in enumerate(odd):
        text += line + (b"\r\n" if n % 5 == 1 else b"\r" if n % 7 == 3 else b"\n")
    (directory / "Observation.ndjson").write_bytes(text)
    return directory


def capture(directory: Path, out: Path, as_of: date) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rls-ndjson-outputs-"))
    os.environ["RLS_SCREEN_STATE_DIR"] = str(work / "state")
    from rls_screen.assessment import assess
    from rls_screen.batch import sources
    from rls_screen.cli import main as cli
    from rls_screen.knowledge import load_knowledge

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(
            [
                "batch",
                "--ndjson",
                str(directory),
                "--dry-run",
                "--as-of",
                as_of.isoformat(),
                "--job-db",
                str(work / "jobs.sqlite"),
                "--report-dir",
                str(work / "reports"),
            ]
        )
    with sqlite3.connect(work / "jobs.sqlite") as db:
        job_id, created = db.execute("SELECT id, created FROM job").fetchone()

    def masked(text: str) -> str:
        return re.sub(r"/tmp/rls-ndjson-outputs-[^/\s]+", "WORK", text.replace(job_id, "JOB").replace(created, "T"))

    (out / "stdout.txt").write_text(masked(f"exit {code}\n{printed.getvalue()}"), encoding="utf-8")
    for path in sorted((work / "reports").rglob("*")):
        if path.is_file():
            name = masked(path.name)
            (out / f"report-{name}").write_text(masked(path.read_text(encoding="utf-8")), encoding="utf-8")
    with sqlite3.connect(work / "jobs.sqlite") as db:
        rows = db.execute(
            "SELECT position, patient_id, status, attempts, reason, result, written FROM patient ORDER BY position"
        ).fetchall()
        problems = db.execute("SELECT position, severity, text FROM job_problem ORDER BY position").fetchall()
    (out / "job-patients.txt").write_text("".join(f"{row!r}\n" for row in rows), encoding="utf-8")
    (out / "job-problems.txt").write_text("".join(f"{row!r}\n" for row in problems), encoding="utf-8")
    knowledge = load_knowledge()
    index = sources.NdjsonIndex(work / "assess-index.sqlite", workers=1)
    index.load(directory)
    with (out / "assessments.txt").open("w", encoding="utf-8") as stream:
        for patient_id in dict.fromkeys(index.patient_ids()):
            try:
                text = repr(assess(index.patient_data(patient_id), knowledge=knowledge, as_of=as_of))
            except Exception as error:
                text = f"{type(error).__name__}: {error}"
            stream.write(f"{patient_id}\t{text}\n")
    index.close()


def main() -> int:
    if sys.argv[1] == "--odd-panel":
        print(write_odd_panel(Path(sys.argv[2])))
        return 0
    as_of = date.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 else AS_OF
    capture(Path(sys.argv[1]), Path(sys.argv[2]), as_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
