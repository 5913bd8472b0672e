"""The versioned rule set: every threshold of docs/rules.md, with its citation, as data.

The JSON file beside this module is what a clinical reviewer reads and changes; these models only
give it types and reject typos (``extra="forbid"``), so a misspelt threshold fails at start-up rather
than silently falling back to nothing.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from rls_screen.errors import ConfigurationError

DEFAULT_RULESET = "rls-secondary-causes-2026.3.json"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class BelowBand(_Model):
    severity: str
    below: float


class AboveBand(_Model):
    severity: str
    above: float


class SameTime(_Model):
    """D3: when results of one analyte tie at the same time, which thresholds their values are judged against."""

    rule_id: str
    note: str
    thresholds: dict[str, tuple[str, ...]]
    """Analyte -> dotted paths into this rule-set file (``*`` one level, ``**`` any depth, fnmatch on keys)."""
    any_difference_note: str


class Selection(_Model):
    rule_id: str
    usable_statuses: tuple[str, ...]
    ignored_statuses: tuple[str, ...]
    pending_statuses: tuple[str, ...]
    superseding_statuses: tuple[str, ...]
    """D3: statuses that supersede ``final`` for one analyte at the same time."""
    same_time: SameTime
    window_days: int
    window_note: str
    pediatric_age_below_years: int
    adult_hemoglobin_from_age_years: int
    trimester: dict[str, int]


class Inflammation(_Model):
    rule_id: str
    crp_above: float
    within_days_of_ferritin: int
    citations: tuple[str, ...]


class IronDeficiency(_Model):
    rule_id: str
    ferritin_below: float
    ferritin_below_with_inflammation: float
    young_child_below_age_years: int
    """D9: under this age (WHO 2020) the young-child ferritin thresholds apply."""
    young_child_ferritin_below: float
    young_child_ferritin_below_with_inflammation: float
    citations: tuple[str, ...]


class IronInsufficient(_Model):
    rule_id: str
    ferritin_at_most: float
    tsat_below: float
    pediatric_ferritin_below: float
    citations: tuple[str, ...]


class IronBand(_Model):
    """D10 (adults), D11 and D26 (children), D24 (dialysis): the iron-therapy band, steps in order."""

    rule_id: str
    not_indicated_tsat_at_least: float
    not_indicated_ferritin_above: float
    oral_or_iv_ferritin_at_most: float
    iv_only_ferritin_at_most: float
    tsat_below: float
    pediatric_ferritin_below: float
    citations: tuple[str, ...]
    pregnancy_citations: tuple[str, ...]


class HighFerritinLowTsat(_Model):
    rule_id: str
    ferritin_above: float
    tsat_below: float
    citations: tuple[str, ...]


class SimpleRule(_Model):
    rule_id: str
    citations: tuple[str, ...]


class OverloadRisk(_Model):
    rule_id: str
    tsat_at_least: float
    citations: tuple[str, ...]


class DialysisIvIron(_Model):
    rule_id: str
    ferritin_below: float
    tsat_below: float
    citations: tuple[str, ...]


class Iron(_Model):
    ferritin_unit: str
    tsat_unit: str
    crp_unit: str
    inflammation: Inflammation
    deficiency: IronDeficiency
    insufficient_for_rls: IronInsufficient
    band: IronBand
    missing_studies: SimpleRule
    overload_risk: OverloadRisk
    high_ferritin_low_tsat: HighFerritinLowTsat
    dialysis_iv_iron: DialysisIvIron


class Pregnancy(_Model):
    """D12, D18, D28: how long pregnancy evidence counts, and the pregnancy-aggravator advisory."""

    rule_id: str
    status_without_gestational_age_days: int
    gestational_age_outdated_above_weeks: float
    gestational_age_note: str
    citations: tuple[str, ...]


class HemoglobinCutoff(_Model):
    below: float
    severity: tuple[BelowBand, ...]


class ChildCutoff(_Model):
    from_months: int
    to_months_exclusive: int
    below: float
    severity: tuple[BelowBand, ...]
    """D19: WHO 2024 severity bands for this age group, most severe first."""


class Anemia(_Model):
    rule_id: str
    unit: str
    citations: tuple[str, ...]
    adult: dict[Literal["male", "female"], HemoglobinCutoff]
    pregnant: dict[Literal["1", "2", "3"], HemoglobinCutoff]
    children: tuple[ChildCutoff, ...]
    children_note: str


class GfrCategory(_Model):
    category: str
    below: float | None


class KidneyRule(_Model):
    rule_id: str
    categories: tuple[str, ...]
    citations: tuple[str, ...]
    dialysis_qualifies: bool = False


class Dialysis(_Model):
    """D16: which Conditions and Procedures show dialysis (kidney failure by dialysis, D13)."""

    condition_value_set: str
    procedure_value_set: str
    procedure_statuses: tuple[str, ...]
    procedure_within_days: int
    note: str
    citations: tuple[str, ...]


class CkdEpiSex(_Model):
    kappa: float
    alpha: float
    factor: float


class CreatinineFallback(_Model):
    rule_id: str
    project_choice: bool
    citations: tuple[str, ...]
    min_age_years: int
    constant: float
    age_base: float
    high_exponent: float
    female: CkdEpiSex
    male: CkdEpiSex


class Kidney(_Model):
    unit: str
    gfr_categories: tuple[GfrCategory, ...]
    reduced_function: KidneyRule
    failure: KidneyRule
    dialysis: Dialysis
    egfr_precedence: tuple[str, ...]
    creatinine_fallback: CreatinineFallback


class Equivalent(_Model):
    """D7: a threshold restated in another unit; a result reported in that unit is compared with it."""

    unit: str
    value: float


class LowElectrolyte(_Model):
    rule_id: str
    unit: str
    below: float
    equivalents: tuple[Equivalent, ...] = ()
    severity: tuple[BelowBand, ...]
    severity_note: str | None = None


class HighElectrolyte(_Model):
    rule_id: str
    unit: str
    above: float
    severity: tuple[AboveBand, ...]


class PayneConventional(_Model):
    """Payne 1973 in conventional units: Ca (mg/dL) + coefficient x (reference - albumin g/dL)."""

    unit: str
    albumin_unit: str
    coefficient: float
    reference_albumin: float


class Payne(_Model):
    coefficient_per_gram_per_litre: float
    reference_albumin: float
    conventional: PayneConventional
    citations: tuple[str, ...]


class Hypocalcemia(_Model):
    rule_id: str
    unit: str
    ionized_below: float
    ionized_equivalents: tuple[Equivalent, ...]
    corrected_total_below: float
    corrected_total_equivalents: tuple[Equivalent, ...]
    albumin_unit: str
    payne: Payne
    ionized_severity: tuple[BelowBand, ...]
    total_severity: tuple[BelowBand, ...]


class PotentiallyDangerous(_Model):
    """D20: CTCAE grades worded as potentially dangerous (and shown as critical on a card)."""

    severities: tuple[str, ...]
    note: str
    summary: str
    """The short form for a CDS card summary (under 140 characters with the value)."""
    citations: tuple[str, ...]


class Electrolytes(_Model):
    citations: tuple[str, ...]
    comparison_note: str
    potentially_dangerous: PotentiallyDangerous
    hypomagnesemia: LowElectrolyte
    hypokalemia: LowElectrolyte
    hyperkalemia: HighElectrolyte
    hypocalcemia: Hypocalcemia
    hypernatremia: HighElectrolyte
    """W12: sodium > 145 mmol/L, CTCAE v5.0 grades (rule set 2026.3)."""


class B12(_Model):
    """W1, W8, W10 (NICE NG239): total B12 deficiency and borderline, from age 16."""

    rule_id: str
    unit: str
    deficiency_below: float
    deficiency_equivalents: tuple[Equivalent, ...]
    borderline_at_most: float
    borderline_equivalents: tuple[Equivalent, ...]
    from_age_years: int
    pregnancy_note: str
    lab_note: str
    citations: tuple[str, ...]


class Folate(_Model):
    """W2, W8 (WHO 2015): serum folate deficiency."""

    rule_id: str
    unit: str
    below: float
    equivalents: tuple[Equivalent, ...]
    citations: tuple[str, ...]


class Hba1c(_Model):
    """W3, W8, W9 (ADA 2025, WHO 2011): HbA1c in the diabetes or prediabetes range, and when it is unreliable."""

    rule_id: str
    unit: str
    diabetes_at_least: float
    diabetes_equivalents: tuple[Equivalent, ...]
    prediabetes_at_least: float
    prediabetes_equivalents: tuple[Equivalent, ...]
    one_value_note: str
    unreliable_with_findings: tuple[str, ...]
    unreliable_in_pregnancy: bool
    unreliable_note: str
    citations: tuple[str, ...]


class Neuropathy(_Model):
    note: str
    b12: B12
    folate: Folate
    hba1c: Hba1c


class Osmolality(_Model):
    unit: str
    above: float


class Osmolarity(_Model):
    """W4: 1.86 x (Na + K) + 1.15 x glucose + urea + 14, all in mmol/L from one day."""

    unit: str
    above: float
    sodium_potassium_factor: float
    glucose_factor: float
    urea_factor: float
    constant: float


class Hydration(_Model):
    """W4, W11 (ESPEN 2019, Lacey 2019): possible dehydration from the newest usable method."""

    rule_id: str
    note: str
    from_age_years: int
    osmolality: Osmolality
    osmolarity: Osmolarity
    sodium_unit: str
    sodium_above: float
    excluded_with_findings: tuple[str, ...]
    glucose_unit: str
    glucose_excluded_above: float
    glucose_excluded_equivalents: tuple[Equivalent, ...]
    exclusion_advisory_only_when_raised: bool
    """Project choice: the W11 advisory is given when the excluded measurement was above its threshold."""
    citations: tuple[str, ...]


class Alcohol(_Model):
    """W5, W13 (USPSTF 2018): a positive AUDIT-C by sex (other or unknown: the higher cut-off)."""

    rule_id: str
    unit: str
    male_at_least: float
    female_at_least: float
    other_or_unknown_sex_at_least: float
    citations: tuple[str, ...]


class Medications(_Model):
    rule_id: str
    aggravating_value_set: str
    citations: tuple[str, ...]


class Citation(_Model):
    """A source: ``text`` is the full citation (card details, FHIR notes); ``short`` labels it in one-line text."""

    short: str
    text: str
    doi: str | None = None
    """The publication's DOI (``10.xxxx/...``), verified against the publication; cards link https://doi.org/<doi>."""


class RuleSet(_Model):
    id: str
    version: str
    title: str
    status: str
    specification: str
    documentation_url: str | None = None
    """Deprecated and unused: the service serves its own rule pages under RLS_SCREEN_PUBLIC_URL (/rules/...)."""
    citations: dict[str, Citation]
    selection: Selection
    pregnancy: Pregnancy
    iron: Iron
    anemia: Anemia
    kidney: Kidney
    electrolytes: Electrolytes
    neuropathy: Neuropathy
    hydration: Hydration
    alcohol: Alcohol
    caffeine: SimpleRule
    """W6: one note that caffeine intake was not assessed; never a finding."""
    medications: Medications
    advice: dict[str, str]
    """Finding/advisory code -> what a clinician may consider doing (short, sourced)."""

    def cite(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Full citation texts for citation keys (unknown keys were rejected at load time)."""
        return tuple(self.citations[key].text for key in keys)

    def citation_of(self, citation: str) -> Citation | None:
        """The Citation whose full text ``cite`` returned, or None for a text not in this rule set."""
        return next((c for c in self.citations.values() if c.text == citation), None)

    def short_label(self, citation: str) -> str:
        """The short label ('AASM 2024') of a full citation text as ``cite`` returns it; the text itself if unknown."""
        return next((c.short for c in self.citations.values() if c.text == citation), citation)


def _citation_keys(node: object) -> list[str]:
    """Every citation key used anywhere in the rule set, for the load-time reference check."""
    keys: list[str] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "citations" and isinstance(value, list):
                keys.extend(str(item) for item in value)
            else:
                keys.extend(_citation_keys(value))
    elif isinstance(node, list):
        for item in node:
            keys.extend(_citation_keys(item))
    return keys


def parse_ruleset(text: str, *, source: str = "rule set") -> RuleSet:
    """Parse and check a rule-set JSON document."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{source}: not valid JSON ({error.msg} at line {error.lineno})") from error
    try:
        ruleset = RuleSet.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"{source}: {where}: {first['msg']}") from error
    unknown = sorted({key for key in _citation_keys(raw) if key not in ruleset.citations})
    if unknown:
        raise ConfigurationError(f"{source}: citation keys not defined in 'citations': {', '.join(unknown)}")
    return ruleset


def load_ruleset(name: str = DEFAULT_RULESET) -> RuleSet:
    """Load a rule set shipped inside the package."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return parse_ruleset(text, source=name)
