"""Clinician wording: the one home of the words a person reads in a report, card, Flag or batch page.

Outputs keep codes (analyte keys, UCUM units, severity codes, finding codes); text shows the words
below. Names of analytes and units, severity names, threshold and value phrases, citation short
labels (the rule set's ``citations.*.short``), why a finding matters in RLS, and the rule set's
``advice`` lookups live here, so the text report (``report``), CDS cards (``cds.cards``), write-back
narratives (``writeback``) and the batch page (``batch.report``) cannot say one thing two ways.
Spelling: British "anaemia" (docs/rules.md), units in display form ("µg/L", "mL/min/1.73 m²").
Every number or version in a sentence comes from the rule set, never from this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from rls_screen.model import Assessment, Finding, Threshold, ValueUsed
from rls_screen.quantities import format_number
from rls_screen.ruleset import RuleSet

ANALYTE_NAMES: Mapping[str, str] = {
    "ferritin": "ferritin",
    "tsat": "TSAT",
    "iron": "serum iron",
    "tibc": "TIBC",
    "crp": "CRP",
    "hemoglobin": "Hb",
    "egfr": "eGFR",
    "creatinine": "creatinine",
    "albumin": "albumin",
    "magnesium": "magnesium",
    "potassium": "potassium",
    "calcium-total": "total calcium",
    "calcium-ionized": "ionized calcium",
    "calcium-corrected": "albumin-corrected calcium",
    "pregnancy-status": "pregnancy status",
    "gestational-age": "gestational age",
    "b12": "vitamin B12",
    "folate": "folate",
    "hba1c": "HbA1c",
    "osmolality": "osmolality",
    "osmolarity": "calculated osmolarity",
    "sodium": "sodium",
    "glucose": "glucose",
    "urea-nitrogen": "urea nitrogen",
    "audit-c": "AUDIT-C",
}
"""Analyte key -> clinician name (threshold names such as 'hemoglobin (female, non-pregnant)' too)."""

UNIT_NAMES: Mapping[str, str] = {
    "ug/L": "µg/L",
    "ug/dL": "µg/dL",
    "umol/L": "µmol/L",
    "meq/L": "mEq/L",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "wk": "weeks",
    "mosm/kg": "mOsm/kg",
    "mosm/L": "mOsm/L",
    "{score}": "points",
}
"""UCUM code -> display form; a code not listed (g/L, mmol/L, %) is already readable."""

SEVERITY_NAMES: Mapping[str, str] = {
    "grade-1-2": "CTCAE grade 1-2",
    "grade-1": "CTCAE grade 1",
    "grade-2": "CTCAE grade 2",
    "grade-3": "CTCAE grade 3",
    "grade-4": "CTCAE grade 4",
}
"""Severity code -> name; WHO 2024 anaemia bands (mild, moderate, severe) read as they are."""

_NOT_A_CAUSE = "may mimic or aggravate leg symptoms; not an established RLS cause"
RLS_RELEVANCE: Mapping[str, str] = {
    "iron-deficiency": "an established, treatable aggravator of RLS",
    "iron-insufficient-for-rls": "AASM 2024: iron therapy may be considered for RLS",
    # the engine's advice entry for the patient's context (D10-D13, D26) picks these when present
    "iron-insufficient-for-rls.child": "AASM 2024: oral iron may be considered for RLS",
    "iron-insufficient-for-rls.pregnancy": "oral iron may be considered for RLS; no IV iron in the first trimester",
    "iron-insufficient-for-rls.dialysis": "AASM 2024: IV iron sucrose may be considered on dialysis",
    "iron-insufficient-for-rls.not-indicated": "iron therapy for RLS is not indicated at these values",
    "iron-insufficient-for-rls.indeterminate": "whether iron therapy is indicated cannot be determined",
    "anemia": "consider the cause; iron deficiency is common and aggravates RLS",
    "reduced-kidney-function": "associated with RLS; one result cannot show chronicity",
    "kidney-failure": "an established secondary cause of RLS",
    "hypomagnesemia": _NOT_A_CAUSE,
    "hypokalemia": _NOT_A_CAUSE,
    "hyperkalemia": _NOT_A_CAUSE,
    "hypocalcemia": _NOT_A_CAUSE,
    # rule set 2026.3 (docs/rules.md section 11): mimics or aggravators, never established causes
    "hypernatremia": _NOT_A_CAUSE,
    "possible-dehydration": "dehydration may cause cramps that mimic RLS; not an established RLS cause",
    "b12-deficiency": "neuropathy may mimic RLS; not an established RLS cause",
    "b12-borderline": "consider methylmalonic acid; not an established RLS cause",
    "folate-deficiency": "neuropathy may mimic RLS; not an established RLS cause",
    "hba1c-diabetes-range": "diabetic neuropathy may mimic RLS; one value is not a diagnosis",
    "hba1c-prediabetes-range": "one value is not a diagnosis; not an established RLS cause",
    "alcohol-use-positive": "alcohol may aggravate RLS; not an established RLS cause",
}
"""Why a finding matters in RLS, in docs/rules.md's own terms (a card summary's closing words)."""

_UCUM_IN_TEXT = re.compile(
    r"(?<![\w/{])(" + "|".join(re.escape(code) for code in sorted(UNIT_NAMES, key=len, reverse=True)) + r")(?![\w/}])"
)


# --- names -----------------------------------------------------------------------------------------


def analyte_text(name: str) -> str:
    """'tsat' -> 'TSAT'; 'hemoglobin (female, non-pregnant)' -> 'Hb (female, non-pregnant)'."""
    head, _, rest = name.partition(" ")
    return f"{ANALYTE_NAMES.get(head, head)} {rest}".strip()


def unit_text(ucum: str) -> str:
    """'ug/L' -> 'µg/L', 'mL/min/{1.73_m2}' -> 'mL/min/1.73 m²'."""
    return UNIT_NAMES.get(ucum, ucum)


def display_units(text: str) -> str:
    """Every UCUM code of ``UNIT_NAMES`` inside free text (a lab's reported string, an engine note) in display form."""
    return _UCUM_IN_TEXT.sub(lambda match: UNIT_NAMES[match.group(1)], text)


def severity_text(finding: Finding) -> str:
    """'CTCAE grade 3 or higher', 'moderate', or '' without a severity (D20: 'or higher' for a bound)."""
    if not finding.severity:
        return ""
    return SEVERITY_NAMES.get(finding.severity, finding.severity) + (" or higher" if finding.severity_at_least else "")


def finding_head(finding: Finding) -> str:
    """'Hypokalemia (CTCAE grade 3)': the finding's display and its severity."""
    severity = severity_text(finding)
    return f"{finding.display} ({severity})" if severity else finding.display


def rls_relevance(finding: Finding) -> str:
    return RLS_RELEVANCE.get(finding.advice_key or finding.code, RLS_RELEVANCE.get(finding.code, ""))


# --- thresholds and values -------------------------------------------------------------------------


def threshold_text(threshold: Threshold, *, named: bool = True) -> str:
    """'TSAT < 20 %' (or '< 20 %' unnamed, beside a value of that analyte)."""
    bound = f"{threshold.comparator} {format_number(threshold.value)} {unit_text(threshold.unit)}"
    return f"{analyte_text(threshold.name)} {bound}" if named else bound


def threshold_for(value: ValueUsed, thresholds: Sequence[Threshold]) -> Threshold | None:
    """D23: the first threshold of the value's own analyte (a TSAT value is never shown against ferritin's)."""
    own = analyte_text(value.analyte).partition(" ")[0]
    return next((t for t in thresholds if analyte_text(t.name).partition(" ")[0] == own), None)


def threshold_groups(thresholds: Sequence[Threshold]) -> list[list[Threshold]]:
    """Consecutive thresholds of one name and comparator: one threshold restated in other units (D7)."""
    groups: list[list[Threshold]] = []
    for t in thresholds:
        if groups and (groups[-1][0].name, groups[-1][0].comparator) == (t.name, t.comparator):
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def equivalents_text(equivalents: Sequence[Threshold]) -> str:
    """' (= 0.7 mmol/L = 1.4 mEq/L)', or '' when there are none."""
    if not equivalents:
        return ""
    return f" (= {' = '.join(f'{format_number(t.value)} {unit_text(t.unit)}' for t in equivalents)})"


def thresholds_text(thresholds: Sequence[Threshold]) -> str:
    """'magnesium < 1.7 mg/dL (= 0.7 mmol/L = 1.4 mEq/L)': the compared threshold, then its equivalents."""
    return ", ".join(threshold_text(first) + equivalents_text(rest) for first, *rest in threshold_groups(thresholds))


def value_text(value: ValueUsed) -> str:
    """'40 µg/L'; '110 pmol/L (= 49 µg/L)' in another unit; '9.6 mL/min/1.73 m² (computed)'."""
    canonical = f"{value.value.display()} {unit_text(value.unit)}"
    if value.computed:
        return f"{value.value.display(1)} {unit_text(value.unit)} (computed)"
    if not value.reported:
        return canonical
    reported = display_units(value.reported)
    if reported.endswith(f" {unit_text(value.unit)}"):
        return reported
    number, _, unit = reported.partition(" ")
    if _unit_key(unit) == _unit_key(unit_text(value.unit)):  # "mL/min/1.73m2": the same unit, written otherwise
        return f"{number} {unit_text(value.unit)}"
    return f"{reported} (= {canonical})"


def _unit_key(unit: str) -> str:
    """A unit compared without spaces, case or superscripts ("mL/min/1.73m2" is "mL/min/1.73 m²")."""
    return unit.replace(" ", "").replace("²", "2").lower()


def value_phrase(value: ValueUsed) -> str:
    """'ferritin 110 pmol/L (= 49 µg/L) on 2026-10-09'; a computed value says how and from what."""
    if value.computed:
        how = "; ".join(part for part in (value.computed, display_units(value.reported or "")) if part)
        shown = f"{value.value.display(1)} {unit_text(value.unit)} ({how})"
    else:
        shown = value_text(value)
    return f"{analyte_text(value.analyte)} {shown} on {value.effective.isoformat()}"


def values_text(finding: Finding) -> str:
    return "; ".join(value_phrase(value) for value in finding.values)


def advisory_text(advisory: Finding, advice: Mapping[str, str]) -> str:
    """An advisory's words: the engine's note when it has one (it names its values), else the rule
    set's advice, after the values it rests on and their thresholds ("TSAT 50 % on 2026-11-01
    (TSAT >= 45 %): iron supplementation may risk iron overload (IRLSSG 2018).")."""
    if advisory.note:
        return display_units(advisory.note)
    text = advice.get(advisory.code) or advisory.display
    if not (advisory.values and advisory.thresholds):  # a general caveat (altitude, chronicity) stands alone
        return text
    lowered = text if text[1:2].isupper() else f"{text[:1].lower()}{text[1:]}"  # keep "WHO", "TSAT"
    return f"{values_text(advisory)} ({thresholds_text(advisory.thresholds)}): {lowered}"


# --- the one patient-view card and the Flag banner ------------------------------------------------

ONE_CARD_HEADING = "RLS secondary-cause screen: {count}"
ONE_CARD_ORDER = ", most important first"
"""The heading of the one patient-view card's detail (``{count}``: '4 findings'; the order said from two on)."""
ONE_CARD_TABLE_HEADER = ("Finding", "Result", "Value", "Date", "Threshold", "Lab reference", "Guideline")
MEDICINE_RESULT = "active order"
"""The Result cell of a medicine that may aggravate RLS (its Value cell is the engine's note)."""


def count_text(count: int, noun: str = "finding") -> str:
    """'1 finding', '4 findings'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def more_findings_text(count: int, *, short: bool = False) -> str:
    """'+ 3 more RLS-relevant findings' (a card summary's close when the card holds more than one);
    '+ 3 more' when short; '' for none."""
    if not count:
        return ""
    return f"+ {count} more" if short else f"+ {count_text(count, 'more RLS-relevant finding')}"


FLAG_BANNER_PREFIX = "RLS: "
FLAG_BANNER_MAX = 64
"""Flag.code.text is what an EHR shows in its banner or flag list: at most 64 characters (a project choice;
docs/ehr-flags.md says why): the finding and the one value it rests on. The detail is in the narrative."""
BANNER_WITHOUT_VALUE = frozenset({"missing-iron-studies"})
"""Findings whose values are not what the finding is about (the iron study present, not the one missing)."""


def flag_banner_text(finding: Finding) -> str:
    """'RLS: Iron deficiency, ferritin 9 µg/L' (at most FLAG_BANNER_MAX characters, value in canonical units)."""
    measured = [v for v in finding.values if not v.computed] or list(finding.values)
    head = finding_head(finding)
    candidates = [f"{FLAG_BANNER_PREFIX}{head}", f"{FLAG_BANNER_PREFIX}{finding.display}"]
    if measured and finding.code not in BANNER_WITHOUT_VALUE:
        value = measured[0]
        shown = f"{analyte_text(value.analyte)} {value.value.display()} {unit_text(value.unit)}"
        candidates.insert(0, f"{FLAG_BANNER_PREFIX}{head}, {shown}")
    for text in candidates:
        if len(text) <= FLAG_BANNER_MAX:
            return text
    return candidates[-1][: FLAG_BANNER_MAX - 1].rsplit(" ", 1)[0] + "…"


# --- the rule set's words --------------------------------------------------------------------------


def sources_text(rules: RuleSet, citations: Iterable[str]) -> str:
    """'AASM 2024; IRLSSG 2018': the rule set's short labels, each once."""
    return "; ".join(dict.fromkeys(rules.short_label(c) for c in citations))


def advice_for(finding: Finding, advice: Mapping[str, str]) -> str | None:
    """The rule set's advice for a finding in its context (the engine chose the entry: D10-D13)."""
    return advice.get(finding.advice_key or finding.code)


def iron_band_text(assessment: Assessment, advice: Mapping[str, str]) -> str:
    """The band's wording for this patient (adult, child, pregnancy, dialysis), from the rule set."""
    key = assessment.iron_band_advice or f"iron-band.{assessment.iron_band}"
    return advice.get(key) or advice.get(f"iron-band.{assessment.iron_band}", assessment.iron_band)


def pregnancy_text(assessment: Assessment) -> str:
    """'pregnant (trimester 1, 13w6d)': D18, the gestational age at the as-of date in weeks+days."""
    ctx = assessment.context
    if ctx.trimester and ctx.gestational_age_days is not None:
        days = ctx.gestational_age_days
        return f"pregnant (trimester {ctx.trimester}, {days // 7}w{days % 7}d)"
    return f"pregnant (trimester {ctx.trimester})" if ctx.trimester else "pregnant"


def window_text(rules: RuleSet) -> str:
    """'the 365 days': how far back a result is usable (rule set ``selection.windowDays``)."""
    return f"the {rules.selection.window_days} days"


def finding_sentence(finding: Finding, rules: RuleSet) -> str:
    """One finding as: name (severity): values; threshold [sources; rule]. Note. Advice."""
    body = [values_text(finding)] if finding.values else []
    if finding.thresholds:
        body.append(f"threshold {thresholds_text(finding.thresholds)}")
    head = finding_head(finding)
    text = f"{head}: {'; '.join(body)}" if body else head
    text += f" [{sources_text(rules, finding.citations)}; rule {finding.rule_id} v{finding.rule_set_version}]"
    if finding.note:
        text += f". {display_units(finding.note)}"
    advice = advice_for(finding, rules.advice)
    if advice:
        text += f" {advice}"
    return text


# --- the panel worklist (batch report) -------------------------------------------------------------

ROLE_NAMES: Mapping[str, str] = {
    "established-cause": "established cause",
    "related": "related to a cause",
    "test-to-consider": "test to consider",
    "mimic-or-aggravator": "mimic or aggravator",
}
"""A finding's role (CodeSystem rls-finding, ``rls_screen.priority.ROLE_ORDER``) -> words."""

WRITTEN_NAMES: Mapping[str, str] = {
    "created": "created",
    "updated": "updated",
    "unchanged": "unchanged",
    "dry-run": "dry run (nothing written)",
}
"""What the write-back did for a patient in a batch -> words."""

CHANGE_NAMES: Mapping[str, str] = {"new": "new", "changed": "changed", "resolved": "resolved"}
"""How a finding differs from the previous run of the same panel -> words."""


def severity_name(code: str) -> str:
    """'grade-2' -> 'CTCAE grade 2'; WHO anaemia bands read as they are."""
    return SEVERITY_NAMES.get(code, code)
