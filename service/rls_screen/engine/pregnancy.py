"""Pregnancy as the rules see it (S6, D17, D18, D28): pregnant or not at a given date, on what basis,
and the gestational age in whole days there.

Evidence is a usable 'Pregnant' pregnancy-status Observation or an active Condition in ValueSet
``pregnancy-condition``; a later usable status that is not 'Pregnant' ends what came before it. The
latest gestational age, projected (forwards or backwards) to a date, decides there when it belongs to
the evidence: pregnant from 0 weeks up to the rule set's ``gestationalAgeOutdatedAboveWeeks``
inclusive. A status without a gestational age counts for ``statusWithoutGestationalAgeDays`` from its
own date, both ends included. ``evaluate`` reads the state at the as-of date (header,
iron wording, the pregnancy-aggravator advisory); the anaemia rule reads it at the haemoglobin date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from rls_screen.codesets import value_set_url
from rls_screen.engine.evaluation import Evaluation, is_active_condition
from rls_screen.model import LabResult
from rls_screen.observations import codings_of, ordering_key, parse_fhir_datetime
from rls_screen.quantities import format_number

_PREGNANCY_CONDITION = value_set_url("pregnancy-condition")
_PREGNANT_STATUS = value_set_url("pregnancy-status-pregnant")


@dataclass(frozen=True)
class _Evidence:
    reference: str
    recorded: datetime | None
    """The status's effective time, the Condition's recordedDate (else onset); None: an undated Condition."""
    is_status: bool


@dataclass(frozen=True)
class PregnancyOn:
    """Pregnancy at one date: pregnant or not, the gestational age there (whole days) and the basis."""

    pregnant: bool
    days: int | None
    basis: tuple[str, ...]
    outdated: str | None = None
    """Why recorded pregnancy evidence no longer counts at this date (None: it counts, or there is none)."""


@dataclass(frozen=True)
class Pregnancy:
    evidence: tuple[_Evidence, ...]
    not_pregnant: tuple[datetime, ...]
    """Times of usable pregnancy-status results that are not 'Pregnant'."""
    gestational_age: LabResult | None
    status_days: int
    outdated_above_weeks: float
    """Rule set ``pregnancy.gestationalAgeOutdatedAboveWeeks``: beyond it the record is outdated."""

    @property
    def outdated_above_days(self) -> int:
        return round(self.outdated_above_weeks * 7)

    @property
    def recorded(self) -> bool:
        return bool(self.evidence)

    def days_on(self, day: date) -> int | None:
        """D18: the latest gestational age projected to ``day`` in whole days (never rounded up)."""
        ga = self.gestational_age
        if ga is None or ga.value is None or not ga.value.is_exact:
            return None
        return math.floor(round(ga.value.value * 7.0 + (day - ga.effective_date).days, 6))

    def _ga_belongs(self, evidence: _Evidence) -> bool:
        """The gestational age describes this pregnancy when it lies in 0..the limit on the evidence's date."""
        if self.gestational_age is None or self.days_on(self.gestational_age.effective_date) is None:
            return False
        if evidence.recorded is None:
            return True
        days = self.days_on(evidence.recorded.date())
        return days is not None and 0 <= days <= self.outdated_above_days

    def on(self, day: date) -> PregnancyOn:
        """D18, D28: the pregnancy state at ``day``."""
        basis: list[str] = []
        outdated: str | None = None
        days_there = self.days_on(day)
        with_ga = False
        for item in self.evidence:
            if item.recorded is not None and any(
                item.recorded < stop and stop.date() <= day for stop in self.not_pregnant
            ):
                continue  # D28: a later usable 'not pregnant' status wins
            if days_there is not None and self._ga_belongs(item):
                if days_there > self.outdated_above_days:
                    weeks = format_number(self.outdated_above_weeks)
                    outdated = f"pregnancy record outdated: projected gestational age beyond {weeks} weeks"
                    continue
                if days_there < 0:
                    continue  # D28: projected below 0 weeks, not pregnant at that date
                with_ga = True
            elif item.is_status and item.recorded is not None:
                since = (day - item.recorded.date()).days
                if since > self.status_days:
                    outdated = f"pregnancy status without gestational age older than {self.status_days} days"
                    continue
                if since < 0:
                    continue  # D28: a status covers only the days from its own date
            basis.append(item.reference)
        if not basis:
            return PregnancyOn(False, None, (), outdated)
        refs = (*basis, self.gestational_age.reference) if with_ga and self.gestational_age else tuple(basis)
        return PregnancyOn(True, days_there if with_ga else None, tuple(dict.fromkeys(refs)))


def _condition_recorded(condition: Mapping[str, Any]) -> datetime | None:
    period = condition.get("onsetPeriod")
    start = period.get("start") if isinstance(period, Mapping) else None
    for text in (condition.get("recordedDate"), condition.get("onsetDateTime"), start):
        moment = parse_fhir_datetime(text)
        if moment is not None:
            return ordering_key(moment)
    return None


def read_pregnancy(ev: Evaluation, conditions: Sequence[Mapping[str, Any]]) -> Pregnancy:
    terminology = ev.knowledge.terminology
    evidence: list[_Evidence] = []
    not_pregnant: list[datetime] = []
    for status in ev.usable.get("pregnancy-status", []):
        if terminology.contains(_PREGNANT_STATUS, status.value_codings):
            evidence.append(_Evidence(status.reference, ordering_key(status.effective), True))
        else:
            not_pregnant.append(ordering_key(status.effective))
    for condition in conditions:
        if (
            (type(condition) is dict or isinstance(condition, Mapping))
            and terminology.contains(_PREGNANCY_CONDITION, codings_of(condition.get("code")))
            and is_active_condition(condition)
        ):
            evidence.append(_Evidence(f"Condition/{condition.get('id', '?')}", _condition_recorded(condition), False))
    rules = ev.rules.pregnancy
    return Pregnancy(
        tuple(evidence),
        tuple(not_pregnant),
        ev.latest.get("gestational-age") if evidence else None,
        rules.status_without_gestational_age_days,
        rules.gestational_age_outdated_above_weeks,
    )


def trimester_of(days: int | None, ev: Evaluation) -> int | None:
    """S6 on whole weeks: 13w6d is trimester 1, 14w0d trimester 2 (D18: no rounding across a boundary)."""
    if days is None:
        return None
    weeks = days // 7
    bounds = ev.rules.selection.trimester
    if weeks >= bounds["thirdFromWeeks"]:
        return 3
    return 2 if weeks >= bounds["secondFromWeeks"] else 1


def weeks_days(days: int) -> str:
    """D18: gestational age as weeks+days, e.g. '13w6d'."""
    return f"{days // 7}w{days % 7}d"


def add_pregnancy_advisory(ev: Evaluation, now: PregnancyOn) -> None:
    """D12, D28: every output for a patient pregnant at the evaluation date says pregnancy aggravates RLS."""
    if now.pregnant:
        rules = ev.rules.pregnancy
        ev.add("advisory", "pregnancy-aggravator", rules.rule_id, rules.citations, [], extra_basis=now.basis)
