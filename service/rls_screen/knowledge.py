"""The knowledge the rule engine reads: the rule set, terminology and unit table, loaded once.

``Knowledge`` holds the three data files (``ruleset/``, ``terminology/``, ``mappings/``) and what is
derived from them once per process (eGFR precedence tiers, aggravating-medication categories and the
data contract, D2); ``load_knowledge`` builds it. Readers, the batch runner and the CDS service take it
from here, so none of them imports the engine to get at the data the engine reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rls_screen.codesets import Terminology, load_terminology, value_set_url
from rls_screen.contract import DataContract
from rls_screen.ruleset import RuleSet, load_ruleset
from rls_screen.units import UnitTable, load_unit_table


@dataclass(frozen=True)
class Knowledge:
    """Everything the engine reads from data files, loaded once per process."""

    ruleset: RuleSet
    terminology: Terminology
    units: UnitTable
    egfr_tiers: Mapping[str, int] = field(init=False, repr=False, compare=False)
    """eGFR LOINC code -> precedence tier (0 first), derived once instead of on every evaluation."""
    aggravating_category_urls: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The aggravating-medication category ValueSets (sorted), derived once."""
    contract: DataContract = field(init=False, repr=False, compare=False)
    """The data a patient needs (D2), derived once from the rule set and terminology."""

    def __post_init__(self) -> None:
        tiers = {
            code: tier
            for tier, url in enumerate(self.ruleset.kidney.egfr_precedence)
            for code in self.terminology.codes_of(url)
        }
        categories = tuple(
            url
            for url in sorted(self.terminology.value_sets)
            if url.startswith(value_set_url("aggravating-")) and url != self.ruleset.medications.aggravating_value_set
        )
        object.__setattr__(self, "egfr_tiers", tiers)  # frozen dataclass: derived fields are set once, here
        object.__setattr__(self, "aggravating_category_urls", categories)
        object.__setattr__(self, "contract", DataContract(self.ruleset, self.terminology))


def load_knowledge(site_conceptmap_dir: Path | None = None) -> Knowledge:
    return Knowledge(load_ruleset(), load_terminology(site_conceptmap_dir), load_unit_table())
