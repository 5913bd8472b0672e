"""The DuckDB reference point for the NDJSON path: one plain SQL query over the same files.

Simplified rules, on purpose (it is a yardstick for speed, not a second rule engine): for each patient,
the latest usable result (status final/amended/corrected, dated 0..365 days before the as-of date,
``effectiveDateTime`` only, the value taken at face value whatever its comparator) of ferritin,
haemoglobin, eGFR, potassium, magnesium and calcium (ionized, else total uncorrected), converted to
the canonical unit with the module's own unit table, judged against the rule set's thresholds:
ferritin < 15 and <= 75 ug/L; Hb below the adult male/female cut-off (sex from Patient.gender);
eGFR < 60 and < 15; K < 3.5 and > 5.0; Mg < 0.7; ionized Ca < 1.15 or total Ca < 2.12 mmol/L.
LOINC codes, factors and thresholds are read from the module's data files, so both sides use the same
numbers. The query returns one row of flags per patient, fetched into Python.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from rls_screen.codesets import LOINC, UCUM
from rls_screen.knowledge import Knowledge, load_knowledge

ANALYTES = ("ferritin", "hemoglobin", "egfr", "potassium", "magnesium", "calcium-total", "calcium-ionized")


def _values(rows: list[tuple[Any, ...]]) -> str:
    def literal(value: Any) -> str:
        return repr(float(value)) if isinstance(value, int | float) else "'" + str(value).replace("'", "''") + "'"

    return ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)


def reference_sql(directory: Path, as_of: date, knowledge: Knowledge) -> str:
    codes = [
        (code, analyte)
        for analyte, loincs in sorted(knowledge.terminology.analyte_loinc_codes().items())
        if analyte in ANALYTES
        for code in sorted(loincs)
    ]
    factors = [
        (analyte, unit, factor.apply(1.0))
        for analyte in ANALYTES
        for unit, factor in sorted(knowledge.units.factors[analyte].items())
    ]
    rules = knowledge.ruleset
    iron, anemia, kidney, el = rules.iron, rules.anemia, rules.kidney, rules.electrolytes
    lower = {band.category: band.below for band in kidney.gfr_categories if band.below is not None}
    statuses = ", ".join(f"'{s}'" for s in rules.selection.usable_statuses)
    since = as_of - timedelta(days=rules.selection.window_days)
    observations = str(directory / "Observation*.ndjson")
    patients = str(directory / "Patient*.ndjson")
    return f"""
WITH codes(code, analyte) AS (VALUES {_values(codes)}),
factors(analyte, unit, factor) AS (VALUES {_values(factors)}),
obs AS (
    SELECT subject.reference AS subject, status, effectiveDateTime AS effective,
           code.coding AS codings, valueQuantity AS q
    FROM read_ndjson('{observations}', columns = {{
        'status': 'VARCHAR',
        'code': 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])',
        'subject': 'STRUCT(reference VARCHAR)',
        'effectiveDateTime': 'VARCHAR',
        'valueQuantity': 'STRUCT(value DOUBLE, comparator VARCHAR, unit VARCHAR, system VARCHAR, code VARCHAR)'
    }})
    WHERE status IN ({statuses}) AND valueQuantity.value IS NOT NULL AND effectiveDateTime IS NOT NULL
),
usable AS (
    SELECT substr(o.subject, 9) AS patient, c.analyte, CAST(o.effective AS TIMESTAMPTZ) AS taken,
           o.q.value * f.factor AS value
    FROM obs o
    JOIN codes c ON c.code = o.codings[1].code AND o.codings[1].system = '{LOINC}'
    JOIN factors f ON f.analyte = c.analyte AND f.unit = o.q.code AND o.q.system = '{UCUM}'
    WHERE CAST(substr(o.effective, 1, 10) AS DATE) BETWEEN DATE '{since}' AND DATE '{as_of}'
),
latest AS (
    SELECT patient,
           arg_max(value, taken) FILTER (WHERE analyte = 'ferritin') AS ferritin,
           arg_max(value, taken) FILTER (WHERE analyte = 'hemoglobin') AS hb,
           arg_max(value, taken) FILTER (WHERE analyte = 'egfr') AS egfr,
           arg_max(value, taken) FILTER (WHERE analyte = 'potassium') AS k,
           arg_max(value, taken) FILTER (WHERE analyte = 'magnesium') AS mg,
           arg_max(value, taken) FILTER (WHERE analyte = 'calcium-ionized') AS ica,
           arg_max(value, taken) FILTER (WHERE analyte = 'calcium-total') AS tca
    FROM usable GROUP BY patient
),
sex AS (SELECT id AS patient, gender FROM read_ndjson('{patients}', columns = {{'id': 'VARCHAR', 'gender': 'VARCHAR'}}))
SELECT s.patient,
       l.ferritin < {iron.deficiency.ferritin_below} AS iron_deficiency,
       l.ferritin <= {iron.insufficient_for_rls.ferritin_at_most} AS iron_insufficient,
       l.ferritin IS NULL AS missing_ferritin,
       l.hb < CASE s.gender WHEN 'male' THEN {anemia.adult["male"].below} ELSE {anemia.adult["female"].below} END
           AS anemia,
       l.egfr < {lower["G3a"]} AS reduced_kidney_function,
       l.egfr < {lower["G5"]} AS kidney_failure,
       l.k < {el.hypokalemia.below} AS hypokalemia,
       l.k > {el.hyperkalemia.above} AS hyperkalemia,
       l.mg < {el.hypomagnesemia.below} AS hypomagnesemia,
       coalesce(l.ica < {el.hypocalcemia.ionized_below}, l.tca < {el.hypocalcemia.corrected_total_below})
           AS hypocalcemia
FROM sex s LEFT JOIN latest l USING (patient)
"""


def run_reference(directory: Path, as_of: date, knowledge: Knowledge | None = None) -> tuple[int, dict[str, int]]:
    """Run the query; returns (patients, count of patients per flag)."""
    sql = reference_sql(directory, as_of, knowledge or load_knowledge())
    connection = duckdb.connect()
    try:
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description][1:]
        rows = cursor.fetchall()
    finally:
        connection.close()
    counts = {name: sum(1 for row in rows if row[i + 1]) for i, name in enumerate(names)}
    return len(rows), counts


def main() -> int:
    """``python bench/duckdb_reference.py DIR [AS_OF]``: one timed run; prints one JSON line (own process, own RSS)."""
    as_of = date.fromisoformat(sys.argv[2]) if len(sys.argv) > 2 else date(2026, 11, 25)
    knowledge = load_knowledge()
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    patients, counts = run_reference(Path(sys.argv[1]), as_of, knowledge)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        json.dumps(
            {"patients": patients, "wall_s": wall, "cpu_s": cpu, "rss_mb": after.ru_maxrss / 1024, "flags": counts}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
