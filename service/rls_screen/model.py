"""The engine's input and output types: plain frozen dataclasses, snake_case inside.

``Assessment.to_json()`` is the one place these become the camelCase JSON that the CLI prints and
that the write-back and CDS layers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from rls_screen.quantities import Bound, Comparator

Sex = Literal["male", "female"]
FindingKind = Literal["finding", "advisory"]
IronBandName = Literal["oral-or-iv", "iv-only", "oral-only", "not-indicated", "indeterminate"]
"""docs/rules.md section 2: adults oral-or-iv / iv-only (D10, D24), children oral-only (D11)."""


@dataclass(frozen=True, slots=True)
class PatientFacts:
    reference: str
    """``Patient/<id>``."""
    sex: Sex | None
    """None for other/unknown: rules that depend on sex must then agree for both."""
    birth_date: date | None


@dataclass(frozen=True, slots=True)
class LabResult:
    """One usable Observation, converted to its analyte's canonical unit."""

    reference: str
    version_id: str | None
    analyte: str
    loinc: str
    value: Bound | None
    """None for coded results (pregnancy status)."""
    unit: str
    reported: str
    """As the lab wrote it, e.g. '<5 pmol/L'."""
    effective: datetime
    effective_date: date
    value_codings: tuple[tuple[str, str], ...] = ()
    lab_reference_range: str | None = None
    lab_interpretation: str | None = None
    correction: bool = False
    """D3: its status is one the rule set lets supersede ``final`` at the same time (corrected, amended)."""
    issued: datetime | None = None
    """D3/D27: ``Observation.issued`` when it is a full instant (it breaks a same-time tie only when both carry it)."""
    timed: bool = True
    """D27: False for a date-only effective date (it ties with any result of the same day)."""
    component: str | None = None
    """D5: the code of the ``Observation.component`` this result was read from (``reference`` is the parent's)."""
    source_value: Bound | None = None
    """The value in the unit it was reported in (before conversion), for D7's stated equivalents."""
    source_unit: str | None = None
    """The UCUM code of that unit (after the alias table), e.g. 'mg/dL'."""


@dataclass(frozen=True, slots=True)
class NotEvaluable:
    reason: str
    """A code of CodeSystem rls-finding with kind not-evaluable (stale, pending, unit-not-understood, ...)."""
    detail: str
    analyte: str | None = None
    observation: str | None = None
    effective: date | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail}
        if self.analyte:
            out["analyte"] = self.analyte
        if self.observation:
            out["observation"] = self.observation
        if self.effective:
            out["effective"] = self.effective.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str
    comparator: Comparator
    value: float
    unit: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "comparator": self.comparator, "value": self.value, "unit": self.unit}

    def display(self) -> str:
        from rls_screen.quantities import format_number

        return f"{self.comparator} {format_number(self.value)} {self.unit}"


@dataclass(frozen=True, slots=True)
class ValueUsed:
    """A value a rule looked at: measured (with its Observation) or computed from measured ones."""

    analyte: str
    value: Bound
    unit: str
    effective: date
    observations: tuple[str, ...]
    reported: str | None = None
    computed: str | None = None
    """How it was computed (e.g. 'CKD-EPI 2021 from creatinine'), None when measured."""
    lab_reference_range: str | None = None
    lab_interpretation: str | None = None
    component: str | None = None
    """D5: the component code, when the value was read from a component of ``observations[0]``."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "analyte": self.analyte,
            "value": round(self.value.value, 4),
            "unit": self.unit,
            "effective": self.effective.isoformat(),
            "observations": list(self.observations),
        }
        if self.value.comparator:
            out["comparator"] = self.value.comparator
        if self.reported:
            out["reported"] = self.reported
        if self.computed:
            out["computed"] = self.computed
        if self.lab_reference_range:
            out["labReferenceRange"] = self.lab_reference_range
        if self.lab_interpretation:
            out["labInterpretation"] = self.lab_interpretation
        if self.component:
            out["component"] = self.component
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    """A finding or advisory, with everything needed to show where it came from."""

    code: str
    kind: FindingKind
    display: str
    rule_id: str
    rule_set_version: str
    thresholds: tuple[Threshold, ...]
    values: tuple[ValueUsed, ...]
    citations: tuple[str, ...]
    severity: str | None = None
    note: str | None = None
    extra_basis: tuple[str, ...] = ()
    """References other than Observations (e.g. a dialysis Condition)."""
    severity_at_least: bool = False
    """The severity is a floor implied by a bound ("Mg <0.4 mmol/L": grade 3 or higher, D20)."""
    advice_key: str | None = None
    """The rule set's ``advice`` entry for this finding in its context (D10-D13); None: the entry of ``code``."""

    @property
    def basis(self) -> tuple[str, ...]:
        refs: list[str] = []
        for value in self.values:
            refs.extend(ref for ref in value.observations if ref not in refs)
        refs.extend(ref for ref in self.extra_basis if ref not in refs)
        return tuple(refs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "display": self.display,
            "severity": self.severity,
            "ruleId": self.rule_id,
            "ruleSetVersion": self.rule_set_version,
            "thresholds": [t.to_json() for t in self.thresholds],
            "values": [v.to_json() for v in self.values],
            "basis": list(self.basis),
            "citations": list(self.citations),
        }
        if self.severity_at_least:
            out["severityAtLeast"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class PatientContext:
    sex: Sex | None
    age_years: int | None
    pregnant: bool
    trimester: int | None
    pregnancy_basis: tuple[str, ...] = ()
    inflammation: bool | None = None
    gestational_age_days: int | None = None
    """D18: gestational age projected to the as-of date, whole days (None: not pregnant or not recorded)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sex": self.sex,
            "ageYears": self.age_years,
            "pregnant": self.pregnant,
            "trimester": self.trimester,
            "pregnancyBasis": list(self.pregnancy_basis),
            "inflammation": self.inflammation,
            "gestationalAgeDays": self.gestational_age_days,
        }


@dataclass(frozen=True)
class Assessment:
    patient: str
    as_of: date
    rule_set_id: str
    rule_set_version: str
    context: PatientContext
    findings: tuple[Finding, ...]
    advisories: tuple[Finding, ...]
    gfr_category: str | None
    iron_band: IronBandName
    not_evaluable: tuple[NotEvaluable, ...]
    used_observations: tuple[LabResult, ...] = field(default=())
    """Every Observation some rule looked at (the basis of the RiskAssessment)."""
    iron_band_advice: str | None = None
    """The rule set's ``advice`` entry wording the band for this patient (D11-D13); None: ``iron-band.<band>``."""

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    @property
    def finding_codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "asOf": self.as_of.isoformat(),
            "ruleSet": self.rule_set_id,
            "ruleSetVersion": self.rule_set_version,
            "context": self.context.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "gfrCategory": self.gfr_category,
            "ironBand": self.iron_band,
            "advisories": [a.to_json() for a in self.advisories],
            "notEvaluable": [n.to_json() for n in self.not_evaluable],
        }
