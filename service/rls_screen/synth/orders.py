"""MedicationRequests and dialysis Procedures of one patient, drawn from a random stream of their own.

The stream is ``rls-screen-synth/1/<seed>/<index>/orders``, separate from the patient's lab stream,
so adding these resources left every Patient, Condition and Observation of earlier panels unchanged
(tests/unit/test_synth_golden.py). What is drawn (docs/synthetic-panel.md, "Medications and
dialysis"):

- an aggravating drug (docs/rules.md section 8) in an active order: it must fire the
  ``aggravating-medication`` advisory; and an aggravating drug in a stopped or completed order: it
  must not;
- common drugs that aggravate nothing, and, for RLS patients, an RLS treatment;
- for the kidney-failure scenario, dialysis sessions (Procedure, completed) within the 90 days before
  as-of (D16), and older ones outside them that must not count.

Every code cites the ValueSet in terminology/ it comes from; a unit test checks each one is there
(and that the non-aggravating drugs are in no aggravating ValueSet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

from rls_screen.synth.codes import RNG_NAMESPACE, SNOMED, TEST_DATA_TAG, Json
from rls_screen.synth.dice import Dice

RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
MEDICATION_REQUEST_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
DIALYSIS_WINDOW_DAYS: Final = 90
"""A dialysis Procedure counts when performed 0..90 days before as-of (rule set kidney.dialysis, D16)."""


@dataclass(frozen=True, slots=True)
class Drug:
    """An RxNorm code, its display, and the ValueSet (terminology/ValueSet-<name>.json) it is from."""

    code: str
    display: str
    value_set: str | None
    """None: a drug in no ValueSet of ours (it must aggravate nothing)."""


def _drugs(value_set: str, *pairs: tuple[str, str]) -> tuple[Drug, ...]:
    return tuple(Drug(code, display, value_set) for code, display in pairs)


# Aggravating categories (section 8) with their weight in per cent of the aggravating orders.
AGGRAVATING: Final[tuple[tuple[int, tuple[Drug, ...]], ...]] = (
    (35, _drugs("aggravating-ssri-snri", ("36437", "sertraline"), ("4493", "fluoxetine"), ("72625", "duloxetine"))),
    (20, _drugs("aggravating-sedating-antihistamines", ("3498", "diphenhydramine"), ("5553", "hydroxyzine"))),
    (15, _drugs("aggravating-dopamine-blocking-antiemetics", ("6915", "metoclopramide"), ("8745", "promethazine"))),
    (15, _drugs("aggravating-dopamine-blocking-antipsychotics", ("51272", "quetiapine"), ("5093", "haloperidol"))),
    (10, _drugs("aggravating-other-antidepressants", ("15996", "mirtazapine"), ("704", "amitriptyline"))),
    (5, _drugs("aggravating-lithium", ("6448", "lithium"))),
)
# RxNorm ingredients of common drugs that are not in any aggravating ValueSet.
NON_AGGRAVATING: Final = (
    Drug("83367", "atorvastatin", None),
    Drug("29046", "lisinopril", None),
    Drug("6809", "metformin", None),
    Drug("10582", "levothyroxine", None),
    Drug("17767", "amlodipine", None),
    Drug("7646", "omeprazole", None),
)
# RLS treatment: ingredients, and clinical drugs (SCD) as an EHR's orders carry them.
RLS_TREATMENT: Final = (
    *_drugs(
        "rls-dopaminergic-ingredients", ("746741", "pramipexole"), ("72302", "ropinirole"), ("616739", "rotigotine")
    ),
    *_drugs("rls-alpha2delta-ingredients", ("25480", "gabapentin"), ("187832", "pregabalin")),
    *_drugs("rls-alpha2delta-clinical-drugs", ("310431", "gabapentin 300 MG Oral Capsule")),
    *_drugs("rls-alpha2delta-clinical-drugs", ("483440", "pregabalin 150 MG Oral Capsule")),
    *_drugs("rls-dopaminergic-clinical-drugs", ("197444", "carbidopa 25 MG / levodopa 100 MG Oral Tablet")),
)
# SNOMED CT procedures in ValueSet dialysis-procedure (hemodialysis weighted 4:1).
DIALYSIS_PROCEDURES: Final = (
    ("302497006", "Hemodialysis"),
    ("302497006", "Hemodialysis"),
    ("302497006", "Hemodialysis"),
    ("302497006", "Hemodialysis"),
    ("71192002", "Peritoneal dialysis"),
)


@dataclass(frozen=True, slots=True)
class Orders:
    """What ``draw_orders`` made for one patient, and what the engine should make of it."""

    resources: tuple[Json, ...]
    """MedicationRequests, then Procedures."""
    quirks: frozenset[str]
    aggravating: tuple[str, ...]
    """``MedicationRequest/<id>`` of the orders that must fire ``aggravating-medication``."""
    dialysis_procedures: tuple[str, ...]
    """``Procedure/<id>`` of the dialysis sessions inside the window (they count as dialysis)."""


class _OrderSheet:
    def __init__(self, dice: Dice, pid: str, as_of: date, tz: tzinfo) -> None:
        self.dice, self.pid, self.as_of, self.tz = dice, pid, as_of, tz
        self.medications: list[Json] = []
        self.procedures: list[Json] = []

    def when(self, days_ago: int) -> str:
        moment = time(self.dice.integer(7, 18), self.dice.integer(0, 59), tzinfo=self.tz)
        return datetime.combine(self.as_of - timedelta(days=days_ago), moment).isoformat()

    def medication(self, drug: Drug, status: str, days_ago: int) -> str:
        resource_id = f"{self.pid}-med-{len(self.medications) + 1:02d}"
        self.medications.append(
            {
                "resourceType": "MedicationRequest",
                "id": resource_id,
                "meta": {"tag": [dict(TEST_DATA_TAG)]},
                "status": status,
                "intent": "order",
                "category": [
                    {"coding": [{"system": MEDICATION_REQUEST_CATEGORY, "code": "outpatient", "display": "Outpatient"}]}
                ],
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": drug.code, "display": drug.display}],
                    "text": drug.display,
                },
                "subject": {"reference": f"Patient/{self.pid}"},
                "authoredOn": self.when(days_ago),
            }
        )
        return f"MedicationRequest/{resource_id}"

    def procedure(self, code: tuple[str, str], days_ago: int) -> str:
        resource_id = f"{self.pid}-proc-{len(self.procedures) + 1:02d}"
        self.procedures.append(
            {
                "resourceType": "Procedure",
                "id": resource_id,
                "meta": {"tag": [dict(TEST_DATA_TAG)]},
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}], "text": code[1]},
                "subject": {"reference": f"Patient/{self.pid}"},
                "performedDateTime": self.when(days_ago),
            }
        )
        return f"Procedure/{resource_id}"


def orders_stream(seed: int, index: int) -> Dice:
    return Dice(f"{RNG_NAMESPACE}/{seed}/{index}/orders")


def draw_orders(seed: int, index: int, pid: str, as_of: date, tz: tzinfo, *, scenario: str, rls: bool) -> Orders:
    """The MedicationRequests and Procedures of patient ``index`` (its own stream, fixed order)."""
    dice = orders_stream(seed, index)
    sheet = _OrderSheet(dice, pid, as_of, tz)
    quirks: set[str] = set()
    aggravating: list[str] = []
    if dice.chance(0.14):
        aggravating.append(sheet.medication(_aggravating_drug(dice), "active", dice.integer(5, 300)))
        quirks.add("aggravating-medication")
    if dice.chance(0.07):
        status = dice.choice(("stopped", "completed"))
        sheet.medication(_aggravating_drug(dice), status, dice.integer(200, 700))
        quirks.add("aggravating-medication-stopped")
    if dice.chance(0.35):
        for drug in dice.sample(NON_AGGRAVATING, dice.integer(1, 2)):
            sheet.medication(drug, "active", dice.integer(30, 700))
        quirks.add("non-aggravating-medication")
    if rls and dice.chance(0.4):
        sheet.medication(dice.choice(RLS_TREATMENT), "active", dice.integer(10, 500))
        quirks.add("rls-treatment")
    recent: list[str] = []
    if scenario == "kidney-failure":
        roll = dice.random()
        if roll < 0.55:  # on dialysis: sessions every 2-7 days, the latest 2-60 days ago
            days = dice.integer(2, 60)
            for _ in range(dice.integer(1, 3)):
                recent.append(sheet.procedure(dice.choice(DIALYSIS_PROCEDURES), days))
                days += dice.integer(2, 7)
            quirks.add("dialysis-procedure")
        if (not recent and roll < 0.75) or (recent and dice.chance(0.3)):
            # Older than the window (400-700 days, clear of day 90 and of day 365): must not count as dialysis now.
            sheet.procedure(dice.choice(DIALYSIS_PROCEDURES), dice.integer(400, 700))
            quirks.add("dialysis-procedure-old")
    return Orders(
        resources=(*sheet.medications, *sheet.procedures),
        quirks=frozenset(quirks),
        aggravating=tuple(aggravating),
        dialysis_procedures=tuple(recent),
    )


def _aggravating_drug(dice: Dice) -> Drug:
    """A category by weight (they add up to 100), then a drug of it."""
    roll = dice.integer(1, 100)
    for weight, drugs in AGGRAVATING[:-1]:
        if roll <= weight:
            return dice.choice(drugs)
        roll -= weight
    return dice.choice(AGGRAVATING[-1][1])
