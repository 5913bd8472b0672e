"""Code knowledge from FHIR data files: analyte ValueSets, our CodeSystem, site ConceptMaps.

Everything here is loaded from ``terminology/`` (shipped inside the package) plus, optionally, a site
directory of ConceptMaps (setting ``RLS_SCREEN_CONCEPTMAP_DIR``). Matching is on code only, never on
display text (docs/rules.md section 6). Local lab codes count only through ``equivalent``/``equal``
ConceptMap mappings: a wider or inexact mapping would be a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from rls_screen.errors import ConfigurationError

CANONICAL_BASE = "https://rls-screen.org/fhir"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
FINDING_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/rls-finding"
OVERRIDE_REASON_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/cds-override-reason"
ANALYTE_PREFIX = "analyte-"
ACCEPTED_EQUIVALENCES = frozenset({"equivalent", "equal"})

Coding = tuple[str, str]
"""(system, code)."""


def value_set_url(value_set_id: str) -> str:
    return f"{CANONICAL_BASE}/ValueSet/{value_set_id}"


@dataclass(frozen=True)
class CodeConcept:
    code: str
    display: str
    definition: str
    kind: str
    role: str = ""
    """Findings only: established-cause | related | test-to-consider | mimic-or-aggravator (rls_screen.priority)."""


@dataclass(frozen=True)
class Terminology:
    """Read-only lookups built once from the data files."""

    value_sets: Mapping[str, frozenset[Coding]]
    """ValueSet canonical URL -> expanded codings."""
    value_set_titles: Mapping[str, str]
    analyte_by_coding: Mapping[Coding, str]
    """LOINC codings of every analyte group, plus site local codings mapped to them."""
    loinc_by_local_coding: Mapping[Coding, str]
    concepts: Mapping[str, CodeConcept]
    """Our finding/advisory/not-evaluable codes (CodeSystem rls-finding)."""
    snomed_outcomes: Mapping[str, tuple[tuple[str, str | None], ...]]
    """Finding code -> ((SNOMED code, gfr-category it depends on or None), ...)."""
    override_reasons: tuple[tuple[str, str], ...] = ()
    """(code, display) of CodeSystem cds-override-reason, in file order: the reasons a card offers."""
    concept_displays: Mapping[Coding, str] = field(default_factory=dict)
    """(system, code) -> the display a ValueSet gives it (e.g. RxNorm 36437 -> 'sertraline'; D21)."""

    def display_of(self, coding: Coding) -> str | None:
        """The ValueSet display of a coding, None when no ValueSet names it."""
        return self.concept_displays.get(coding)

    def analyte_of(self, codings: Iterable[Coding]) -> tuple[str, str] | None:
        """The analyte key and the LOINC code for the first coding we know, else None."""
        for system, code in codings:
            analyte = self.analyte_by_coding.get((system, code))
            if analyte is not None:
                loinc = code if system == LOINC else self.loinc_by_local_coding[(system, code)]
                return analyte, loinc
        return None

    def contains(self, value_set: str, codings: Iterable[Coding]) -> bool:
        members = self.value_sets[value_set]
        return any(coding in members for coding in codings)

    def codes_of(self, value_set: str, system: str = LOINC) -> frozenset[str]:
        return frozenset(code for sys, code in self.value_sets[value_set] if sys == system)

    def analyte_loinc_codes(self) -> dict[str, frozenset[str]]:
        """Analyte key -> its LOINC codes (what a FHIR search asks for)."""
        result: dict[str, set[str]] = {}
        for (system, code), analyte in self.analyte_by_coding.items():
            if system == LOINC:
                result.setdefault(analyte, set()).add(code)
        return {analyte: frozenset(codes) for analyte, codes in result.items()}

    def display(self, code: str) -> str:
        concept = self.concepts.get(code)
        return concept.display if concept else code


def _read_json(entry: Traversable | Path, source: str) -> dict[str, Any]:
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"{source}: cannot read ({error})") from error
    if not isinstance(data, dict) or "resourceType" not in data:
        raise ConfigurationError(f"{source}: not a FHIR resource")
    return data


def _expand(url: str, raw: Mapping[str, dict[str, Any]], seen: tuple[str, ...] = ()) -> frozenset[Coding]:
    if url in seen:
        raise ConfigurationError(f"ValueSet {url}: includes itself (cycle {' -> '.join((*seen, url))})")
    value_set = raw.get(url)
    if value_set is None:
        raise ConfigurationError(f"ValueSet {seen[-1] if seen else url} includes unknown ValueSet {url}")
    codings: set[Coding] = set()
    for include in value_set.get("compose", {}).get("include", []):
        if "filter" in include:
            raise ConfigurationError(f"ValueSet {url}: filters are not supported; list concepts explicitly")
        for nested in include.get("valueSet", []):
            codings |= _expand(nested, raw, (*seen, url))
        system = include.get("system")
        if system:
            codings |= {(system, concept["code"]) for concept in include.get("concept", [])}
    for exclude in value_set.get("compose", {}).get("exclude", []):
        codings -= {(exclude.get("system", ""), concept["code"]) for concept in exclude.get("concept", [])}
    return frozenset(codings)


def _concepts(code_system: Mapping[str, Any]) -> dict[str, CodeConcept]:
    concepts: dict[str, CodeConcept] = {}
    for concept in code_system.get("concept", []):
        properties = {p.get("code"): p.get("valueCode", "") for p in concept.get("property", [])}
        concepts[concept["code"]] = CodeConcept(
            code=concept["code"],
            display=concept.get("display", concept["code"]),
            definition=concept.get("definition", ""),
            kind=properties.get("kind", ""),
            role=properties.get("role", ""),
        )
    return concepts


def _snomed_outcomes(concept_map: Mapping[str, Any]) -> dict[str, tuple[tuple[str, str | None], ...]]:
    outcomes: dict[str, tuple[tuple[str, str | None], ...]] = {}
    for group in concept_map.get("group", []):
        for element in group.get("element", []):
            targets: list[tuple[str, str | None]] = []
            for target in element.get("target", []):
                if target.get("equivalence") == "unmatched" or "code" not in target:
                    continue
                depends = next(
                    (d.get("value") for d in target.get("dependsOn", []) if d.get("property") == "gfr-category"),
                    None,
                )
                targets.append((target["code"], depends))
            outcomes[element["code"]] = tuple(targets)
    return outcomes


def _local_mappings(
    concept_maps: Iterable[tuple[str, Mapping[str, Any]]], analyte_by_loinc: Mapping[str, str]
) -> dict[Coding, str]:
    mapped: dict[Coding, str] = {}
    for source, concept_map in concept_maps:
        for group in concept_map.get("group", []):
            source_system, target_system = group.get("source"), group.get("target")
            if not source_system or target_system != LOINC:
                raise ConfigurationError(f"{source}: each group needs a source system and target {LOINC}")
            for element in group.get("element", []):
                for target in element.get("target", []):
                    if target.get("equivalence") not in ACCEPTED_EQUIVALENCES:
                        continue  # only exact mappings are used; anything else would be a guess
                    loinc = target.get("code")
                    if loinc not in analyte_by_loinc:
                        raise ConfigurationError(
                            f"{source}: {source_system}|{element.get('code')} maps to LOINC {loinc}, "
                            "which is in no analyte ValueSet"
                        )
                    coding = (source_system, element["code"])
                    if mapped.get(coding, loinc) != loinc:
                        raise ConfigurationError(f"{source}: {source_system}|{element['code']} maps to two codes")
                    mapped[coding] = loinc
    return mapped


def _site_concept_maps(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    if not directory.is_dir():
        raise ConfigurationError(f"ConceptMap directory {directory} does not exist")
    maps = []
    for path in sorted(directory.glob("*.json")):
        resource = _read_json(path, str(path))
        if resource["resourceType"] != "ConceptMap":
            raise ConfigurationError(f"{path}: expected a ConceptMap, found {resource['resourceType']}")
        maps.append((str(path), resource))
    return maps


def load_terminology(site_conceptmap_dir: Path | None = None) -> Terminology:
    """Build the lookups from the shipped files and an optional site ConceptMap directory."""
    root = resources.files("rls_screen.terminology")
    raw_value_sets: dict[str, dict[str, Any]] = {}
    code_system: dict[str, Any] | None = None
    override_reasons: tuple[tuple[str, str], ...] = ()
    outcome_map: dict[str, Any] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        resource = _read_json(entry, f"terminology/{entry.name}")
        if resource["resourceType"] == "ValueSet":
            raw_value_sets[resource["url"]] = resource
        elif resource["resourceType"] == "CodeSystem" and resource.get("url") == FINDING_SYSTEM:
            code_system = resource
        elif resource["resourceType"] == "CodeSystem" and resource.get("url") == OVERRIDE_REASON_SYSTEM:
            override_reasons = _override_reasons(resource, f"terminology/{entry.name}")
        elif resource["resourceType"] == "ConceptMap" and resource.get("id") == "finding-to-snomed":
            outcome_map = resource
    if code_system is None:
        raise ConfigurationError(f"terminology/: the CodeSystem {FINDING_SYSTEM} is missing")
    if not override_reasons:
        raise ConfigurationError(f"terminology/: the CodeSystem {OVERRIDE_REASON_SYSTEM} is missing")

    value_sets = {url: _expand(url, raw_value_sets) for url in raw_value_sets}
    analyte_by_loinc: dict[str, str] = {}
    for url, raw in raw_value_sets.items():
        value_set_id = raw.get("id", "")
        if not value_set_id.startswith(ANALYTE_PREFIX):
            continue
        analyte = value_set_id.removeprefix(ANALYTE_PREFIX)
        for system, code in value_sets[url]:
            if system != LOINC:
                continue
            if analyte_by_loinc.setdefault(code, analyte) != analyte:
                raise ConfigurationError(f"LOINC {code} is in two analyte groups: {analyte_by_loinc[code]}, {analyte}")

    concept_maps: list[tuple[str, dict[str, Any]]] = []
    mappings_dir = resources.files("rls_screen.mappings").joinpath("conceptmaps")
    if mappings_dir.is_dir():
        for entry in sorted(mappings_dir.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                concept_maps.append((f"mappings/conceptmaps/{entry.name}", _read_json(entry, entry.name)))
    if site_conceptmap_dir is not None:
        concept_maps.extend(_site_concept_maps(site_conceptmap_dir))
    local = _local_mappings(concept_maps, analyte_by_loinc)

    analyte_by_coding: dict[Coding, str] = {(LOINC, code): analyte for code, analyte in analyte_by_loinc.items()}
    analyte_by_coding.update({coding: analyte_by_loinc[loinc] for coding, loinc in local.items()})
    return Terminology(
        value_sets=value_sets,
        value_set_titles={url: raw.get("title", raw.get("name", url)) for url, raw in raw_value_sets.items()},
        analyte_by_coding=analyte_by_coding,
        loinc_by_local_coding=local,
        concepts=_concepts(code_system),
        snomed_outcomes=_snomed_outcomes(outcome_map),
        override_reasons=override_reasons,
        concept_displays={
            (include["system"], concept["code"]): concept["display"]
            for raw in raw_value_sets.values()
            for include in raw.get("compose", {}).get("include", [])
            if include.get("system")
            for concept in include.get("concept", [])
            if concept.get("display")
        },
    )


def _override_reasons(code_system: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    reasons: list[tuple[str, str]] = []
    for concept in code_system.get("concept") or []:
        code, display = concept.get("code"), concept.get("display")
        if not isinstance(code, str) or not code or not isinstance(display, str) or not display:
            raise ConfigurationError(f"{where}: every override reason needs a code and a display")
        if any(code == seen for seen, _ in reasons):
            raise ConfigurationError(f"{where}: override reason {code!r} is listed twice")
        reasons.append((code, display))
    if not reasons:
        raise ConfigurationError(f"{where}: no override reasons")
    return tuple(reasons)
