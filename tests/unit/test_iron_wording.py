"""Exact clinician words for the iron and pregnancy decisions of 2026.2 (D10-D13, D18, D24, D26).

Each case is a wording defect an independent review found in 2026.1; the text report
(``report.format_text``) and the CDS card (``CardBuilder``) are checked word for word.
"""

from __future__ import annotations

import re

import pytest
from engine_helpers import (
    FERRITIN,
    HEMOGLOBIN,
    ICD10CM,
    TSAT,
    assess,
    condition,
    gestational_age,
    knowledge,
    obs,
    patient,
    pregnancy_status,
)

from rls_screen.cds.cards import CardBuilder
from rls_screen.model import Assessment
from rls_screen.report import format_text

pytestmark = pytest.mark.unit

WOMAN = patient("female", age_years=30)
CHILD = patient("female", age_years=10)


def iron(ferritin_value: float, tsat_value: float) -> list[dict]:
    return [obs(FERRITIN, ferritin_value, "ug/L"), obs(TSAT, tsat_value, "%")]


def text(assessment: Assessment) -> str:
    return format_text(assessment, knowledge().ruleset)


def lines(assessment: Assessment) -> list[str]:
    return text(assessment).splitlines()


def card(assessment: Assessment, code: str) -> tuple[str, str]:
    builder = CardBuilder(knowledge(), "rls-screen", "hook-1", "subject-1", mode="per-finding")
    [draft] = [d for d in builder.patient_view(assessment) if d.card.source.topic and d.card.source.topic.code == code]
    return draft.card.summary, draft.card.detail or ""


def test_child_gets_oral_only_wording_without_adult_thresholds_or_iv() -> None:
    assessment = assess(iron(40, 25), who=CHILD)
    out = lines(assessment)
    assert out[2] == (
        "  - Iron below RLS target: ferritin 40 µg/L on 2026-03-05; threshold ferritin < 50 µg/L, TSAT < 20 % "
        "[AASM 2024; IRLSSG 2018; rule IRON-INSUFFICIENT-RLS v2026.3]. Paediatric threshold (AASM 2024): "
        "ferritin < 50 µg/L. Consider oral iron for RLS: oral ferrous sulfate may be considered when "
        "ferritin < 50 µg/L (AASM 2024 paediatric statement)."
    )
    assert (
        "Iron therapy band: oral-only: oral ferrous sulfate may be considered (AASM 2024 paediatric statement)" in out
    )
    summary, detail = card(assessment, "iron-insufficient-for-rls")
    assert summary == (
        "Iron below RLS target: ferritin 40 µg/L on 2026-03-05 (< 50 µg/L); "
        "AASM 2024: oral iron may be considered for RLS"
    )
    for words in (text(assessment), summary, detail):
        assert re.search(r"\b(75|100)\b", words) is None
        assert re.search(r"\bIV\b", words) is None
        assert "oral or IV" not in words


def test_overload_tsat_with_low_ferritin_never_suggests_iron_therapy() -> None:
    assessment = assess(iron(40, 50))
    out = lines(assessment)
    assert out[2].endswith(
        "[AASM 2024; IRLSSG 2018; rule IRON-INSUFFICIENT-RLS v2026.3] Below an RLS iron target by one measure, "
        "but iron therapy for RLS is not indicated at these values (see the iron-therapy band and advisories)."
    )
    assert "Iron therapy band: not-indicated: iron therapy not indicated by iron status (AASM 2024; IRLSSG 2018)" in out
    # the advisory names the value it rests on, against its own threshold, once (D23)
    assert (
        "  - TSAT 50 % on 2026-03-05 (TSAT >= 45 %): iron supplementation may risk iron overload (IRLSSG 2018)." in out
    )
    summary, detail = card(assessment, "iron-insufficient-for-rls")
    assert summary == (
        "Iron below RLS target: ferritin 40 µg/L on 2026-03-05 (<= 75 µg/L); "
        "iron therapy for RLS is not indicated at these values"
    )
    for words in (text(assessment), summary, detail):
        assert "Consider iron therapy" not in words
        assert "may be considered" not in words


def test_very_high_ferritin_with_low_tsat_gets_the_caveat_not_iron_therapy() -> None:
    assessment = assess(iron(1600, 8))
    out = lines(assessment)
    assert (
        "  - ferritin 1600 µg/L on 2026-03-05; TSAT 8 % on 2026-03-05 (ferritin > 300 µg/L, TSAT < 20 %): "
        "suggests inflammation or functional iron deficiency; iron therapy for RLS is not supported at this ferritin."
    ) in out
    assert "Iron therapy band: not-indicated: iron therapy not indicated by iron status (AASM 2024; IRLSSG 2018)" in out
    summary, detail = card(assessment, "iron-insufficient-for-rls")
    assert "- High ferritin with low TSAT: ferritin 1600 µg/L on 2026-03-05; TSAT 8 % on 2026-03-05" in detail
    for words in (text(assessment), summary, detail):
        assert "Consider iron therapy" not in words
        assert "oral or IV" not in words


def test_dialysis_band_offers_iv_iron_sucrose_not_oral_or_iv() -> None:
    assessment = assess(iron(150, 15), conditions=[condition("Z99.2", ICD10CM)])
    out = lines(assessment)
    assert (
        "Iron therapy band: iv-only: IV iron sucrose may be considered when ferritin < 200 µg/L and TSAT < 20 % "
        "(AASM 2024, conditional)"
    ) in out
    assert out[2].endswith(
        "Consider IV iron for RLS on dialysis: IV iron sucrose may be considered when ferritin < 200 µg/L and "
        "TSAT < 20 % (AASM 2024, conditional)."
    )
    summary, detail = card(assessment, "iron-insufficient-for-rls")
    assert summary.endswith("; AASM 2024: IV iron sucrose may be considered on dialysis")
    assert (
        "**Iron therapy band:** IV iron sucrose may be considered when ferritin < 200 µg/L and TSAT < 20 % "
        "(AASM 2024, conditional)."
    ) in detail
    for words in (text(assessment), summary, detail):
        assert "oral or IV" not in words


def test_pregnancy_is_named_an_aggravator_and_iv_iron_is_cautioned_in_the_first_trimester() -> None:
    observations = [pregnancy_status(days_ago=10), gestational_age(10, days_ago=10), *iron(30, 25)]
    assessment = assess(observations, who=WOMAN)
    out = lines(assessment)
    assert out[0].startswith("RLS secondary-cause screen: Patient/p1, female, 30 y, pregnant (trimester 1, 11w3d);")
    assert "  - Pregnancy is an established aggravator of RLS." in out
    assert (
        "Iron therapy band: oral-or-iv: oral iron; IV iron is not advised in the first trimester (Picchietti 2015)"
        in out
    )
    assert out[2].endswith(
        "[AASM 2024; IRLSSG 2018; Picchietti 2015; rule IRON-INSUFFICIENT-RLS v2026.3] Consider iron for RLS in "
        "pregnancy: oral iron; IV iron is not advised in the first trimester (Picchietti 2015)."
    )
    summary, detail = card(assessment, "iron-insufficient-for-rls")
    assert summary == (
        "Iron below RLS target: ferritin 30 µg/L on 2026-03-05 (<= 75 µg/L); "
        "oral iron may be considered for RLS; no IV iron in the first trimester"
    )
    assert "**Pregnant (trimester 1, 11w3d):** Pregnancy is an established aggravator of RLS." in detail
    assert (
        "**Iron therapy band:** oral iron; IV iron is not advised in the first trimester (Picchietti 2015)." in detail
    )
    assert "Picchietti DL et al." in detail
    assert "oral or IV" not in text(assessment)


def test_pregnancy_aggravator_appears_without_any_iron_finding() -> None:
    assessment = assess([pregnancy_status(days_ago=10), *iron(200, 30)], who=WOMAN)
    assert "  - Pregnancy is an established aggravator of RLS." in lines(assessment)


def test_header_and_anaemia_note_state_weeks_and_days_without_rounding_across_a_trimester() -> None:
    # 13.9 weeks on the as-of date itself: 13w6d, trimester 1 in the header and in the finding
    observations = [
        pregnancy_status(days_ago=0),
        gestational_age(13.9, days_ago=0),
        obs(HEMOGLOBIN, 107, "g/L", days_ago=0),
    ]
    out = lines(assess(observations, who=WOMAN))
    assert out[0].startswith("RLS secondary-cause screen: Patient/p1, female, 30 y, pregnant (trimester 1, 13w6d);")
    assert (
        "Trimester 1: gestational age 13.9 weeks on 2026-03-15, projected to 13w6d on the haemoglobin date "
        "(project choice)." in out[3]
    )
    assert "14 weeks" not in "\n".join(out)


def test_header_trimester_differs_from_the_finding_only_with_both_dates_stated() -> None:
    # 12 weeks recorded 20 days ago: 13w5d on the Hb date (8 days ago, trimester 1), 14w6d on the as-of date
    observations = [
        pregnancy_status(days_ago=20),
        gestational_age(12, days_ago=20),
        obs(HEMOGLOBIN, 107, "g/L", days_ago=8),
    ]
    out = lines(assess(observations, who=WOMAN))
    assert out[0].startswith("RLS secondary-cause screen: Patient/p1, female, 30 y, pregnant (trimester 2, 14w6d);")
    assert "threshold Hb (pregnant, trimester 1) < 110 g/L" in out[3]
    assert "projected to 13w5d on the haemoglobin date" in out[3]
