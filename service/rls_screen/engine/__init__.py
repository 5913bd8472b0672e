"""The rule engine: one patient's facts and Observations, as of a date -> an ``Assessment``.

Pure and deterministic: no I/O, no clock, no settings. The CLI, the FHIR write-back, the batch
runner and the CDS service all call ``evaluate``; it is the one place clinical logic lives.
Thresholds come from the rule set (``ruleset/``), codes from ``terminology/``, units from
``mappings/``. Unknowns are never guessed: a test the data cannot decide is ``None`` (see
``quantities``) and ends up in ``not_evaluable`` rather than in ``findings``. One module per rule
domain (``iron``, ``anemia``, ``kidney``, ``electrolytes``, ``pregnancy``, ``medications``), over the
shared working state in ``evaluation`` and the result selection in ``selection``; ``evaluate`` runs
them. The names below are the public surface; ``Knowledge`` lives in ``rls_screen.knowledge`` and is
re-exported here for callers that still import it from the engine.
"""

from rls_screen.engine.evaluate import FINDING_ORDER, evaluate
from rls_screen.engine.evaluation import (
    ACTIVE_CLINICAL_STATUSES,
    REFUTED_VERIFICATION,
    age_in_months,
    age_in_years,
    is_active_condition,
)
from rls_screen.engine.medications import ACTIVE_MEDICATION_STATUSES
from rls_screen.knowledge import Knowledge, load_knowledge

__all__ = [
    "ACTIVE_CLINICAL_STATUSES",
    "ACTIVE_MEDICATION_STATUSES",
    "FINDING_ORDER",
    "REFUTED_VERIFICATION",
    "Knowledge",
    "age_in_months",
    "age_in_years",
    "evaluate",
    "is_active_condition",
    "load_knowledge",
]
