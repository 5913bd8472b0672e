"""The results of rule set 2026.3 (docs/rules.md section 11) for some adult patients: B12, folate, HbA1c,
osmolality, the osmolarity inputs, sodium and an AUDIT-C survey score.

A patient's "mimic" is drawn from its own stream (``<namespace>/<seed>/<index>/mimics``) after every
other draw, so adding these results changed no earlier value of the panel. About a third of the
non-pregnant adults get one mimic; its values keep clear margins from every section-11 threshold,
in US or SI units as drawn, and ``expected`` says which findings they were drawn to produce (possible
dehydration from an osmolality is not expected when a kidney finding excludes it, W11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Final

from rls_screen.synth.codes import LOINC, OBSERVATION_CATEGORY, RNG_NAMESPACE, TEST_DATA_TAG, UCUM, Json
from rls_screen.synth.dice import Dice

MIMICS: Final = (
    "b12-deficiency",
    "b12-borderline",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "hba1c-prediabetes-range",
    "possible-dehydration",
    "possible-dehydration-calculated",
    "hypernatremia",
    "alcohol-use-positive",
)
MIMIC_SHARE: Final = 0.35
KIDNEY_EXCLUSIONS: Final = frozenset({"kidney-failure", "reduced-kidney-function"})

# (LOINC, display, UCUM code, factor from the canonical unit, decimals)
_B12_NG: Final = ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "pg/mL", 1.0, 0)
_B12_PMOL: Final = ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "pmol/L", 0.738, 0)
_FOLATE_NG: Final = ("2284-8", "Folate [Mass/volume] in Serum or Plasma", "ng/mL", 1.0, 1)
_FOLATE_NMOL: Final = ("2284-8", "Folate [Mass/volume] in Serum or Plasma", "nmol/L", 2.266, 1)
_HBA1C_PCT: Final = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 1.0, 1)
_OSMOLALITY: Final = ("2692-2", "Osmolality of Serum or Plasma", "mosm/kg", 1.0, 0)
_SODIUM: Final = ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 1.0, 0)
_POTASSIUM: Final = ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 1.0, 1)
_GLUCOSE_MG: Final = ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 18.016, 0)
_GLUCOSE_MMOL: Final = ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mmol/L", 1.0, 1)
_UREA_MG: Final = ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 1 / 0.357, 0)
_UREA_MMOL: Final = ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mmol/L", 1.0, 1)
_UNIT_TEXT: Final = {"mosm/kg": "mOsm/kg"}


@dataclass(frozen=True)
class MimicLabs:
    mimic: str | None
    observations: tuple[tuple[datetime, Json], ...]
    expected: frozenset[str]

    def numbered(self, pid: str) -> list[Json]:
        """The Observations with ids ``<patient>-mimic-01`` onwards (apart from the patient's other results)."""
        out = []
        for number, (_, observation) in enumerate(self.observations, start=1):
            out.append({**observation, "id": f"{pid}-mimic-{number:02d}"})
        return out


def draw_mimic(
    seed: int,
    index: int,
    pid: str,
    as_of: date,
    tz: timezone,
    *,
    gender: str,
    age: int,
    pregnant: bool,
    potassium: float,
) -> Callable[[set[str]], MimicLabs]:
    """The section-11 results of one patient; call the result with the patient's other expected findings."""
    dice = Dice(f"{RNG_NAMESPACE}/{seed}/{index}/mimics")
    if age < 18 or pregnant or not dice.chance(MIMIC_SHARE):
        return lambda _expected: MimicLabs(None, (), frozenset())
    mimic = dice.choice(MIMICS)
    si = dice.chance(0.4)
    day = as_of - timedelta(days=dice.integer(3, 40))
    when = datetime.combine(day, time(dice.integer(7, 16), dice.integer(0, 59), tzinfo=tz))
    observations: list[Json] = []

    def lab(spec: tuple[str, str, str, float, int], canonical: float) -> None:
        code, display, unit, factor, decimals = spec
        value = round(canonical * factor, decimals) if decimals else round(canonical * factor)
        observations.append(_observation(pid, when, code, display, "laboratory", "Laboratory", _quantity(value, unit)))

    found: set[str] = {mimic}
    if mimic == "b12-deficiency":
        lab(_B12_PMOL if si else _B12_NG, dice.draw(100, 160))
    elif mimic == "b12-borderline":
        lab(_B12_PMOL if si else _B12_NG, dice.draw(200, 330))
    elif mimic == "folate-deficiency":
        lab(_FOLATE_NMOL if si else _FOLATE_NG, dice.draw(2.0, 3.5))
    elif mimic in ("hba1c-diabetes-range", "hba1c-prediabetes-range"):
        percent = dice.draw(6.8, 9.0) if mimic == "hba1c-diabetes-range" else dice.draw(5.8, 6.3)
        if si:  # IFCC, mmol/mol = (% - 2.15) x 10.929 (W8)
            mmol_mol = round((percent - 2.15) * 10.929)
            observations.append(
                _observation(
                    pid,
                    when,
                    "59261-8",
                    "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol",
                    "laboratory",
                    "Laboratory",
                    _quantity(mmol_mol, "mmol/mol"),
                )
            )
        else:
            lab(_HBA1C_PCT, percent)
    elif mimic == "possible-dehydration":
        lab(_OSMOLALITY, dice.draw(304, 315))
        lab(_SODIUM, dice.draw(138, 142))
    elif mimic == "possible-dehydration-calculated":
        # 1.86 x (143 + K) + 1.15 x glucose + urea + 14 > 300 with glucose 6-8 and urea 10-14 mmol/L (W4)
        lab(_SODIUM, dice.draw(143, 144.4))
        lab(_POTASSIUM, potassium)  # the patient's own potassium: its findings do not change
        lab(_GLUCOSE_MMOL if si else _GLUCOSE_MG, dice.draw(6.0, 8.0))
        lab(_UREA_MMOL if si else _UREA_MG, dice.draw(10.0, 14.0))
        found = {"possible-dehydration"}
    elif mimic == "hypernatremia":
        lab(_SODIUM, dice.draw(147, 153))
        found = {"hypernatremia", "possible-dehydration"}  # no osmolality: sodium alone decides (W11)
    else:  # alcohol-use-positive: a survey score at or above the cut-off for the gender (W5, W13)
        cut = 3 if gender == "female" else 4
        score = dice.integer(cut, 9)
        value: Json = {"valueInteger": score}
        if dice.chance(0.4):
            value = {"valueQuantity": {"value": score, "unit": "{score}", "system": UCUM, "code": "{score}"}}
        observations.append(_observation(pid, when, "75626-2", "Total score [AUDIT-C]", "survey", "Survey", value))
    stamped = tuple((when, o) for o in observations)

    def finish(other_expected: set[str]) -> MimicLabs:
        expected = set(found)
        if mimic in ("possible-dehydration", "possible-dehydration-calculated") and other_expected & KIDNEY_EXCLUSIONS:
            expected.discard("possible-dehydration")  # W11: excluded, the next method (sodium, normal) decides
        return MimicLabs(mimic, stamped, frozenset(expected))

    return finish


def _quantity(value: float, unit: str) -> Json:
    return {"valueQuantity": {"value": value, "unit": _UNIT_TEXT.get(unit, unit), "system": UCUM, "code": unit}}


def _observation(
    pid: str, when: datetime, code: str, display: str, category: str, category_display: str, value: Json
) -> Json:
    return {
        "resourceType": "Observation",
        "id": "",
        "meta": {"tag": [dict(TEST_DATA_TAG)]},
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category, "display": category_display}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
        **value,
    }
