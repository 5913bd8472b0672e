"""The rule engine: one patient's facts and Observations, as of a date -> an ``Assessment``.

Pure and deterministic: no I/O, no clock, no settings. The CLI, the FHIR write-back, the batch
runner and the CDS service all call ``evaluate``; it is the one place clinical logic lives.
Thresholds come from the rule set (``ruleset/``), codes from ``terminology/``, units from
``mappings/``. Unknowns are never guessed: a test the data cannot decide is ``None`` (see
``quantities``) and ends up in ``not_evaluable`` rather than in ``findings``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rls_screen.codesets import RXNORM, Terminology, load_terminology, value_set_url
from rls_screen.contract import DataContract
from rls_screen.model import (
    Assessment,
    Finding,
    FindingKind,
    IronBandName,
    LabResult,
    NotEvaluable,
    PatientContext,
    PatientFacts,
    Sex,
    Threshold,
    ValueUsed,
)
from rls_screen.observations import classify_one, codings_of, ordering_key, parse_fhir_datetime
from rls_screen.quantities import Bound, Truth, all3, any3, combine_monotonic, format_number, not3
from rls_screen.ruleset import BelowBand, HemoglobinCutoff, RuleSet, load_ruleset
from rls_screen.units import UnitTable, load_unit_table

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
REFUTED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
ACTIVE_MEDICATION_STATUSES = frozenset({"active", "draft", "on-hold", "intended"})
FINDING_ORDER = (
    "iron-deficiency",
    "iron-insufficient-for-rls",
    "missing-iron-studies",
    "anemia",
    "reduced-kidney-function",
    "kidney-failure",
    "hypomagnesemia",
    "hypokalemia",
    "hyperkalemia",
    "hypocalcemia",
)


@dataclass(frozen=True)
class Knowledge:
    """Everything the engine reads from data files, loaded once per process."""

    ruleset: RuleSet
    terminology: Terminology
    units: UnitTable
    egfr_tiers: Mapping[str, int] = field(init=False, repr=False, compare=False)
    """eGFR LOINC code -> precedence tier (0 first), derived once instead of on every evaluation."""
    aggravating_category_urls: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The aggravating-medication category ValueSets (sorted), derived once."""
    contract: DataContract = field(init=False, repr=False, compare=False)
    """The data a patient needs (D2), derived once from the rule set and terminology."""

    def __post_init__(self) -> None:
        tiers = {
            code: tier
            for tier, url in enumerate(self.ruleset.kidney.egfr_precedence)
            for code in self.terminology.codes_of(url)
        }
        categories = tuple(
            url
            for url in sorted(self.terminology.value_sets)
            if url.startswith(value_set_url("aggravating-")) and url != self.ruleset.medications.aggravating_value_set
        )
        object.__setattr__(self, "egfr_tiers", tiers)  # frozen dataclass: derived fields are set once, here
        object.__setattr__(self, "aggravating_category_urls", categories)
        object.__setattr__(self, "contract", DataContract(self.ruleset, self.terminology))


def load_knowledge(site_conceptmap_dir: Path | None = None) -> Knowledge:
    return Knowledge(load_ruleset(), load_terminology(site_conceptmap_dir), load_unit_table())


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_in_months(birth: date, on: date) -> int:
    return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)


def is_active_condition(condition: Mapping[str, Any]) -> bool:
    """clinicalStatus active/recurrence/relapse and not refuted or entered in error."""
    clinical = {code for _, code in codings_of(condition.get("clinicalStatus"))}
    verification = {code for _, code in codings_of(condition.get("verificationStatus"))}
    return bool(clinical & ACTIVE_CLINICAL_STATUSES) and not (verification & REFUTED_VERIFICATION)


def _used(result: LabResult, value: Bound | None = None) -> ValueUsed:
    return ValueUsed(
        analyte=result.analyte,
        value=value if value is not None else result.value or Bound(0.0),
        unit=result.unit,
        effective=result.effective_date,
        observations=(result.reference,),
        reported=result.reported,
        lab_reference_range=result.lab_reference_range,
        lab_interpretation=result.lab_interpretation,
    )


@dataclass
class _Evaluation:
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
        self.not_evaluable.append(
            NotEvaluable(
                "missing",
                f"no usable {what} in the {self.rules.selection.window_days} days before {self.as_of.isoformat()}",
                analyte,
            )
        )


def _select_latest(results: Sequence[LabResult], egfr_tier: Callable[[str], int] | None = None) -> LabResult:
    """S3: the newest result wins; for eGFR, same-day ties go to the higher-precedence code."""
    if len(results) == 1:
        return results[0]
    if egfr_tier is None:
        return max(results, key=lambda r: (ordering_key(r.effective), r.reference))
    return max(
        results,
        key=lambda r: (r.effective_date, -egfr_tier(r.loinc), ordering_key(r.effective), r.reference),
    )


# --- patient context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pregnancy:
    pregnant: bool
    basis: tuple[str, ...]
    gestational_age: LabResult | None

    def weeks_on(self, day: date) -> float | None:
        """Gestational age projected to a day, or None when no usable gestational age exists."""
        ga = self.gestational_age
        if ga is None or ga.value is None or not ga.value.is_exact:
            return None
        return ga.value.value + (day - ga.effective_date).days / 7.0


_PREGNANCY_CONDITION = value_set_url("pregnancy-condition")


def _pregnancy(ev: _Evaluation, conditions: Sequence[Mapping[str, Any]]) -> _Pregnancy:
    terminology = ev.knowledge.terminology
    status = ev.latest.get("pregnancy-status")
    pregnant_codes = value_set_url("pregnancy-status-pregnant")
    basis: list[str] = []
    pregnant = False
    if status is not None:
        pregnant = terminology.contains(pregnant_codes, status.value_codings)
        basis.append(status.reference)
    condition_refs = [
        f"Condition/{c.get('id', '?')}"
        for c in conditions
        if (type(c) is dict or isinstance(c, Mapping))
        and terminology.contains(_PREGNANCY_CONDITION, codings_of(c.get("code")))
        and is_active_condition(c)
    ]
    if condition_refs:  # S6: a 'Pregnant' status OR an active pregnancy Condition
        pregnant = True
        basis.extend(condition_refs)
    return _Pregnancy(pregnant, tuple(basis), ev.latest.get("gestational-age") if pregnant else None)


def _trimester(weeks: float | None, ev: _Evaluation) -> int | None:
    if weeks is None:
        return None
    bounds = ev.rules.selection.trimester
    if weeks >= bounds["thirdFromWeeks"]:
        return 3
    return 2 if weeks >= bounds["secondFromWeeks"] else 1


# --- iron (docs/rules.md section 2) ----------------------------------------------------------------


def _computed_tsat(ev: _Evaluation) -> ValueUsed | None:
    """TSAT = iron / TIBC x 100 from the latest draw day that has both (UIBC never stands in for TIBC)."""
    irons, tibcs = ev.usable.get("iron", []), ev.usable.get("tibc", [])
    days = sorted({r.effective_date for r in irons} & {r.effective_date for r in tibcs}, reverse=True)
    for day in days:
        iron = _select_latest([r for r in irons if r.effective_date == day])
        tibc = _select_latest([r for r in tibcs if r.effective_date == day])
        if iron.value is None or tibc.value is None or tibc.value.value <= 0:
            continue
        refs = (iron.reference, tibc.reference)
        # TSAT rises with iron and falls with TIBC
        value = combine_monotonic(lambda i, t: i / t * 100.0, (iron.value, True), (tibc.value, False))
        ev.use(iron, tibc)
        if value is None:
            ev.indeterminate("tsat", "computed TSAT", iron, "iron and TIBC bounds point in opposite directions")
            return ValueUsed("tsat", Bound(float("nan")), "%", day, refs, computed="indeterminate")
        return ValueUsed(
            "tsat",
            value,
            "%",
            day,
            refs,
            reported=f"iron {iron.reported}, TIBC {tibc.reported}",
            computed="serum iron / TIBC x 100, same draw day",
        )
    return None


def _inflammation(ev: _Evaluation, ferritin: LabResult | None) -> tuple[Truth, list[ValueUsed], str]:
    """CRP > 5 mg/L within 7 days of the ferritin. Returns (truth for the rule, CRPs used, context word)."""
    if ferritin is None:
        return False, [], "not-assessed"
    rule = ev.rules.iron.inflammation
    nearby = [
        crp
        for crp in ev.usable.get("crp", [])
        if crp.value is not None
        and abs((crp.effective_date - ferritin.effective_date).days) <= rule.within_days_of_ferritin
    ]
    if not nearby:
        return False, [], "not-assessed"
    answers = [(crp, crp.value.above(rule.crp_above)) for crp in nearby if crp.value is not None]
    positive = [crp for crp, answer in answers if answer is True]
    if positive:
        return True, [_used(crp) for crp in positive], "present"
    if any(answer is None for _, answer in answers):
        return None, [_used(crp) for crp, _ in answers], "indeterminate"
    return False, [_used(_select_latest(nearby))], "absent"


def _evaluate_iron(ev: _Evaluation, age_years: int | None, kidney_failure: Truth) -> tuple[IronBandName, str]:
    rules = ev.rules.iron
    ferritin = ev.latest.get("ferritin")
    tsat_result = ev.latest.get("tsat")
    tsat_used = _used(tsat_result) if tsat_result else _computed_tsat(ev)
    tsat: Bound | None = tsat_used.value if tsat_used and tsat_used.computed != "indeterminate" else None
    ev.use(ferritin, tsat_result)
    ferritin_value = ferritin.value if ferritin else None
    pediatric = age_years is not None and age_years < ev.rules.selection.pediatric_age_below_years

    inflamed, crp_values, inflammation_word = _inflammation(ev, ferritin)
    ferritin_values = [_used(ferritin)] if ferritin else []
    tsat_values = [tsat_used] if tsat_used and tsat is not None else []
    unit_f, unit_t = rules.ferritin_unit, rules.tsat_unit

    # iron-deficiency: ferritin < 15, or < 70 with inflammation (WHO 2020; Thurnham 2010)
    deficiency: Truth = False  # defined by ferritin alone: without one it is not established
    if ferritin_value is not None:
        d = rules.deficiency
        deficiency = any3(
            [
                ferritin_value.below(d.ferritin_below),
                all3([inflamed, ferritin_value.below(d.ferritin_below_with_inflammation)]),
            ]
        )
        threshold = (
            Threshold("ferritin", "<", d.ferritin_below_with_inflammation, unit_f)
            if inflamed
            else Threshold("ferritin", "<", d.ferritin_below, unit_f)
        )
        if deficiency:
            note = (
                f"CRP above {format_number(rules.inflammation.crp_above)} mg/L within "
                f"{rules.inflammation.within_days_of_ferritin} days: ferritin threshold raised to "
                f"{format_number(d.ferritin_below_with_inflammation)} ug/L."
                if inflamed
                else None
            )
            ev.add(
                "finding",
                "iron-deficiency",
                d.rule_id,
                d.citations,
                ferritin_values + crp_values,
                [threshold],
                note=note,
            )
        elif deficiency is None:
            ev.indeterminate(
                "ferritin",
                "iron deficiency",
                ferritin,
                "the result or the CRP is a bound that does not decide",
            )

    # iron-insufficient-for-rls: (ferritin <= 75 [< 50 in children] OR TSAT < 20) AND NOT iron-deficiency
    ins = rules.insufficient_for_rls
    if pediatric:
        ferritin_low = ferritin_value.below(ins.pediatric_ferritin_below) if ferritin_value else None
        ferritin_threshold = Threshold("ferritin", "<", ins.pediatric_ferritin_below, unit_f)
    else:
        ferritin_low = ferritin_value.at_most(ins.ferritin_at_most) if ferritin_value else None
        ferritin_threshold = Threshold("ferritin", "<=", ins.ferritin_at_most, unit_f)
    tsat_low = tsat.below(ins.tsat_below) if tsat else None
    insufficient = all3([any3([ferritin_low, tsat_low]), not3(deficiency)])
    if insufficient:
        values = [
            *([_used(ferritin)] if ferritin and ferritin_low else []),
            *(tsat_values if tsat_low else []),
        ]
        ev.add(
            "finding",
            "iron-insufficient-for-rls",
            ins.rule_id,
            ins.citations,
            values,
            [ferritin_threshold, Threshold("tsat", "<", ins.tsat_below, unit_t)],
            note="Paediatric threshold (AASM 2024): ferritin < 50 ug/L." if pediatric else None,
        )
    elif insufficient is None and ferritin_value is not None and tsat is not None:
        ev.indeterminate("ferritin", "iron insufficient for RLS", ferritin, "a bound does not decide the threshold")

    # missing-iron-studies: no usable ferritin OR no usable TSAT (direct or computed)
    missing_parts = [name for name, present in (("ferritin", ferritin), ("TSAT", tsat_used)) if present is None]
    if missing_parts:
        if ferritin is None:
            ev.missing("ferritin", "ferritin")
        if tsat_used is None:
            ev.missing("tsat", "transferrin saturation (TSAT, or serum iron + TIBC from the same draw)")
        ev.add(
            "finding",
            "missing-iron-studies",
            rules.missing_studies.rule_id,
            rules.missing_studies.citations,
            ferritin_values + tsat_values,
            note=f"No usable {' or '.join(missing_parts)} in the last {ev.rules.selection.window_days} days.",
        )

    # advisories
    if inflamed and ferritin:
        ev.add(
            "advisory",
            "ferritin-inflammation-caveat",
            rules.inflammation.rule_id,
            rules.inflammation.citations,
            ferritin_values + crp_values,
            [Threshold("crp", ">", rules.inflammation.crp_above, rules.crp_unit)],
        )
    if tsat is not None and tsat.at_least(rules.overload_risk.tsat_at_least):
        ev.add(
            "advisory",
            "tsat-iron-overload-risk",
            rules.overload_risk.rule_id,
            rules.overload_risk.citations,
            tsat_values,
            [Threshold("tsat", ">=", rules.overload_risk.tsat_at_least, unit_t)],
        )
    dialysis = rules.dialysis_iv_iron
    if (
        kidney_failure
        and ferritin_value
        and tsat
        and all3([ferritin_value.below(dialysis.ferritin_below), tsat.below(dialysis.tsat_below)])
    ):
        ev.add(
            "advisory",
            "dialysis-iv-iron-consideration",
            dialysis.rule_id,
            dialysis.citations,
            ferritin_values + tsat_values,
            [
                Threshold("ferritin", "<", dialysis.ferritin_below, unit_f),
                Threshold("tsat", "<", dialysis.tsat_below, unit_t),
            ],
        )
    if pediatric and (ferritin or tsat_used):
        ev.add("advisory", "pediatric-iron-threshold", ins.rule_id, ins.citations, ferritin_values + tsat_values)

    return _iron_band(ev, ferritin_value, tsat, pediatric), inflammation_word


def _iron_band(ev: _Evaluation, ferritin: Bound | None, tsat: Bound | None, pediatric: bool) -> IronBandName:
    """AASM 2024 iron-therapy bands; the 75-100 IV-only band does not apply to children."""
    band = ev.rules.iron.band
    tsat_low = tsat.below(band.tsat_below) if tsat else None
    if pediatric:
        ferritin_low = ferritin.below(band.pediatric_ferritin_below) if ferritin else None
        if any3([ferritin_low, tsat_low]):
            return "oral-or-iv"
        if all3([not3(ferritin_low), not3(tsat_low)]) and ferritin and tsat:
            return "not-indicated"
        return "indeterminate"
    if any3([ferritin.at_most(band.oral_or_iv_ferritin_at_most) if ferritin else None, tsat_low]):
        return "oral-or-iv"
    if ferritin is None:
        return "indeterminate"
    in_iv_band = all3(
        [ferritin.above(band.oral_or_iv_ferritin_at_most), ferritin.at_most(band.iv_only_ferritin_at_most)]
    )
    if in_iv_band and (tsat is None or tsat_low is False):
        return "iv-only"
    if ferritin.above(band.iv_only_ferritin_at_most) and tsat is not None and tsat_low is False:
        return "not-indicated"
    return "indeterminate"


# --- anemia (section 3) -----------------------------------------------------------------------------


def _severity(value: Bound, bands: Iterable[BelowBand]) -> str | None:
    for band in bands:
        answer = value.below(band.below)
        if answer is None:
            return None
        if answer:
            return band.severity
    return None


def _evaluate_anemia(ev: _Evaluation, pregnancy: _Pregnancy, age_years: int | None) -> None:
    rules = ev.rules.anemia
    hb = ev.latest.get("hemoglobin")
    if hb is None or hb.value is None:
        ev.missing("hemoglobin", "haemoglobin")
        return
    ev.use(hb)
    birth = ev.patient.birth_date
    if birth is None or age_years is None:
        ev.indeterminate(
            "hemoglobin", "anaemia", hb, "birth date unknown, so the age-specific cut-off cannot be chosen"
        )
        return
    months = age_in_months(birth, ev.as_of)  # S6: age at the evaluation date
    value = hb.value
    candidates: list[tuple[str, float, tuple[BelowBand, ...]]] = []
    context_note: str | None = None
    if months < rules.children[0].from_months:
        ev.indeterminate("hemoglobin", "anaemia", hb, "no WHO 2024 cut-off under 6 months of age")
        return
    if age_years < ev.rules.selection.adult_hemoglobin_from_age_years:
        child = next(c for c in rules.children if c.from_months <= months < c.to_months_exclusive)
        candidates.append((f"child {months // 12} y", child.below, ()))
    else:
        weeks = pregnancy.weeks_on(hb.effective_date)
        pregnant_at_draw = pregnancy.pregnant and (
            weeks is None or 0 <= weeks < ev.rules.selection.gestational_age_implausible_from_weeks
        )
        if pregnant_at_draw:
            trimester = _trimester(weeks, ev)
            keys: tuple[str, ...] = (str(trimester),) if trimester else ("1", "2", "3")
            ga = pregnancy.gestational_age
            if trimester is None:
                context_note = "Pregnant, gestational age unknown: cut-offs for all trimesters considered."
            elif ga is not None and ga.value is not None and weeks is not None:
                context_note = (
                    f"Trimester {trimester}: gestational age {ga.reported} on {ga.effective_date.isoformat()}, "
                    f"projected to {weeks:.0f} weeks on the haemoglobin date (project choice)."
                )
            for key in keys:
                cutoff: HemoglobinCutoff = rules.pregnant[key]  # type: ignore[index]
                candidates.append((f"pregnant, trimester {key}", cutoff.below, cutoff.severity))
        else:
            sexes: tuple[Sex, ...] = (ev.patient.sex,) if ev.patient.sex else ("male", "female")
            if ev.patient.sex is None:
                context_note = "Sex not recorded as male or female: both cut-offs considered."
            for sex in sexes:
                cutoff = rules.adult[sex]
                candidates.append((f"{sex}, non-pregnant", cutoff.below, cutoff.severity))

    anemic = _agreed([value.below(below) for _, below, _ in candidates])
    if anemic is None:
        ev.indeterminate("hemoglobin", "anaemia", hb, context_note or "the reported bound does not decide")
        return
    if not anemic:
        return
    severities = {_severity(value, bands) if bands else None for _, _, bands in candidates}
    severity = severities.pop() if len(severities) == 1 else None
    thresholds = [Threshold(f"hemoglobin ({label})", "<", below, rules.unit) for label, below, _ in candidates]
    ev.add(
        "finding",
        "anemia",
        rules.rule_id,
        rules.citations,
        [_used(hb)],
        thresholds,
        severity=severity,
        note=context_note,
    )
    ev.add("advisory", "hemoglobin-altitude-smoking-caveat", rules.rule_id, rules.citations, [_used(hb)])


def _agreed(answers: Sequence[Truth]) -> Truth:
    """One answer when every candidate context (sex, trimester) gives the same one, else None."""
    distinct = set(answers)
    return distinct.pop() if len(distinct) == 1 else None


# --- kidney (section 4) -----------------------------------------------------------------------------


def _gfr_category(ev: _Evaluation, egfr: Bound) -> str | None:
    for band in ev.rules.kidney.gfr_categories:
        if band.below is None:
            return band.category
        answer = egfr.below(band.below)
        if answer is None:
            return None
        if answer:
            return band.category
    return None


def _ckd_epi_2021(ev: _Evaluation, creatinine_mg_dl: float, age: int, sex: Sex) -> float:
    formula = ev.rules.kidney.creatinine_fallback
    params = formula.female if sex == "female" else formula.male
    ratio = creatinine_mg_dl / params.kappa
    return float(
        formula.constant
        * min(ratio, 1.0) ** params.alpha
        * max(ratio, 1.0) ** formula.high_exponent
        * formula.age_base**age
        * params.factor
    )


def _selected_egfr(ev: _Evaluation, age_years: int | None) -> list[ValueUsed]:
    """The eGFR to judge (one value, or one per sex when sex is unknown and it was computed)."""
    egfr = ev.latest.get("egfr")
    if egfr is not None and egfr.value is not None:
        ev.use(egfr)
        return [_used(egfr)]
    creatinine = ev.latest.get("creatinine")
    if creatinine is None or creatinine.value is None:
        ev.missing("egfr", "eGFR or serum creatinine")
        return []
    if creatinine.value.value <= 0:
        ev.indeterminate("egfr", "eGFR from creatinine", creatinine, "a creatinine of 0 is not a plausible result")
        return []
    formula = ev.rules.kidney.creatinine_fallback
    age = age_years  # S6: age at the evaluation date
    if age is None or age < formula.min_age_years:
        ev.indeterminate(
            "egfr",
            "eGFR from creatinine",
            creatinine,
            "CKD-EPI 2021 applies to adults with a known birth date",
        )
        return []
    ev.use(creatinine)
    sexes: tuple[Sex, ...] = (ev.patient.sex,) if ev.patient.sex else ("male", "female")
    computed = []
    for sex in sexes:
        value = creatinine.value.map_monotonic(
            lambda scr, s=sex: _ckd_epi_2021(ev, scr, age, s),  # type: ignore[misc]
            increasing=False,
        )
        computed.append(
            ValueUsed(
                "egfr",
                value,
                ev.rules.kidney.unit,
                creatinine.effective_date,
                (creatinine.reference,),
                reported=f"creatinine {creatinine.reported}",
                computed=f"CKD-EPI 2021 (race-free) from creatinine, {sex}, age {age}",
            )
        )
    return computed


def _dialysis_basis(ev: _Evaluation, records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    terminology, dialysis = ev.knowledge.terminology, value_set_url("dialysis")
    refs = []
    for record in records:
        if (type(record) is not dict and not isinstance(record, Mapping)) or not terminology.contains(
            dialysis, codings_of(record.get("code"))
        ):
            continue
        kind = record.get("resourceType")
        if kind == "Condition" and is_active_condition(record):
            refs.append(f"Condition/{record.get('id', '?')}")
        elif kind == "Procedure" and record.get("status") in ("completed", "in-progress"):
            period = record.get("performedPeriod")
            period = period if isinstance(period, Mapping) else {}
            performed = parse_fhir_datetime(record.get("performedDateTime")) or parse_fhir_datetime(
                period.get("end") or period.get("start")
            )
            if performed and 0 <= (ev.as_of - performed.date()).days <= ev.rules.selection.window_days:
                refs.append(f"Procedure/{record.get('id', '?')}")
    return tuple(refs)


def _evaluate_kidney(
    ev: _Evaluation, age_years: int | None, records: Sequence[Mapping[str, Any]]
) -> tuple[str | None, Truth]:
    rules = ev.rules.kidney
    values = _selected_egfr(ev, age_years)
    dialysis_refs = _dialysis_basis(ev, records)
    categories = {_gfr_category(ev, v.value) for v in values}
    category = categories.pop() if len(categories) == 1 else None
    lower = {band.category: band.below for band in rules.gfr_categories if band.below is not None}
    g5_below, g3a_below = lower["G5"], lower["G3a"]
    unit = rules.unit

    failure_answers = [v.value.below(g5_below) for v in values]
    failure: Truth = True if dialysis_refs else (_agreed(failure_answers) if values else None)
    if values and category is None:
        ev.indeterminate("egfr", "GFR category", None, f"eGFR {values[0].value.display()} does not decide the category")
    computed_note = (
        " eGFR computed from creatinine (CKD-EPI 2021): no usable eGFR." if values and values[0].computed else ""
    )
    if failure:
        note = (
            "Dialysis recorded."
            if dialysis_refs and not any(a for a in failure_answers)
            else "A single result cannot show chronicity (KDIGO 2024)."
        ) + computed_note
        ev.add(
            "finding",
            "kidney-failure",
            rules.failure.rule_id,
            rules.failure.citations,
            values if any(failure_answers) else [],
            [Threshold("eGFR", "<", g5_below, unit)],
            severity=None,
            note=note,
            extra_basis=dialysis_refs,
        )
    if category in rules.reduced_function.categories:
        ev.add(
            "finding",
            "reduced-kidney-function",
            rules.reduced_function.rule_id,
            rules.reduced_function.citations,
            values,
            [Threshold("eGFR", "<", g3a_below, unit), Threshold("eGFR", ">=", g5_below, unit)],
            note=f"Category {category}: consistent with CKD {category} if persistent for more than 3 months; "
            f"a single result cannot show chronicity (KDIGO 2024).{computed_note}",
        )
    if category in (*rules.reduced_function.categories, *rules.failure.categories):
        ev.add(
            "advisory",
            "egfr-chronicity-caveat",
            rules.reduced_function.rule_id,
            rules.reduced_function.citations,
            values,
        )
    if values and values[0].computed:
        fallback = rules.creatinine_fallback
        ev.add("advisory", "egfr-computed-from-creatinine", fallback.rule_id, fallback.citations, values)
    return category, failure


# --- electrolytes (section 5) -----------------------------------------------------------------------


def _evaluate_electrolytes(ev: _Evaluation) -> None:
    rules = ev.rules.electrolytes
    for code, rule in (("hypomagnesemia", rules.hypomagnesemia), ("hypokalemia", rules.hypokalemia)):
        analyte = "magnesium" if code == "hypomagnesemia" else "potassium"
        result = ev.latest.get(analyte)
        if result is None or result.value is None:
            ev.missing(analyte, analyte)
            continue
        ev.use(result)
        answer = result.value.below(rule.below)
        if answer:
            ev.add(
                "finding",
                code,
                rule.rule_id,
                rules.citations,
                [_used(result)],
                [Threshold(analyte, "<", rule.below, rule.unit)],
                severity=_severity(result.value, rule.severity),
                note=rule.severity_note,
            )
        elif answer is None:
            ev.indeterminate(analyte, code, result, "the reported bound does not decide")
    potassium = ev.latest.get("potassium")
    if potassium is not None and potassium.value is not None:
        high = rules.hyperkalemia
        answer = potassium.value.above(high.above)
        if answer:
            severity = None
            for band in high.severity:
                decided = potassium.value.above(band.above)
                if decided is None:
                    break
                if decided:
                    severity = band.severity
                    break
            ev.add(
                "finding",
                "hyperkalemia",
                high.rule_id,
                rules.citations,
                [_used(potassium)],
                [Threshold("potassium", ">", high.above, high.unit)],
                severity=severity,
            )
        elif answer is None:
            ev.indeterminate("potassium", "hyperkalemia", potassium, "the reported bound does not decide")
    _evaluate_calcium(ev)
    if any(f.code in ("hypomagnesemia", "hypokalemia", "hyperkalemia", "hypocalcemia") for f in ev.findings):
        ev.add("advisory", "electrolyte-not-established-cause", "ELECTROLYTE-CAVEAT", rules.citations, [])


def _evaluate_calcium(ev: _Evaluation) -> None:
    rule = ev.rules.electrolytes.hypocalcemia
    ionized = ev.latest.get("calcium-ionized")
    if ionized is not None and ionized.value is not None:
        ev.use(ionized)
        answer = ionized.value.below(rule.ionized_below)
        if answer:
            ev.add(
                "finding",
                "hypocalcemia",
                rule.rule_id,
                ev.rules.electrolytes.citations,
                [_used(ionized)],
                [Threshold("ionized calcium", "<", rule.ionized_below, rule.unit)],
                severity=_severity(ionized.value, rule.ionized_severity),
            )
        elif answer is None:
            ev.indeterminate("calcium-ionized", "hypocalcemia", ionized, "the reported bound does not decide")
        return
    total = ev.latest.get("calcium-total")
    if total is None or total.value is None:
        ev.missing("calcium-total", "calcium (ionized or total)")
        return
    ev.use(total)
    same_day_albumin = [a for a in ev.usable.get("albumin", []) if a.effective_date == total.effective_date]
    values = [_used(total)]
    citations = ev.rules.electrolytes.citations
    if same_day_albumin:
        albumin = _select_latest(same_day_albumin)
        albumin_value = albumin.value or Bound(rule.payne.reference_albumin)  # numeric results always have one
        payne = rule.payne
        # Payne 1973: corrected calcium rises with calcium and falls with albumin
        corrected_or_none = combine_monotonic(
            lambda ca, alb: ca + payne.coefficient_per_gram_per_litre * (payne.reference_albumin - alb),
            (total.value, True),
            (albumin_value, False),
        )
        if corrected_or_none is None:
            ev.indeterminate(
                "calcium-total",
                "albumin-corrected calcium",
                total,
                "calcium and albumin bounds point in opposite directions",
            )
            return
        corrected = corrected_or_none
        ev.use(albumin)
        values = [
            ValueUsed(
                "calcium-corrected",
                corrected,
                rule.unit,
                total.effective_date,
                (total.reference, albumin.reference),
                reported=f"calcium {total.reported}, albumin {albumin.reported}",
                computed="total calcium corrected for same-day albumin (Payne 1973)",
            ),
            _used(total),
            _used(albumin),
        ]
        judged = corrected
        note = None
        citations = (*citations, *payne.citations)
        name = "albumin-corrected calcium"
    else:
        judged = total.value
        note = "No same-day albumin: total calcium not corrected."
        name = "total calcium (uncorrected)"
    answer = judged.below(rule.corrected_total_below)
    if answer:
        ev.add(
            "finding",
            "hypocalcemia",
            rule.rule_id,
            citations,
            values,
            [Threshold(name, "<", rule.corrected_total_below, rule.unit)],
            severity=_severity(judged, rule.total_severity),
            note=note,
        )
    elif answer is None:
        ev.indeterminate("calcium-total", "hypocalcemia", total, "the reported bound does not decide")


# --- medications (section 8) -----------------------------------------------------------------------


def _concept_name(concept: Any) -> str | None:
    """CodeableConcept.text, else the first coding display; None for anything malformed."""
    if not isinstance(concept, Mapping):
        return None
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    return None


def _evaluate_medications(ev: _Evaluation, medications: Sequence[Mapping[str, Any]]) -> None:
    rule = ev.rules.medications
    terminology = ev.knowledge.terminology
    category_urls = ev.knowledge.aggravating_category_urls
    for medication in medications:
        if not isinstance(medication, Mapping):
            continue
        status = medication.get("status")
        if not isinstance(status, str) or status not in ACTIVE_MEDICATION_STATUSES:
            continue
        codes = tuple(c for c in codings_of(medication.get("medicationCodeableConcept")) if c[0] == RXNORM)
        if not codes or not terminology.contains(rule.aggravating_value_set, codes):
            continue
        category = next((terminology.value_set_titles[u] for u in category_urls if terminology.contains(u, codes)), "")
        reference = f"{medication.get('resourceType', 'MedicationRequest')}/{medication.get('id', '?')}"
        concept = medication.get("medicationCodeableConcept")
        name = _concept_name(concept) or codes[0][1]
        ev.add(
            "advisory",
            "aggravating-medication",
            rule.rule_id,
            rule.citations,
            [],
            note=f"{name} ({category.lower() or 'listed aggravator'}) may aggravate RLS symptoms.",
            extra_basis=(reference,),
        )


# --- entry point ------------------------------------------------------------------------------------


def evaluate(
    patient: PatientFacts,
    observations: Sequence[Mapping[str, Any]],
    *,
    as_of: date,
    knowledge: Knowledge,
    conditions: Sequence[Mapping[str, Any]] = (),
    procedures: Sequence[Mapping[str, Any]] = (),
    medications: Sequence[Mapping[str, Any]] = (),
    not_evaluable: Sequence[NotEvaluable] = (),
) -> Assessment:
    """Apply rule set ``knowledge.ruleset`` to one patient's data as of ``as_of``.

    ``not_evaluable``: what the caller already set aside (resources not linked to the patient, D1),
    reported first in the Assessment's not-evaluable list.
    """
    selection = knowledge.ruleset.selection
    usable: dict[str, list[LabResult]] = {}
    problems: list[NotEvaluable] = list(not_evaluable)
    seen: set[str] = set()
    terminology, units = knowledge.terminology, knowledge.units
    for observation in observations:
        if type(observation) is not dict and not isinstance(observation, Mapping):
            problems.append(NotEvaluable("unknown-code", "an entry that is not a FHIR resource was skipped"))
            continue
        reference = f"Observation/{observation.get('id', '?')}"
        if reference in seen and reference != "Observation/?":
            continue  # the same resource twice (e.g. overlapping pages) counts once
        seen.add(reference)
        outcome = classify_one(observation, reference, terminology, units, selection, as_of)
        if isinstance(outcome, LabResult):
            results = usable.get(outcome.analyte)
            if results is None:
                usable[outcome.analyte] = [outcome]
            else:
                results.append(outcome)
        else:
            problems.append(outcome)

    tiers = knowledge.egfr_tiers
    latest = {
        analyte: _select_latest(results, (lambda code: tiers.get(code, len(tiers))) if analyte == "egfr" else None)
        for analyte, results in usable.items()
    }
    ev = _Evaluation(knowledge, patient, as_of, latest, usable, not_evaluable=problems)
    age_years = age_in_years(patient.birth_date, as_of) if patient.birth_date else None
    pregnancy = _pregnancy(ev, conditions)
    weeks_now = pregnancy.weeks_on(as_of)
    pregnant_now = pregnancy.pregnant and (
        weeks_now is None or weeks_now < selection.gestational_age_implausible_from_weeks
    )
    if pregnancy.pregnant and not pregnant_now:
        ev.not_evaluable.append(
            NotEvaluable(
                "stale",
                "pregnancy record outdated: projected gestational age beyond 44 weeks",
                "pregnancy-status",
            )
        )

    gfr_category, kidney_failure = _evaluate_kidney(ev, age_years, [*conditions, *procedures])
    iron_band, inflammation_word = _evaluate_iron(ev, age_years, kidney_failure)
    _evaluate_anemia(ev, pregnancy, age_years)
    _evaluate_electrolytes(ev)
    _evaluate_medications(ev, medications)

    ordered = sorted(ev.findings, key=lambda f: FINDING_ORDER.index(f.code))
    context = PatientContext(
        sex=patient.sex,
        age_years=age_years,
        pregnant=pregnant_now,
        trimester=_trimester(weeks_now, ev) if pregnant_now else None,
        pregnancy_basis=pregnancy.basis if pregnant_now else (),
        inflammation=None if inflammation_word in ("not-assessed", "indeterminate") else inflammation_word == "present",
    )
    return Assessment(
        patient=patient.reference,
        as_of=as_of,
        rule_set_id=knowledge.ruleset.id,
        rule_set_version=knowledge.ruleset.version,
        context=context,
        findings=tuple(ordered),
        advisories=tuple(ev.advisories),
        gfr_category=gfr_category,
        iron_band=iron_band,
        not_evaluable=tuple(ev.not_evaluable),
        used_observations=tuple(sorted(ev.used.values(), key=lambda r: r.reference)),
    )
