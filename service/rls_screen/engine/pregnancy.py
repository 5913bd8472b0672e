"""Pregnancy as the rules see it (S6): pregnant or not, on what basis, and the trimester.

A 'Pregnant' pregnancy-status Observation or an active pregnancy Condition makes the patient pregnant;
the latest gestational age, projected to a given day, gives the trimester that chooses the anaemia
cut-off. ``evaluate`` decides from this whether the pregnancy still holds on the as-of date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from rls_screen.codesets import value_set_url
from rls_screen.engine.evaluation import Evaluation, is_active_condition
from rls_screen.model import LabResult
from rls_screen.observations import codings_of


@dataclass(frozen=True)
class Pregnancy:
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


def read_pregnancy(ev: Evaluation, conditions: Sequence[Mapping[str, Any]]) -> Pregnancy:
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
    return Pregnancy(pregnant, tuple(basis), ev.latest.get("gestational-age") if pregnant else None)


def trimester_of(weeks: float | None, ev: Evaluation) -> int | None:
    if weeks is None:
        return None
    bounds = ev.rules.selection.trimester
    if weeks >= bounds["thirdFromWeeks"]:
        return 3
    return 2 if weeks >= bounds["secondFromWeeks"] else 1
