"""Writing a panel out as Bulk-style NDJSON: one file per resource type, as ``$export`` lays them out.

Streams: records go out as they are drawn, so a panel of 100k never sits in memory.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final

import orjson

from rls_screen.errors import InputError
from rls_screen.synth.records import Panel, PatientRecord
from rls_screen.synth.resources import build_group

PanelSource = Panel | Iterable[PatientRecord]
"""A generated panel, or a stream of records (``iter_patient_records``) for panels too big to hold."""

NDJSON_TYPES: Final = ("Patient", "Condition", "Observation", "MedicationRequest", "Procedure", "Group")


def records_of(source: PanelSource) -> Iterable[PatientRecord]:
    return source.patients if isinstance(source, Panel) else source


class NdjsonWriter:
    """Streams records into one NDJSON file per resource type, as Bulk ``$export`` lays them out.

    Files are written as ``<Type>.ndjson.part`` and renamed on ``close()``; the Group (all members)
    is written last. ``manifest=True`` adds ``manifest.jsonl`` (one ManifestEntry per line; not
    ``.ndjson`` so a Bulk loader globbing ``*.ndjson`` skips it).
    """

    def __init__(self, out_dir: Path, *, manifest: bool = False) -> None:
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"cannot create output directory {self.out_dir}: {error.strerror}") from error
        names = [*NDJSON_TYPES, "manifest"] if manifest else list(NDJSON_TYPES)
        self.paths = {
            name: self.out_dir / ("manifest.jsonl" if name == "manifest" else f"{name}.ndjson") for name in names
        }
        self._files = {name: path.with_name(path.name + ".part").open("wb") for name, path in self.paths.items()}
        self._patient_ids: list[str] = []
        self._panel_id: str | None = None
        self.counts: Counter[str] = Counter()

    def add(self, record: PatientRecord) -> None:
        self._panel_id = self._panel_id or record.panel_id
        self._patient_ids.append(record.patient_id)
        for resource in record.all_resources():
            kind = resource["resourceType"]
            self._files[kind].write(orjson.dumps(resource) + b"\n")
            self.counts[kind] += 1
        if "manifest" in self._files:
            self._files["manifest"].write(orjson.dumps(record.manifest.to_json()) + b"\n")

    def close(self) -> dict[str, Path]:
        if self._panel_id is None:
            self.abort()
            raise InputError("no patients to write")
        self._files["Group"].write(orjson.dumps(build_group(self._panel_id, self._patient_ids)) + b"\n")
        self.counts["Group"] += 1
        for name, handle in self._files.items():
            handle.close()
            os.replace(handle.name, self.paths[name])
        return dict(self.paths)

    def abort(self) -> None:
        for handle in self._files.values():
            handle.close()
            Path(str(handle.name)).unlink(missing_ok=True)

    def __enter__(self) -> NdjsonWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is not None:
            self.abort()


def write_ndjson(source: PanelSource, out_dir: Path, *, manifest: bool = False) -> dict[str, Path]:
    """Write ``<Type>.ndjson`` for every type in ``NDJSON_TYPES`` (one compact resource per line); streams."""
    with NdjsonWriter(out_dir, manifest=manifest) as writer:
        for record in records_of(source):
            writer.add(record)
        return writer.close()
