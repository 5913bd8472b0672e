"""Entry points that generate patients: a whole panel, a stream of records, or one patient alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from rls_screen.errors import InputError
from rls_screen.synth.codes import MAX_PATIENTS
from rls_screen.synth.patient import PatientBuilder
from rls_screen.synth.records import Panel, PatientRecord, panel_id, validate_arguments
from rls_screen.synth.resources import build_group


def generate_panel(n: int = 200, *, seed: int = 1, as_of: date, id_prefix: str = "syn") -> Panel:
    """A panel of ``n`` synthetic patients; the same arguments give byte-identical resources."""
    records = tuple(iter_patient_records(n, seed, as_of, id_prefix))
    return Panel(
        patients=records,
        group=build_group(panel_id(id_prefix), [record.patient_id for record in records]),
        manifest=tuple(record.manifest for record in records),
    )


def iter_patient_records(n: int, seed: int, as_of: date, id_prefix: str = "syn") -> Iterator[PatientRecord]:
    """Patients 1..n one at a time (arguments are checked now, not on the first ``next``)."""
    validate_arguments(n, seed, as_of, id_prefix)
    return (PatientBuilder(index, seed, as_of, id_prefix).build() for index in range(1, n + 1))


def generate_patient(index: int, *, seed: int = 1, as_of: date, id_prefix: str = "syn") -> PatientRecord:
    """Patient ``index`` (1-based) exactly as it appears in any panel of at least ``index`` patients."""
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= MAX_PATIENTS:
        raise InputError(f"patient index must be an integer from 1 to {MAX_PATIENTS:,}, got {index!r}")
    validate_arguments(index, seed, as_of, id_prefix)
    return PatientBuilder(index, seed, as_of, id_prefix).build()
