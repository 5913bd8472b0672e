"""What the generator hands out: a patient's resources with its manifest entry, and whole panels.

Plain frozen dataclasses around FHIR R4 JSON (not FHIR models: the generator must be fast enough for
a million patients), the argument checks every entry point shares, and the id scheme.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from rls_screen.errors import InputError
from rls_screen.synth.codes import ID_PREFIX_PATTERN, MAX_PATIENTS, Json


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What the generator intended for one patient (not FHIR; for tests and demos)."""

    patient_id: str
    index: int
    scenario: str
    gender: str
    age: int
    """Whole years at ``as_of``."""
    rls: bool
    """Has an active, confirmed RLS Condition."""
    trimester: int | None
    expected_findings: tuple[str, ...]
    """Findings the deciding values were designed to produce (advisories and not-evaluable reasons
    excluded, except ``missing-iron-studies``); sorted."""
    quirks: tuple[str, ...]
    """Mess and variants applied (see docs/synthetic-panel.md); sorted."""
    targets: tuple[tuple[str, float], ...]
    """Deciding values in canonical units (ferritin ug/L, Hb g/dL, eGFR, ...), before lab rounding."""
    aggravating_medications: tuple[str, ...] = ()
    """``MedicationRequest/<id>`` that must each fire the ``aggravating-medication`` advisory; sorted."""
    dialysis_basis: tuple[str, ...] = ()
    """The dialysis records the kidney-failure finding must cite (active Condition, Procedures within
    the window; ``Assessment`` finding ``extra_basis``); sorted."""
    mimic: str | None = None
    """The section-11 picture drawn for this patient (docs/rules.md section 11), if any."""

    def to_json(self) -> Json:
        """camelCase; the two reference lists only when not empty (older manifests stay byte-equal)."""
        entry: Json = {
            "patientId": self.patient_id,
            "index": self.index,
            "scenario": self.scenario,
            "gender": self.gender,
            "age": self.age,
            "rls": self.rls,
            "trimester": self.trimester,
            "expectedFindings": list(self.expected_findings),
            "quirks": list(self.quirks),
            "targets": dict(self.targets),
        }
        if self.aggravating_medications:
            entry["aggravatingMedications"] = list(self.aggravating_medications)
        if self.dialysis_basis:
            entry["dialysisBasis"] = list(self.dialysis_basis)
        if self.mimic:
            entry["mimic"] = self.mimic
        return entry


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """One patient: the Patient resource and its Conditions, Observations, MedicationRequests and
    Procedures (FHIR R4 JSON, in that order)."""

    patient: Json
    resources: tuple[Json, ...]
    manifest: ManifestEntry
    panel_id: str
    """Id of the Group the patient belongs to."""
    seed: int
    """The panel's seed (with the ids, it keys the record's ``urn:uuid`` fullUrls)."""

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])

    def all_resources(self) -> Iterator[Json]:
        """The Patient first, then its resources (the order a transaction needs)."""
        yield self.patient
        yield from self.resources


@dataclass(frozen=True)
class Panel:
    """A whole generated panel: patients, the FHIR Group listing them, and the manifest."""

    patients: tuple[PatientRecord, ...]
    group: Json
    manifest: tuple[ManifestEntry, ...]

    def scenario_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(entry.scenario for entry in self.manifest).items()))

    def resource_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for record in self.patients:
            counts.update(resource["resourceType"] for resource in record.all_resources())
        counts["Group"] += 1
        return dict(sorted(counts.items()))


# --- Validation ----------------------------------------------------------------------------------
def validate_arguments(n: int, seed: int, as_of: date, id_prefix: str) -> None:
    """Raise InputError with a one-line reason when the generator cannot honour the arguments."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PATIENTS:
        raise InputError(f"number of patients must be an integer from 1 to {MAX_PATIENTS:,}, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InputError(f"as_of must be a datetime.date (no time), got {as_of!r}")
    if not 1900 <= as_of.year <= 9000:
        raise InputError(f"as_of must be a date between the years 1900 and 9000, got {as_of.isoformat()}")
    if not isinstance(id_prefix, str) or ID_PREFIX_PATTERN.fullmatch(id_prefix) is None:
        raise InputError(f"id prefix must start with a letter and hold 1-31 letters, digits or '-', got {id_prefix!r}")


def panel_id(id_prefix: str) -> str:
    return f"{id_prefix}-panel"


def patient_id(id_prefix: str, index: int) -> str:
    return f"{id_prefix}-p{index:04d}"
