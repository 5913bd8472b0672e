"""Scenarios: which clinical picture each patient is drawn from, its designed values and findings.

``scenario_for`` spreads the weighted scenarios over a panel with a golden-ratio sequence;
``scenario_targets`` draws the deciding values of a scenario in canonical units, with margins from
every threshold of docs/rules.md; ``expected_findings`` states what those values were designed
to produce. docs/synthetic-panel.md has the table.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final

from rls_screen.synth.clinical import hb_cutoffs
from rls_screen.synth.codes import RNG_NAMESPACE
from rls_screen.synth.dice import Dice

# Weights in per mille of an RLS clinic panel (docs/synthetic-panel.md explains each one).
SCENARIO_WEIGHTS: Final[tuple[tuple[str, int], ...]] = (
    ("normal", 100),
    ("iron-deficiency", 140),
    ("iron-deficiency-inflammation", 60),
    ("iron-insufficient", 200),
    ("iron-insufficient-tsat", 50),
    ("iron-iv-band", 50),
    ("iron-overload-risk", 20),
    ("anemia", 100),
    ("ckd-g3a", 40),
    ("ckd-g3b", 25),
    ("ckd-g4", 15),
    ("kidney-failure", 20),
    ("hypomagnesemia", 30),
    ("hypokalemia", 20),
    ("hyperkalemia", 15),
    ("hypocalcemia", 15),
    ("hypocalcemia-ionized", 10),
    ("low-total-calcium-low-albumin", 15),
    ("pregnant-t1", 15),
    ("pregnant-t2", 20),
    ("pregnant-t3", 15),
    ("multi-cause", 25),
)
SCENARIOS: Final = tuple(name for name, _ in SCENARIO_WEIGHTS)
_WEIGHT_TOTAL: Final = sum(weight for _, weight in SCENARIO_WEIGHTS)
CHILD_SCENARIOS: Final = frozenset({"normal", "iron-deficiency", "iron-insufficient", "anemia"})
KIDNEY_SCENARIOS: Final = frozenset({"ckd-g3a", "ckd-g3b", "ckd-g4", "kidney-failure"})
_HISTORY_SCENARIOS: Final = ("normal", "iron-deficiency", "iron-insufficient", "anemia", "hypokalemia", "ckd-g3a")
# eGFR bands (mL/min/1.73 m2) kept 2 units clear of the KDIGO category bounds (section 4).
EGFR_BANDS: Final[dict[str, tuple[float, float]]] = {
    "ckd-g3a": (47, 58),
    "ckd-g3b": (32, 43),
    "ckd-g4": (17, 28),
    "kidney-failure": (5, 13),
}
_GOLDEN: Final = (math.sqrt(5.0) - 1.0) / 2.0


def scenario_for(seed: int, index: int) -> str:
    """The scenario of patient ``index``: a golden-ratio (Weyl) sequence over the cumulative weights.

    A low-discrepancy sequence keeps every prefix of the panel close to the target mix (200 patients
    already match within a patient or two) while still depending only on ``(seed, index)``.
    """
    position = (_scenario_offset(seed) + index * _GOLDEN) % 1.0
    cumulative = 0
    for name, weight in SCENARIO_WEIGHTS:
        cumulative += weight
        if position * _WEIGHT_TOTAL < cumulative:
            return name
    return SCENARIO_WEIGHTS[-1][0]


@lru_cache(maxsize=64)
def _scenario_offset(seed: int) -> float:
    return random.Random(f"{RNG_NAMESPACE}/{seed}/scenario").random()  # noqa: S311 - test data


@dataclass(slots=True)
class Targets:
    """Values of one draw, canonical units."""

    ferritin: float
    tsat: float
    tibc: float
    crp: float
    hb: float
    egfr: float
    mg: float
    k: float
    ca: float
    albumin: float
    ca_ionized: float | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """What cut-offs and normal bands depend on."""

    gender: str
    age: int
    trimester: int | None


def _normal_targets(dice: Dice, person: Person) -> Targets:
    age = person.age
    hb_low = max(hb_cutoffs(person.gender, age, person.trimester)) + 0.6
    if age < 18:
        egfr_band = (95.0, 130.0)
    elif age < 40:
        egfr_band = (92.0, 125.0)
    elif age < 65:
        egfr_band = (72.0, 108.0)
    else:
        egfr_band = (63.0, 92.0)
    return Targets(
        ferritin=dice.draw(105, 180) if age < 18 else dice.draw(105, 380),
        tsat=dice.draw(23, 40),
        tibc=dice.draw(250, 380),
        crp=dice.draw(0.3, 4.0),
        hb=dice.draw(hb_low, hb_low + 2.8),
        egfr=dice.draw(*egfr_band),
        mg=dice.draw(0.76, 1.00),
        k=dice.draw(3.7, 4.9),
        ca=dice.draw(9.2, 10.2),
        albumin=dice.draw(3.5, 4.5),
    )


def _anemic_hb(dice: Dice, person: Person, trimester: int | None) -> float:
    high = min(hb_cutoffs(person.gender, person.age, trimester)) - 0.5
    return dice.draw(max(high - 3.5, 6.5), high)


def scenario_targets(dice: Dice, scenario: str, person: Person) -> Targets:
    """The deciding values of ``scenario`` for ``person`` (canonical units; the draw order is fixed)."""
    t = _normal_targets(dice, person)
    adult = person.age >= 18
    if scenario == "iron-deficiency":
        t.ferritin, t.tsat, t.tibc = dice.draw(3, 13), dice.draw(4, 16), dice.draw(360, 480)
    elif scenario == "iron-deficiency-inflammation":
        t.ferritin, t.tsat, t.tibc = dice.draw(20, 65), dice.draw(8, 18), dice.draw(230, 320)
        t.crp = dice.draw(8, 80)
    elif scenario == "iron-insufficient":
        t.ferritin = dice.draw(17, 72) if adult else dice.draw(17, 46)
    elif scenario == "iron-insufficient-tsat":
        t.ferritin, t.tsat = dice.draw(85, 220), dice.draw(9, 18)
    elif scenario == "iron-iv-band":
        t.ferritin = dice.draw(78, 98)
    elif scenario == "iron-overload-risk":
        t.ferritin, t.tsat, t.tibc = dice.draw(180, 600), dice.draw(47, 75), dice.draw(220, 300)
    elif scenario == "anemia":
        t.hb = _anemic_hb(dice, person, None)
        if dice.chance(0.5):  # iron-deficiency anemia
            t.ferritin, t.tsat, t.tibc = dice.draw(3, 13), dice.draw(3, 12), dice.draw(380, 480)
    elif scenario in KIDNEY_SCENARIOS:
        t.egfr = dice.draw(*EGFR_BANDS[scenario])
        if dice.chance({"ckd-g4": 0.3, "kidney-failure": 0.6}.get(scenario, 0.1)):  # renal anemia
            t.hb = _anemic_hb(dice, person, None)
        if scenario == "kidney-failure" and dice.chance(0.3):
            t.k = dice.draw(5.3, 6.2)
    elif scenario == "hypomagnesemia":
        t.mg = dice.draw(0.45, 0.64)
    elif scenario == "hypokalemia":
        t.k = dice.draw(2.7, 3.3)
    elif scenario == "hyperkalemia":
        t.k = dice.draw(5.3, 6.4)
    elif scenario == "hypocalcemia":
        t.ca, t.albumin = dice.draw(7.0, 7.9), dice.draw(3.6, 4.4)
    elif scenario == "hypocalcemia-ionized":
        # Total Ca corrects to normal; the ionized result decides (docs/rules.md section 5).
        t.ca, t.ca_ionized = dice.draw(9.2, 9.8), dice.draw(0.92, 1.08)
    elif scenario == "low-total-calcium-low-albumin":
        # Low total Ca that albumin correction (Payne) brings back to normal: no hypocalcemia.
        t.ca, t.albumin = dice.draw(7.9, 8.3), dice.draw(2.3, 2.9)
        if dice.chance(0.3):
            t.ca_ionized = dice.draw(1.18, 1.28)
    elif scenario.startswith("pregnant-t"):
        roll = dice.random()
        if roll < 0.15:
            t.ferritin, t.tsat = dice.draw(4, 13), dice.draw(5, 15)
        elif roll < 0.65:
            t.ferritin = dice.draw(17, 60)
        if dice.chance(0.25):
            t.hb = _anemic_hb(dice, person, person.trimester)
    elif scenario == "multi-cause":
        t.ferritin, t.tsat, t.tibc = dice.draw(3, 13), dice.draw(4, 14), dice.draw(380, 480)
        t.hb = _anemic_hb(dice, person, None)
        t.egfr = dice.draw(*EGFR_BANDS["ckd-g3a" if dice.chance(0.5) else "ckd-g3b"])
        if dice.chance(0.5):
            t.mg = dice.draw(0.45, 0.64)
    return t


def history_targets(dice: Dice, own_scenario: str, person: Person) -> Targets:
    """Values of an older draw: the patient's own profile, or another one (e.g. before treatment)."""
    scenario = own_scenario if dice.chance(0.5) else dice.choice(_HISTORY_SCENARIOS)
    if scenario.startswith("pregnant-t"):
        scenario = "normal"
    return scenario_targets(dice, scenario, replace(person, trimester=None))


def expected_findings(t: Targets, presence: Mapping[str, str], person: Person) -> set[str]:
    """The findings the deciding values were drawn to produce (docs/rules.md 2-5, margins kept)."""
    found: set[str] = set()
    ferritin = t.ferritin if presence["ferritin"] == "all" else None
    tsat = t.tsat if presence["tsat"] == "all" or presence["tibc"] == "all" else None
    inflamed = presence["crp"] == "all" and t.crp > 5
    # D9: under 5 years ferritin < 12 (with inflammation < 30); otherwise < 15 (< 70)
    low, low_inflamed = (12, 30) if person.age < 5 else (15, 70)
    deficient = ferritin is not None and (ferritin < low or (inflamed and ferritin < low_inflamed))
    if deficient:
        found.add("iron-deficiency")
    low_ferritin = ferritin is not None and (ferritin < 50 if person.age < 18 else ferritin <= 75)
    if not deficient and (low_ferritin or (tsat is not None and tsat < 20)):
        found.add("iron-insufficient-for-rls")
    if ferritin is None or tsat is None:
        found.add("missing-iron-studies")
    if t.hb < min(hb_cutoffs(person.gender, person.age, person.trimester)):
        found.add("anemia")
    if t.egfr < 15:
        found.add("kidney-failure")
    elif t.egfr < 60:
        found.add("reduced-kidney-function")
    if t.mg < 0.70:
        found.add("hypomagnesemia")
    if t.k < 3.5:
        found.add("hypokalemia")
    if t.k > 5.0:
        found.add("hyperkalemia")
    if t.ca_ionized is not None:
        low_calcium = t.ca_ionized < 1.15
    elif presence["albumin"] == "all":
        low_calcium = t.ca + 0.8 * (4.0 - t.albumin) < 8.5
    else:
        low_calcium = t.ca < 8.5
    if low_calcium:
        found.add("hypocalcemia")
    return found


def target_summary(t: Targets, presence: Mapping[str, str]) -> tuple[tuple[str, float], ...]:
    """The deciding values of the analytes that have a usable result, rounded for the manifest."""
    summary: list[tuple[str, float]] = []
    for name in ("ferritin", "tsat", "crp", "hb", "egfr", "mg", "k", "ca", "albumin", "ca_ionized"):
        present = presence["tsat"] == "all" or presence["tibc"] == "all" if name == "tsat" else presence[name] == "all"
        if name == "egfr":
            present = True  # measured, or computable from creatinine
        value = getattr(t, name)
        if present and value is not None:
            summary.append((name, round(float(value), 2)))
    return tuple(summary)
