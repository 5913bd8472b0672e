"""The working state of one evaluation and the helpers every rule domain shares.

``Evaluation`` accumulates findings, advisories, not-evaluable reasons and the Observations used while
the domain modules run; ``evaluate`` turns it into an ``Assessment``. Beside it: building a
``ValueUsed`` from a result (``used``), choosing the newest result (``select_latest``, ``latest_tied``:
S3, D3, D27), agreeing answers across candidate contexts (``agreed``), severity bands
(``severity_of``), ages at a date and whether a Condition is active.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rls_screen.knowledge import Knowledge
from rls_screen.model import Finding, FindingKind, LabResult, NotEvaluable, PatientFacts, Threshold, ValueUsed
from rls_screen.observations import codings_of, ordering_key
from rls_screen.quantities import Bound, Truth
from rls_screen.ruleset import BelowBand, RuleSet

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
REFUTED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_in_months(birth: date, on: date) -> int:
    return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)


def is_active_condition(condition: Mapping[str, Any]) -> bool:
    """clinicalStatus active/recurrence/relapse and not refuted or entered in error."""
    clinical = {code for _, code in codings_of(condition.get("clinicalStatus"))}
    verification = {code for _, code in codings_of(condition.get("verificationStatus"))}
    return bool(clinical & ACTIVE_CLINICAL_STATUSES) and not (verification & REFUTED_VERIFICATION)


def used(result: LabResult, value: Bound | None = None) -> ValueUsed:
    return ValueUsed(
        analyte=result.analyte,
        value=value if value is not None else result.value or Bound(0.0),
        unit=result.unit,
        effective=result.effective_date,
        observations=(result.reference,),
        reported=result.reported,
        lab_reference_range=result.lab_reference_range,
        lab_interpretation=result.lab_interpretation,
        component=result.component,
    )


@dataclass
class Evaluation:
    """Working state of one evaluation; ``evaluate`` turns it into an ``Assessment``."""

    knowledge: Knowledge
    patient: PatientFacts
    as_of: date
    latest: dict[str, LabResult]
    usable: dict[str, list[LabResult]]
    findings: list[Finding] = field(default_factory=list)
    advisories: list[Finding] = field(default_factory=list)
    not_evaluable: list[NotEvaluable] = field(default_factory=list)
    used: dict[str, LabResult] = field(default_factory=dict)
    conflicts: dict[str, tuple[LabResult, ...]] = field(default_factory=dict)
    """D3: analytes left indeterminate by tied results on different sides of a threshold (absent from ``latest``)."""

    @property
    def rules(self) -> RuleSet:
        return self.knowledge.ruleset

    def add(
        self,
        kind: FindingKind,
        code: str,
        rule_id: str,
        citations: tuple[str, ...],
        values: Sequence[ValueUsed],
        thresholds: Sequence[Threshold] = (),
        severity: str | None = None,
        note: str | None = None,
        extra_basis: tuple[str, ...] = (),
        advice_key: str | None = None,
    ) -> None:
        finding = Finding(
            code=code,
            kind=kind,
            display=self.knowledge.terminology.display(code),
            rule_id=rule_id,
            rule_set_version=self.rules.version,
            thresholds=tuple(thresholds),
            values=tuple(values),
            citations=self.rules.cite(citations),
            severity=severity,
            note=note,
            extra_basis=extra_basis,
            advice_key=advice_key,
        )
        (self.findings if kind == "finding" else self.advisories).append(finding)
        for value in values:
            for ref in value.observations:
                result = self._result_by_reference(ref)
                if result is not None:
                    self.used[ref] = result

    def _result_by_reference(self, reference: str) -> LabResult | None:
        for results in self.usable.values():
            for result in results:
                if result.reference == reference:
                    return result
        return None

    def use(self, *results: LabResult | None) -> None:
        for result in results:
            if result is not None:
                self.used[result.reference] = result

    def indeterminate(self, analyte: str, rule: str, result: LabResult | None, why: str) -> None:
        reason = "comparator-indeterminate" if result and result.value and result.value.comparator else "indeterminate"
        self.not_evaluable.append(
            NotEvaluable(
                reason,
                f"{rule}: {why}",
                analyte,
                result.reference if result else None,
                result.effective_date if result else None,
            )
        )

    def missing(self, analyte: str, what: str) -> None:
        if analyte in self.conflicts:
            return  # D3: indeterminate (already listed with the tied results), not missing
        self.not_evaluable.append(
            NotEvaluable(
                "missing",
                f"no usable {what} in the {self.rules.selection.window_days} days before {self.as_of.isoformat()}",
                analyte,
            )
        )


def select_latest(results: Sequence[LabResult], egfr_tier: Callable[[str], int] | None = None) -> LabResult:
    """S3 and D3: the newest result wins (``latest_tied`` gives it first)."""
    return results[0] if len(results) == 1 else latest_tied(results, egfr_tier)[0]


def latest_tied(results: Sequence[LabResult], egfr_tier: Callable[[str], int] | None = None) -> tuple[LabResult, ...]:
    """S3, D3 and D27: the newest result first, then any result still tied with it (usually none).

    eGFR first keeps the newest day and, on it, the highest-precedence tier (section 4; D27: before D3).
    The newest results are those at the latest instant, joined (D27) by the date-only results of that
    day; a date-only result of a later day than every timed one is newest by itself. Among them a
    corrected or amended result supersedes a final one (D3), then the later ``issued`` decides, but only
    when every result left carries one (D27). What is left is tied; the caller decides whether the tie
    is a conflict. The order is reproducible: the resource reference that sorts last comes first.
    """
    candidates = list(results)
    if egfr_tier is not None:
        newest_day = max(r.effective_date for r in candidates)
        candidates = [r for r in candidates if r.effective_date == newest_day]
        best_tier = min(egfr_tier(r.loinc) for r in candidates)
        candidates = [r for r in candidates if egfr_tier(r.loinc) == best_tier]
    candidates = _newest(candidates)
    if any(r.correction for r in candidates):
        candidates = [r for r in candidates if r.correction]
    issued = [r.issued for r in candidates]
    if len(candidates) > 1 and all(moment is not None for moment in issued):
        latest_issued = max(ordering_key(moment) for moment in issued if moment is not None)
        candidates = [r for r in candidates if r.issued is not None and ordering_key(r.issued) == latest_issued]
    return tuple(sorted(candidates, key=lambda r: (ordering_key(r.effective), r.reference), reverse=True))


def _newest(results: Sequence[LabResult]) -> list[LabResult]:
    """D27: the results at the latest instant and the date-only results of that day (or of a later day)."""
    timed = [r for r in results if r.timed]
    dated = [r for r in results if not r.timed]
    newest_dated_day = max((r.effective_date for r in dated), default=None)
    if timed:
        latest = max(ordering_key(r.effective) for r in timed)
        at_latest = [r for r in timed if ordering_key(r.effective) == latest]
        day = at_latest[0].effective_date
        if newest_dated_day is None or newest_dated_day < day:
            return at_latest
        if newest_dated_day == day:
            return at_latest + [r for r in dated if r.effective_date == day]
        # a date-only result of a later day: newest, and tied with that day's latest timed results
        later_timed = [r for r in timed if r.effective_date == newest_dated_day]
        if later_timed:
            latest_that_day = max(ordering_key(r.effective) for r in later_timed)
            at_latest = [r for r in later_timed if ordering_key(r.effective) == latest_that_day]
        else:
            at_latest = []
        return at_latest + [r for r in dated if r.effective_date == newest_dated_day]
    return [r for r in dated if r.effective_date == newest_dated_day]


def agreed(answers: Sequence[Truth]) -> Truth:
    """One answer when every candidate context (sex, trimester) gives the same one, else None."""
    distinct = set(answers)
    return distinct.pop() if len(distinct) == 1 else None


def severity_of(value: Bound, bands: Iterable[BelowBand]) -> str | None:
    for band in bands:
        answer = value.below(band.below)
        if answer is None:
            return None
        if answer:
            return band.severity
    return None
