"""The mess of real lab feeds, added to a patient's results after the deciding ones are drawn.

Results that must not decide (entered-in-error, pending, absent, a unit nobody understands) are
always newer than the deciding result, so an engine that picks the newest result before filtering
gets caught; harmless variants (amended, effectivePeriod) change the deciding result itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rls_screen.synth.codes import ALARMING, DATA_ABSENT_REASON
from rls_screen.synth.labs import LabSheet, analyte_value
from rls_screen.synth.scenarios import Targets


def add_mess(sheet: LabSheet, t: Targets) -> None:
    """Results that must not decide (entered-in-error, pending, absent, unit not understood), all
    newer than the deciding one, plus harmless variants of the deciding one (amended, period)."""
    rng = sheet.dice
    candidates = [analyte for analyte in ALARMING if analyte in sheet.deciding]

    def newer_than(analyte: str) -> datetime:
        deciding = datetime.fromisoformat(sheet.deciding[analyte]["effectiveDateTime"])
        return sheet.when(rng.integer(1, (sheet.as_of - deciding.date()).days - 1))

    if candidates and rng.chance(0.12):
        analyte = rng.choice(candidates)
        value = ALARMING[analyte] if rng.chance(0.6) else analyte_value(analyte, t)
        sheet.add_lab(analyte, value, newer_than(analyte), status="entered-in-error")
        sheet.quirks.add("entered-in-error")
    if candidates and rng.chance(0.10):
        analyte = rng.choice(candidates)
        if rng.chance(0.8):
            sheet.add_lab(analyte, ALARMING[analyte], newer_than(analyte), status="preliminary")
            sheet.quirks.add("preliminary")
        else:
            sheet.add_lab(analyte, None, newer_than(analyte), status="registered")
            sheet.quirks.add("registered")
    if candidates and rng.chance(0.04):
        analyte = rng.choice(candidates)
        observation = sheet.add_lab(analyte, None, newer_than(analyte))
        observation["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_REASON, "code": "error", "display": "Error"}],
            "text": "Specimen hemolyzed",
        }
        sheet.quirks.add("data-absent-reason")
    if "ferritin" in sheet.deciding and rng.chance(0.03):
        sheet.add_lab("ferritin", None, newer_than("ferritin"), quantity={"value": 3, "unit": "units"})
        sheet.quirks.add("unit-not-understood")
    if candidates and rng.chance(0.06):
        # The deciding result was amended or corrected: still usable (docs/rules.md S1).
        sheet.deciding[rng.choice(candidates)]["status"] = rng.choice(("amended", "corrected"))
        sheet.quirks.add("amended-or-corrected")
    if "hb" in sheet.deciding and rng.chance(0.03):
        # effectivePeriod instead of effectiveDateTime: its end is the effective date (S2).
        observation = sheet.deciding["hb"]
        end = datetime.fromisoformat(observation["effectiveDateTime"])
        period = {"start": (end - timedelta(minutes=rng.integer(5, 40))).isoformat(), "end": end.isoformat()}
        replaced = {
            ("effectivePeriod" if key == "effectiveDateTime" else key): (
                period if key == "effectiveDateTime" else value
            )
            for key, value in observation.items()
        }
        observation.clear()
        observation.update(replaced)
        sheet.quirks.add("effective-period")
