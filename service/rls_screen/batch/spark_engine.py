"""``batch --ndjson PATH --engine spark``: the offline NDJSON screening as an Apache Spark job.

The plan (docs/spark.md): read every NDJSON file of the contract's types from any Hadoop-compatible path
(``file://``, ``hdfs://``, ``s3a://``) as lines with their place in the files; decide each line's patient
in Python tasks (``spark_tasks.line_stage``, the indexer's rule); shuffle by patient and sort each
partition by patient and place; screen each patient in Python tasks with the single-machine function
(``spark_tasks.screen_stage`` -> ``runner.offline_outcome``); write the per-patient results as Parquet.
The driver then fills the job store from that Parquet (patients in the order of their Patient lines, the
skipped lines with their file and line number), so the CSV and HTML report are ``batch/report.py``'s.

pyspark is imported inside the functions: the module imports (and the CLI runs) without the extra.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rls_screen.batch.jobs import Job, JobProblem, JobStore
from rls_screen.batch.runner import Outcome
from rls_screen.batch.spark_tasks import (
    LINE_COLUMNS,
    RESULT_COLUMNS,
    UTF8_BOM,
    SourceFile,
    line_stage,
    screen_stage,
)
from rls_screen.contract import CONTRACT_TYPES
from rls_screen.errors import ConfigurationError, InputError
from rls_screen.knowledge import Knowledge
from rls_screen.observability.metrics import batch_patient_finished
from rls_screen.observability.progress import Progress

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
RECORD_CHUNK = 1000
"""Patients registered and recorded in the job store per transaction, as the driver reads the results."""
PATIENT_COLUMNS = ("position", "patient_id", "status", "result", "reason")
"""The per-patient Parquet: position (order of the Patient lines), id, 'done' or 'failed', the stored result
(JSON text, as the job store holds it) or the reason it failed."""


def location_uri(location: str) -> str:
    """A Hadoop URI for a path: a local path (no scheme) becomes ``file:///absolute``; a URI stays as given."""
    if "://" in location:
        return location.rstrip("/")
    return Path(location).resolve().as_uri()


def job_source(location: str) -> str:
    """The job's source: that of the single-machine path (``ndjson:/abs/dir``) for a local path, so runs of the
    same panel on either engine are one panel's runs (trend, changes since the previous run)."""
    return f"ndjson:{location if '://' in location else Path(location).resolve()}"


@dataclass(frozen=True)
class SparkRun:
    counts: dict[str, int]
    problems: list[JobProblem]
    patients_parquet: str


def spark_session(master: str | None) -> SparkSession:
    """The session: ``master`` when given; the one spark-submit set up; else ``local[*]``.

    Local mode starts a JVM: Java 17 from JAVA_HOME or PATH (the Makefile and tests find it as
    deploy/fhir-server/java-env.sh does). Python tasks run this interpreter unless PYSPARK_PYTHON says otherwise.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise ConfigurationError("--engine spark needs the 'spark' extra: pip install 'rls-screen[spark]'") from error
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM first
    if not under_submit and not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise ConfigurationError("--engine spark needs Java 17: set JAVA_HOME or put java on PATH")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("rls-screen batch")
    if master or not under_submit:
        builder = builder.master(master or "local[*]")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(Hadoop Path, its FileSystem) through the JVM gateway (py4j objects: untyped)."""
    jvm: Any = spark.sparkContext._jvm  # the gateway: how PySpark reaches Hadoop FileSystem
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def source_files(spark: SparkSession, uri: str) -> list[SourceFile]:
    """The NDJSON files the single-machine indexer reads in the same directory, in its order (by name)."""
    path, fs = _hadoop_path(spark, uri)
    if not fs.exists(path) or not fs.getFileStatus(path).isDirectory():
        raise InputError(f"{uri} is not a directory")
    listed = [(status.getPath().getName(), status.getPath()) for status in fs.listStatus(path) if status.isFile()]
    files: list[SourceFile] = []
    for name, file_path in sorted(listed, key=lambda item: str(item[0])):
        name = str(name)
        if not name.endswith(".ndjson") or name.split(".")[0].split("-")[0] not in CONTRACT_TYPES:
            continue
        stream = fs.open(file_path)
        try:
            head = bytes(max(stream.read(), 0) for _ in UTF8_BOM)
        finally:
            stream.close()
        files.append(SourceFile(str(file_path.toString()), name, head == UTF8_BOM))
    if not any(source.name.startswith("Patient") for source in files):
        raise InputError(f"{uri} has no Patient*.ndjson file")
    return files


def screened_frame(
    spark: SparkSession, files: list[SourceFile], knowledge: Knowledge, as_of: date, partitions: int | None
) -> DataFrame:
    """The plan: lines -> each line's patient -> shuffle by patient, sorted by place -> one Outcome per patient."""
    from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention

    lines = spark.read.text([source.uri for source in files]).select(
        F.col("value").cast("binary").alias("content"),  # the line's bytes as in the file, not decoded
        F.col("_metadata.file_name").alias("file_name"),
        F.col("_metadata.file_block_start").alias("block"),
        F.monotonically_increasing_id().alias("row"),  # increasing through a block: with block, a line's place
    )
    decided = lines.mapInArrow(line_stage(files), LINE_COLUMNS)
    parts = partitions or 2 * spark.sparkContext.defaultParallelism
    by_patient = decided.repartition(parts, "patient_id").sortWithinPartitions("patient_id", "file_no", "block", "row")
    stage = screen_stage([source.name for source in files], knowledge, as_of)
    return by_patient.mapInArrow(stage, RESULT_COLUMNS)


def _problem_texts(screened: DataFrame, files: list[SourceFile]) -> list[JobProblem]:
    """The skipped lines as the indexer words them (``Observation.ndjson:12: not JSON, skipped``), in file order."""
    from pyspark.sql import functions as F  # noqa: N812

    blocks = (
        screened.where(F.col("record") == "lines")
        .groupBy("file_no", "block")
        .agg(F.sum("lines").alias("lines"), F.min("row").alias("first_row"))
        .collect()
    )
    before: dict[tuple[int, int], tuple[int, int]] = {}  # (file, block) -> (lines in earlier blocks, first row)
    running: dict[int, int] = {}
    for block in sorted(blocks, key=lambda b: (b["file_no"], b["block"])):
        before[(block["file_no"], block["block"])] = (running.get(block["file_no"], 0), block["first_row"])
        running[block["file_no"]] = running.get(block["file_no"], 0) + block["lines"]
    numbered = []
    for problem in screened.where(F.col("record") == "problem").collect():
        earlier, first_row = before[(problem["file_no"], problem["block"])]
        numbered.append((problem["file_no"], earlier + problem["row"] - first_row + 1, problem["note"]))
    return [JobProblem("warning", f"{files[f].name}:{line}: {note}") for f, line, note in sorted(numbered)]


def _delete(spark: SparkSession, uri: str) -> None:
    path, fs = _hadoop_path(spark, uri)
    fs.delete(path, True)


def _outcome_chunks(rows: Iterator[Any]) -> Iterator[list[tuple[int, Outcome]]]:
    chunk: list[tuple[int, Outcome]] = []
    for row in rows:
        chunk.append((row["position"], (row["patient_id"], row["result"], row["reason"])))
        if len(chunk) >= RECORD_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _record(store: JobStore, job: Job, outcomes: list[Outcome], progress: Progress) -> None:
    """Record a batch of outcomes in one job-store transaction (no runner claims them: the Spark job screened them)."""
    done = [(patient_id, text, False) for patient_id, text, _ in outcomes if text is not None]
    failed = [(patient_id, reason or "internal error") for patient_id, text, reason in outcomes if text is None]
    store.mark_many(job.id, done, failed)
    for _, text, reason in outcomes:
        batch_patient_finished(None if text is not None else reason or "internal error")
        progress.step(failed=text is None)


def run_spark_job(
    store: JobStore,
    job: Job,
    location: str,
    knowledge: Knowledge,
    *,
    output: str,
    master: str | None = None,
    partitions: int | None = None,
) -> SparkRun:
    """Screen the NDJSON files at ``location`` with Spark; register and record every patient in the job store.

    ``output`` (a Hadoop URI) receives ``patients.parquet`` (``PATIENT_COLUMNS``). Returns the final counts.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812

    spark = spark_session(master)
    if not str(spark.sparkContext.master).startswith("local") and output.startswith("file:"):
        raise InputError("on a cluster, give --spark-output on storage every executor writes to (hdfs://, s3a://)")
    files = source_files(spark, location_uri(location))
    staging, patients_uri = f"{output}/_screened.parquet", f"{output}/patients.parquet"
    # one pass over the data: every row the plan makes (patients, skipped lines, line counts) is staged once
    screened_frame(spark, files, knowledge, job.as_of, partitions).write.mode("overwrite").parquet(staging)
    screened = spark.read.parquet(staging)
    problems = _problem_texts(screened, files)
    order = Window.orderBy("file_no", "block", "row")
    (
        screened.where(F.col("record") == "patient")
        .select(
            (F.row_number().over(order) - 1).alias("position"),
            "patient_id",
            F.when(F.col("result").isNotNull(), "done").otherwise("failed").alias("status"),
            "result",
            "reason",
        )
        .write.mode("overwrite")
        .parquet(patients_uri)
    )
    _delete(spark, staging)
    patients = spark.read.parquet(patients_uri)
    total = patients.count()
    if total == 0:
        raise InputError("the export holds no Patient resources")
    store.add_problems(job.id, problems)
    progress = Progress(total)
    for chunk in _outcome_chunks(patients.orderBy("position").toLocalIterator()):
        store.add_patients(job.id, (outcome[0] for _, outcome in chunk), start=chunk[0][0])
        _record(store, job, [outcome for _, outcome in chunk], progress)
    progress.close()
    counts = store.counts(job.id)
    store.set_job_status(job.id, "complete" if counts["pending"] == 0 else "incomplete")
    return SparkRun(counts, problems, patients_uri)
