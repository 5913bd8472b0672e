"""The clinical arithmetic the generator designs values with: ages, CKD-EPI 2021, WHO anemia cut-offs.

Written here independently of the engine, so the manifest is a second statement of the rules that
tests hold the engine to, not a copy of it.
"""

from __future__ import annotations

from datetime import date


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def ckd_epi_2021(creatinine_mg_dl: float, age: int, female: bool) -> float:
    """CKD-EPI 2021 race-free creatinine equation (Inker 2021; docs/rules.md section 4)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr: float = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return egfr * 1.012 if female else egfr


def creatinine_for_egfr(egfr: float, age: int, female: bool) -> float:
    """The serum creatinine (mg/dL) for which CKD-EPI 2021 gives ``egfr``."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    base = 142 * 0.9938**age * (1.012 if female else 1.0)
    if egfr >= base:
        return float(kappa * (egfr / base) ** (1 / alpha))
    return float(kappa * (egfr / base) ** (-1 / 1.200))


def hb_cutoffs(gender: str, age: int, trimester: int | None) -> tuple[float, ...]:
    """WHO 2024 anemia cut-offs (g/dL) that apply; both sexes' when gender is neither male nor female."""
    if trimester is not None:
        return (10.5,) if trimester == 2 else (11.0,)
    if age < 12:
        return (11.5,)
    if age < 15:
        return (12.0,)
    if gender == "male":
        return (13.0,)
    if gender == "female":
        return (12.0,)
    return (12.0, 13.0)
