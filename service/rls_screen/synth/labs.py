"""One patient's laboratory Observations, formatted the way that patient's lab reports them.

A ``LabStyle`` is drawn once per patient (US or SI units, comparators at the limits of quantitation,
reference ranges, interpretation flags, local codes, the lab's UTC offset); a ``LabSheet`` turns
canonical values into Observations in that style and remembers which result is meant to decide each
analyte. Every random call goes through the patient's ``Dice`` in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from rls_screen.synth.clinical import ckd_epi_2021, creatinine_for_egfr
from rls_screen.synth.codes import (
    INTERPRETATION,
    LOCAL_CODE,
    LOCAL_LAB_SYSTEM,
    LOINC,
    LOINC_DISPLAY,
    OBSERVATION_CATEGORY,
    REFERENCE,
    SHORT_NAME,
    SI_UNITS,
    TEST_DATA_TAG,
    TEXT_ONLY_UNITS,
    UCUM,
    UNITS,
    US_UNITS,
    UTC_OFFSETS,
    Json,
    LabUnit,
)
from rls_screen.synth.dice import Dice
from rls_screen.synth.scenarios import Targets


@dataclass(frozen=True, slots=True)
class LabStyle:
    """How one lab reports (drawn once per patient)."""

    units: dict[str, str]
    tz: timezone
    ferritin_loq: bool
    """Reports ferritin below 5 as '<5'."""
    crp_loq: bool
    """Reports a low CRP as '<3' mg/L or '<0.5' mg/dL."""
    egfr_cap: int | None
    """Reports eGFR above the cap as '>cap'."""
    reference_ranges: bool
    interpretation: bool
    local_codes: bool


def draw_lab_style(dice: Dice) -> LabStyle:
    """US (65 %), SI (25 %) or mixed units, and the rest of one lab's habits (docs/synthetic-panel.md)."""
    roll = dice.random()
    if roll < 0.65:
        units = dict(US_UNITS)
        if dice.random() < 0.3:
            units["crp"] = "mg/dL"
        if dice.random() < 0.25:
            units["k"] = "meq/L"
    elif roll < 0.9:
        units = dict(SI_UNITS)
        if dice.random() < 0.3:
            units["ferritin"] = "pmol/L"
        if dice.random() < 0.2:
            units["hb"] = "mmol/L"
    else:  # a patient whose results come from several labs
        units = {analyte: dice.choice((US_UNITS[analyte], SI_UNITS[analyte])) for analyte in US_UNITS}
    cap_roll = dice.random()
    return LabStyle(
        units=units,
        tz=timezone(timedelta(hours=dice.choice(UTC_OFFSETS))),
        ferritin_loq=dice.random() < 0.5,
        crp_loq=dice.random() < 0.4,
        egfr_cap=60 if cap_roll < 0.25 else 90 if cap_roll < 0.4 else None,
        reference_ranges=dice.random() < 0.6,
        interpretation=dice.random() < 0.5,
        local_codes=dice.random() < 0.2,
    )


def analyte_value(analyte: str, values: Targets) -> float:
    """The canonical value of ``analyte`` in a draw (serum iron and UIBC follow from TSAT and TIBC)."""
    if analyte == "iron":
        return values.tsat * values.tibc / 100
    if analyte == "uibc":
        return values.tibc * (1 - values.tsat / 100)
    value = getattr(values, analyte)
    if not isinstance(value, float):
        raise TypeError(f"no value for {analyte}")  # pragma: no cover - callers check ca_ionized
    return value


def round_as_lab(value: float, decimals: int) -> float | int:
    if decimals == 0:
        return round(value)
    return round(value, decimals)


class LabSheet:
    """The Observations of one patient as they are drawn, and which one decides each analyte."""

    def __init__(
        self, dice: Dice, as_of: date, pid: str, index: int, gender: str, age: int, style: LabStyle, quirks: set[str]
    ) -> None:
        self.dice = dice
        self.as_of = as_of
        self.pid = pid
        self.index = index
        self.gender = gender
        self.age = age
        self.style = style
        self.quirks = quirks
        """Shared with the patient's builder: formatting choices are quirks too."""
        self.observations: list[tuple[datetime, int, Json]] = []
        self.deciding: dict[str, Json] = {}
        """Analyte -> the Observation meant to decide it (latest usable)."""

    def when(self, days_ago: int) -> datetime:
        day = self.as_of - timedelta(days=days_ago)
        moment = time(self.dice.integer(7, 16), self.dice.integer(0, 59), tzinfo=self.style.tz)
        return datetime.combine(day, moment)

    def add_kidney(self, values: Targets, when: datetime, *, deciding: bool, with_egfr: bool) -> None:
        """Creatinine and the eGFR the lab computed from it (CKD-EPI 2021) in the same draw.

        ``values.egfr`` becomes the eGFR of the reported (rounded) creatinine, as a lab computes it.
        """
        female = self.gender != "male"
        creatinine = creatinine_for_egfr(values.egfr, self.age, female)
        self.add_lab("creatinine", creatinine, when, deciding=deciding)
        values.egfr = ckd_epi_2021(round(creatinine, 2), self.age, female)
        if not with_egfr:
            return
        if "egfr-race-specific-only" in self.quirks:
            self.add_lab("egfr", values.egfr, when, loinc="48642-3", deciding=deciding)
            return
        self.add_lab("egfr", values.egfr, when, deciding=deciding)
        if "egfr-same-day-twin" in self.quirks:
            # Same draw, lower-precedence code, different value: 98979-8 must win (section 4).
            self.add_lab("egfr", values.egfr * self.dice.uniform(0.85, 0.97), when, loinc="48642-3")

    def unit(self, analyte: str) -> tuple[LabUnit, bool]:
        """The unit this patient's lab reports the analyte in, and whether it sends only unit text."""
        units = UNITS[analyte]
        if f"unit-text-only-{analyte}" in self.quirks:
            return units[TEXT_ONLY_UNITS[analyte][0]], True
        code = self.style.units.get(analyte)
        return (units[code] if code is not None else next(iter(units.values()))), False

    def add_lab(
        self,
        analyte: str,
        value: float | None,
        when: datetime,
        *,
        status: str = "final",
        loinc: str | None = None,
        deciding: bool = False,
        quantity: Json | None = None,
    ) -> Json:
        """One laboratory Observation; ``value`` in canonical units (None: no value)."""
        unit, text_only = self.unit(analyte)
        code = loinc or unit.loinc
        codings: list[Json] = [{"system": LOINC, "code": code, "display": LOINC_DISPLAY[code]}]
        if self.style.local_codes:
            local = {"system": LOCAL_LAB_SYSTEM, "code": LOCAL_CODE[analyte], "display": SHORT_NAME[analyte]}
            codings.insert(self.index % 2, local)
        issued = when + timedelta(hours=self.dice.integer(1, 30), minutes=self.dice.integer(0, 59))
        observation: Json = {
            "resourceType": "Observation",
            "id": "",
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "status": status,
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": codings, "text": SHORT_NAME[analyte]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "effectiveDateTime": when.isoformat(),
            "issued": issued.isoformat(),
        }
        if quantity is not None:
            observation["valueQuantity"] = quantity
        elif value is not None:
            observation["valueQuantity"] = self._quantity(analyte, value, unit, text_only)
            if self.style.interpretation and status == "final":
                observation["interpretation"] = [self._interpretation(analyte, value)]
            if self.style.reference_ranges:
                observation["referenceRange"] = [self._reference_range(analyte, unit, text_only)]
        self.observations.append((when, len(self.observations), observation))
        if deciding:
            self.deciding[analyte] = observation
        return observation

    def _quantity(self, analyte: str, value: float, unit: LabUnit, text_only: bool) -> Json:
        style = self.style
        quantity: Json
        if analyte == "ferritin" and style.ferritin_loq and value < 5 and unit.factor == 1.0:
            quantity = {"value": 5, "comparator": "<"}
            self.quirks.add("comparator-ferritin")
        elif analyte == "crp" and style.crp_loq and value < 3:
            quantity = {"value": 3 if unit.code == "mg/L" else 0.5, "comparator": "<"}
            self.quirks.add("comparator-crp")
        elif analyte == "egfr" and style.egfr_cap is not None and value > style.egfr_cap + 0.5:
            quantity = {"value": style.egfr_cap, "comparator": ">"}
            self.quirks.add(f"comparator-egfr-{style.egfr_cap}")
        else:
            quantity = {"value": round_as_lab(value * unit.factor, unit.decimals)}
        if text_only:
            quantity["unit"] = TEXT_ONLY_UNITS[analyte][1]
        else:
            quantity.update(unit=unit.text, system=UCUM, code=unit.code)
        return quantity

    def _reference_range(self, analyte: str, unit: LabUnit, text_only: bool) -> Json:
        low, high = REFERENCE[analyte][1 if self.gender == "male" else 0]
        reference: Json = {}
        for key, bound in (("low", low), ("high", high)):
            if bound is None:
                continue
            value = round_as_lab(bound * unit.factor, unit.decimals)
            if text_only:
                reference[key] = {"value": value, "unit": TEXT_ONLY_UNITS[analyte][1]}
            else:
                reference[key] = {"value": value, "unit": unit.text, "system": UCUM, "code": unit.code}
        return reference

    def _interpretation(self, analyte: str, value: float) -> Json:
        low, high = REFERENCE[analyte][1 if self.gender == "male" else 0]
        if low is not None and value < low:
            code, display = "L", "Low"
        elif high is not None and value > high:
            code, display = "H", "High"
        else:
            code, display = "N", "Normal"
        return {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}

    def coded_observation(self, when: datetime, category: tuple[str, str], loinc: str) -> Json:
        return {
            "resourceType": "Observation",
            "id": "",
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category[0], "display": category[1]}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": LOINC_DISPLAY[loinc]}]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "effectiveDateTime": when.isoformat(),
        }

    def add(self, when: datetime, observation: Json) -> None:
        """An Observation built elsewhere (pregnancy status, gestational age), in time order with the labs."""
        self.observations.append((when, len(self.observations), observation))

    def numbered(self) -> list[Json]:
        """The Observations in time order (ties: as drawn), with ids ``<patient>-obs-0001`` onwards."""
        observations = [obs for _, _, obs in sorted(self.observations, key=lambda item: (item[0], item[1]))]
        for number, observation in enumerate(observations, start=1):
            observation["id"] = f"{self.pid}-obs-{number:04d}"
        return observations
