"""Draws one synthetic patient: demographics, a scenario's values, the lab draws over two years, the
mess, pregnancy records and Conditions, and the manifest entry saying what it was designed to show.

Patient ``i`` draws from its own stream ``rls-screen-synth/1/<seed>/<i>``, every call in a fixed
order, so it is the same alone or in a panel of a million. MedicationRequests and Procedures come
from a stream of their own (``orders``), so adding them moved none of the values drawn here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rls_screen.synth.clinical import age_on, years_before
from rls_screen.synth.codes import (
    GROUP_ANALYTES,
    HISTORY_DAYS,
    RNG_NAMESPACE,
    SNOMED,
    STALE_AFTER_DAYS,
    TEXT_ONLY_UNITS,
    UCUM,
    Json,
)
from rls_screen.synth.dice import Dice
from rls_screen.synth.labs import LabSheet, analyte_value, draw_lab_style
from rls_screen.synth.mess import add_mess
from rls_screen.synth.mimics import draw_mimic
from rls_screen.synth.orders import draw_orders
from rls_screen.synth.records import ManifestEntry, PatientRecord, panel_id, patient_id
from rls_screen.synth.resources import condition_resource, patient_resource
from rls_screen.synth.scenarios import (
    CHILD_SCENARIOS,
    KIDNEY_SCENARIOS,
    Person,
    Targets,
    expected_findings,
    history_targets,
    scenario_for,
    scenario_targets,
    target_summary,
)


@dataclass(slots=True)
class _Draw:
    group: str
    days_ago: int
    values: Targets


class PatientBuilder:
    """Draws one patient. Every random call happens in a fixed order, so the output is reproducible."""

    def __init__(self, index: int, seed: int, as_of: date, id_prefix: str) -> None:
        self.index = index
        self.seed = seed
        self.as_of = as_of
        self.id_prefix = id_prefix
        self.pid = patient_id(id_prefix, index)
        self.scenario = scenario_for(seed, index)
        self.dice = Dice(f"{RNG_NAMESPACE}/{seed}/{index}")
        self.quirks: set[str] = set()
        self.conditions: list[Json] = []
        self.trimester: int | None = None
        self.ga_weeks = 0
        self.ga_days_ago = 0
        self.crp_distant = False

    def build(self) -> PatientRecord:
        dice, scenario = self.dice, self.scenario
        self.gender, self.age, self.birth_date = self._demographics()
        if scenario.startswith("pregnant-t"):
            self.trimester = int(scenario[-1])
            self.ga_weeks = dice.integer(*{1: (7, 11), 2: (16, 25), 3: (29, 37)}[self.trimester])
            self.ga_days_ago = dice.integer(2, 14)
        self.person = Person(self.gender, self.age, self.trimester)
        style = draw_lab_style(dice)
        self.sheet = LabSheet(dice, self.as_of, self.pid, self.index, self.gender, self.age, style, self.quirks)
        targets = scenario_targets(dice, scenario, self.person)
        if targets.ca_ionized is None and scenario != "hypocalcemia" and dice.chance(0.05):
            targets.ca_ionized = dice.draw(1.18, 1.32)
            self.quirks.add("ionized-calcium")
        presence = self._presence(targets)
        if dice.chance(0.05):
            options = [analyte for analyte in TEXT_ONLY_UNITS if presence[analyte] != "none"]
            self.quirks.add(f"unit-text-only-{dice.choice(options)}")
        if scenario == "iron-insufficient" and dice.chance(0.1):
            self.crp_distant = True
            self.quirks.add("crp-distant-high")
        draws = self._schedule(presence, targets)
        self._emit_draws(draws, presence, targets)
        add_mess(self.sheet, targets)
        self._add_pregnancy()
        self._add_conditions()
        expected = expected_findings(targets, presence, self.person)
        rls = "no-rls-condition" not in self.quirks
        orders = draw_orders(self.seed, self.index, self.pid, self.as_of, style.tz, scenario=scenario, rls=rls)
        dialysis = [f"Condition/{c['id']}" for c in self.conditions if c["id"].endswith("-dialysis")]
        dialysis += orders.dialysis_procedures
        if dialysis:
            # docs/rules.md section 4: kidney failure by dialysis supersedes reduced kidney function (D13)
            expected.add("kidney-failure")
            expected.discard("reduced-kidney-function")
        # docs/rules.md section 11: drawn from the patient's own mimic stream, after every other draw
        mimic = draw_mimic(
            self.seed,
            self.index,
            self.pid,
            self.as_of,
            style.tz,
            gender=self.gender,
            age=self.age,
            pregnant=self.trimester is not None,
            potassium=round(targets.k, 1),
        )(expected)
        expected |= mimic.expected
        # numbered apart (``<patient>-mimic-01``) so that the ids of the patient's other results never move
        observations = [*self.sheet.numbered(), *mimic.numbered(self.pid)]
        manifest = ManifestEntry(
            patient_id=self.pid,
            index=self.index,
            scenario=scenario,
            gender=self.gender,
            age=self.age,
            rls=rls,
            trimester=self.trimester,
            expected_findings=tuple(sorted(expected)),
            quirks=tuple(sorted(self.quirks | orders.quirks)),
            targets=target_summary(targets, presence),
            aggravating_medications=tuple(sorted(orders.aggravating)),
            dialysis_basis=tuple(sorted(dialysis)),
            mimic=mimic.mimic,
        )
        return PatientRecord(
            patient=patient_resource(self.pid, self.id_prefix, self.index, self.gender, self.birth_date),
            resources=(*self.conditions, *observations, *orders.resources),
            manifest=manifest,
            panel_id=panel_id(self.id_prefix),
            seed=self.seed,
        )

    def _demographics(self) -> tuple[str, int, date]:
        dice, scenario = self.dice, self.scenario
        roll = dice.random()
        # RLS is about twice as common in women; a few records carry other/unknown gender.
        gender = "female" if roll < 0.62 else "male" if roll < 0.98 else "other" if roll < 0.99 else "unknown"
        if scenario.startswith("pregnant-t"):
            gender, age = "female", dice.integer(19, 43)
        elif scenario in KIDNEY_SCENARIOS or scenario == "multi-cause":
            age = round(dice.triangular(45, 90, 74))
        elif scenario in CHILD_SCENARIOS and dice.random() < 0.08:
            age = dice.integer(8, 17)
        else:
            age = round(dice.triangular(18, 90, 58))
        # A birth date giving exactly `age` at as_of, kept 3 days clear of a birthday.
        latest = years_before(self.as_of, age)
        earliest = years_before(self.as_of, age + 1) + timedelta(days=1)
        birth = earliest + timedelta(days=dice.integer(3, (latest - earliest).days - 3))
        return gender, age_on(birth, self.as_of), birth

    def _presence(self, t: Targets) -> dict[str, str]:
        """Per analyte: in 'all' draws of its group, 'none', or 'stale-only'.

        Never only the latest removed: an older, still-usable result would then decide.
        """
        dice, scenario, quirks = self.dice, self.scenario, self.quirks
        presence = dict.fromkeys(("ferritin", "crp", "hb", "creatinine", "egfr", "k", "ca", "albumin", "mg"), "all")
        presence.update(tsat="none", iron="none", tibc="none", uibc="none", ca_ionized="none")
        if t.ca_ionized is not None:
            presence["ca_ionized"] = "all"
        needs_ferritin = scenario == "normal" or scenario.startswith(("iron-", "pregnant-")) or t.ferritin < 75
        needs_tsat = scenario in ("normal", "iron-insufficient-tsat", "iron-iv-band", "iron-overload-risk")
        if not needs_ferritin:
            roll = dice.random()
            if roll < 0.12:
                presence["ferritin"] = "none"
                quirks.add("no-ferritin")
            elif roll < 0.2:
                presence["ferritin"] = "stale-only"
                quirks.add("ferritin-stale-only")
        roll = dice.random()
        if roll < 0.45:
            presence["tsat"] = "all"
        elif roll < 0.6:
            presence.update(tsat="all", iron="all", tibc="all")
            quirks.add("tsat-and-iron-tibc")
        elif roll < 0.87 or needs_tsat:
            presence.update(iron="all", tibc="all")
            quirks.add("iron-tibc-only")
        elif roll < 0.94:
            quirks.add("no-tsat")
        else:  # iron with UIBC, not TIBC: no TSAT can be computed (docs/rules.md section 2)
            presence.update(iron="all", uibc="all")
            quirks.update(("no-tsat", "iron-uibc-only"))
        # CRP matters only while ferritin < 70 (inflammation threshold); otherwise it may be missing.
        if scenario != "normal" and (t.ferritin >= 75 or presence["ferritin"] != "all") and dice.chance(0.15):
            presence["crp"] = "none"
            quirks.add("no-crp")
        if scenario != "normal" and self.gender in ("male", "female"):
            roll = dice.random()
            if self.age >= 18 and roll < 0.12:
                presence["egfr"] = "none"
                quirks.add("no-egfr")
            elif roll < 0.2:
                quirks.add("egfr-race-specific-only")
            elif roll < 0.26:
                quirks.add("egfr-same-day-twin")
        calcium_scenario = scenario in ("hypocalcemia", "low-total-calcium-low-albumin")
        if not calcium_scenario and t.ca_ionized is None and dice.chance(0.06):
            presence["albumin"] = "none"
            quirks.add("no-albumin")
        if scenario == "hypocalcemia" and dice.chance(0.2):
            t.ca = dice.draw(7.0, 8.1)  # uncorrected total Ca decides
            presence["albumin"] = "none"
            quirks.add("no-albumin")
        return presence

    def _schedule(self, presence: Mapping[str, str], targets: Targets) -> dict[str, list[_Draw]]:
        """Draw days per group (iron, cbc, chem): the latest gets the targets, older ones history."""
        dice = self.dice
        draws: dict[str, list[_Draw]] = {}
        for group in GROUP_ANALYTES:
            if self.trimester is not None:
                latest = self.ga_days_ago + dice.integer(1, 14)
            elif group == "iron" and self.crp_distant:
                latest = dice.integer(25, 200)
            else:
                latest = dice.integer(3, 200)
            days = [latest]
            for _ in range(dice.choice((0, 1, 1, 2, 2, 3))):
                following = days[-1] + dice.integer(30, 260)
                if 355 <= following <= 375:  # keep clear of the 365-day staleness boundary
                    following = 380
                if following > HISTORY_DAYS:
                    break
                days.append(following)
            if group == "iron" and presence["ferritin"] == "stale-only" and days[-1] < 380:
                days.append(dice.integer(max(days[-1] + 30, 400), HISTORY_DAYS))
            draws[group] = [
                _Draw(group, day, targets if n == 0 else history_targets(dice, self.scenario, self.person))
                for n, day in enumerate(days)
            ]
        return draws

    def _emit_draws(self, draws: Mapping[str, list[_Draw]], presence: Mapping[str, str], t: Targets) -> None:
        sheet = self.sheet
        for group, group_draws in draws.items():
            for position, draw in enumerate(group_draws):
                when = sheet.when(draw.days_ago)
                stale = draw.days_ago > STALE_AFTER_DAYS
                deciding = position == 0
                for analyte in GROUP_ANALYTES[group]:
                    rule = presence[analyte]
                    if rule == "none" or (rule == "stale-only" and not stale) or analyte == "egfr":
                        continue
                    if analyte == "ca_ionized" and draw.values.ca_ionized is None:
                        continue
                    if analyte == "creatinine":
                        sheet.add_kidney(draw.values, when, deciding=deciding, with_egfr=presence["egfr"] == "all")
                    elif analyte == "crp" and deciding:
                        self._emit_deciding_crp(draw, when, t)
                    else:
                        sheet.add_lab(analyte, analyte_value(analyte, draw.values), when, deciding=deciding)

    def _emit_deciding_crp(self, draw: _Draw, when: datetime, t: Targets) -> None:
        dice, sheet = self.dice, self.sheet
        if self.scenario == "iron-deficiency-inflammation" and dice.chance(0.3):
            # CRP drawn on another day, still within 7 days of the ferritin (docs/rules.md section 2).
            shift = dice.integer(1, 6)
            days = draw.days_ago - shift if draw.days_ago - shift >= 1 else draw.days_ago + shift
            sheet.add_lab("crp", t.crp, sheet.when(days), deciding=True)
            self.quirks.add("crp-other-day")
            return
        sheet.add_lab("crp", t.crp, when, deciding=True)
        if self.crp_distant:
            # A newer, high CRP 10-20 days after the ferritin: outside the 7-day window, no inflammation.
            days = draw.days_ago - dice.integer(10, 20)
            sheet.add_lab("crp", dice.draw(12, 40), sheet.when(days))

    # -- pregnancy and conditions ---------------------------------------------------------------
    def _pregnancy_observations(self, days_ago: int, pregnant: bool, weeks: int | None) -> None:
        """Pregnancy status 82810-3 (SNOMED answer) and, when pregnant, gestational age 49051-6 (S6)."""
        sheet = self.sheet
        when = sheet.when(days_ago)
        status = sheet.coded_observation(when, ("social-history", "Social History"), "82810-3")
        answer = ("77386006", "Pregnant") if pregnant else ("60001007", "Not pregnant")
        status["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": answer[0], "display": answer[1]}]}
        sheet.add(when, status)
        if weeks is not None:
            gestation = sheet.coded_observation(when, ("exam", "Exam"), "49051-6")
            gestation["valueQuantity"] = {"value": weeks, "unit": "wk", "system": UCUM, "code": "wk"}
            sheet.add(when, gestation)

    def _add_pregnancy(self) -> None:
        dice = self.dice
        if self.trimester is not None:
            self._pregnancy_observations(self.ga_days_ago, True, self.ga_weeks)
            self.quirks.add("pregnant")
            return
        if self.gender != "female" or not 18 <= self.age <= 50:
            return
        roll = dice.random()
        if roll < 0.10:  # a recorded "not pregnant": the value decides, not the code
            self._pregnancy_observations(dice.integer(1, 300), False, None)
            self.quirks.add("pregnancy-status-not-pregnant")
        elif roll < 0.13:  # a past pregnancy, stale now
            self._pregnancy_observations(dice.integer(420, HISTORY_DAYS), True, dice.integer(8, 36))
            self.quirks.add("stale-pregnancy")

    def _condition(self, suffix: str, snomed: tuple[str, str], icd: tuple[str, str], onset: date) -> Json:
        recorded = min(onset + timedelta(days=self.dice.integer(0, 90)), self.as_of)
        return condition_resource(self.pid, suffix, snomed, icd, onset, recorded)

    def _add_conditions(self) -> None:
        dice = self.dice
        if dice.random() < 0.85:
            years_ago = dice.uniform(0.3, min(15.0, max(self.age - 6.0, 1.0)))
            onset = self.as_of - timedelta(days=int(years_ago * 365.25) + 91)
            onset = max(onset, years_before(self.birth_date, -5))
            label = "Restless legs syndrome"
            self.conditions.append(self._condition("rls", ("32914008", label), ("G25.81", label), onset))
        else:
            self.quirks.add("no-rls-condition")
        if self.scenario == "kidney-failure" and dice.random() < 0.5:
            onset = self.as_of - timedelta(days=dice.integer(120, 1500))
            label = "Dependence on renal dialysis"
            self.conditions.append(self._condition("dialysis", ("105502003", label), ("Z99.2", label), onset))
            self.quirks.add("dialysis-condition")
