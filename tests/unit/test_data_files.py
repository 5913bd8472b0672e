"""Checks every shipped terminology and mapping data file (docs/rules.md: numbers and codes are data).

The FHIR models parse structure but enforce neither FHIR invariants nor code enumerations, and nothing
else would notice a typo in a code or a factor. So this module checks what the engine relies on:
file names, ids and canonical URLs; code uniqueness; LOINC and SNOMED CT check digits; that every
ValueSet reference resolves and every mapped code lands in an analyte group; the finding CodeSystem and
its SNOMED CT map; and the unit table's factors against UCUM, chemistry and docs/rules.md
(rule set 2026.1) itself.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import ucumvert
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.valueset import ValueSet
from tests.support.check_digits import loinc_check_digit_ok, snomed_concept_id_ok

from rls_screen.codesets import _override_reasons, load_terminology
from rls_screen.errors import ConfigurationError

REPO = Path(__file__).parents[2]
TERMINOLOGY_DIR = REPO / "terminology"
CONCEPTMAP_DIR = REPO / "mappings" / "conceptmaps"
UNITS_FILE = REPO / "mappings" / "units.json"

BASE_URL = "https://rls-screen.org/fhir"
RULE_SET_VERSION = "2026.3"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FINDING_SYSTEM = f"{BASE_URL}/CodeSystem/rls-finding"

MODELS: dict[str, Any] = {"ValueSet": ValueSet, "CodeSystem": CodeSystem, "ConceptMap": ConceptMap}

# ConceptMapEquivalence (R4); the model accepts any string, so the test checks it.
R4_EQUIVALENCES = {
    "relatedto",
    "equivalent",
    "equal",
    "wider",
    "subsumes",
    "narrower",
    "specializes",
    "inexact",
    "unmatched",
    "disjoint",
}
APPLIED_EQUIVALENCES = {"equivalent", "equal"}  # docs/terminology.md: nothing else is applied

ANALYTE_KEYS = {
    "ferritin",
    "hemoglobin",
    "tsat",
    "iron",
    "tibc",
    "crp",
    "albumin",
    "creatinine",
    "magnesium",
    "potassium",
    "calcium-total",
    "calcium-ionized",
    "pregnancy-status",
    "gestational-age",
    "egfr",
    # docs/rules.md section 11 (rule set 2026.3)
    "b12",
    "folate",
    "hba1c",
    "osmolality",
    "sodium",
    "glucose",
    "urea-nitrogen",
    "audit-c",
}
CODED_ANALYTES = {"pregnancy-status"}  # valued by a code, so it has no unit entry

# docs/rules.md sections 1, 2 and 6, as written for rule set 2026.1.
SPEC_ANALYTE_CODES = {
    "ferritin": {"2276-4", "14723-1", "20567-4", "24373-3"},
    "hemoglobin": {"718-7", "59260-0", "20509-6", "30313-1", "30350-3", "30351-1", "55782-7", "75928-2"},
    "tsat": {"2502-3"},
    "iron": {"2498-4", "14798-3"},
    "tibc": {"2500-7", "14800-7"},
    "crp": {"1988-5", "30522-7"},
    "albumin": {"1751-7", "61151-7", "61152-5"},
    "creatinine": {"2160-0", "14682-9", "38483-4", "59826-8"},
    "magnesium": {"19123-9", "2601-3", "2593-2", "21377-7"},
    "potassium": {"2823-3", "6298-4"},
    "calcium-total": {"17861-6", "2000-8", "1996-8", "49765-1"},
    "calcium-ionized": {"1994-3", "1995-0", "12180-6", "47596-2", "34581-9", "38230-9", "17863-2"},
    "pregnancy-status": {"82810-3"},
    "gestational-age": {"49051-6"},
    # docs/rules.md section 11 (W1-W5), as written for rule set 2026.3
    "b12": {"2132-9"},
    "folate": {"2284-8"},
    "hba1c": {"4548-4", "17856-6", "59261-8"},
    "osmolality": {"2692-2"},
    "sodium": {"2951-2", "2947-0"},
    "glucose": {"2345-7"},
    "urea-nitrogen": {"3094-0"},
    "audit-c": {"75626-2"},
}
# docs/rules.md section 4: same-day precedence, lower tier wins.
SPEC_EGFR_TIERS = [
    {"98980-6", "94677-2"},
    {"98979-8"},
    {"62238-1", "77147-7", "33914-3", "69405-9", "76633-7", "50210-4"},
    {"48642-3", "48643-1", "88293-6", "88294-4", "50044-7", "70969-1"},
]
NEVER_ANALYTE_VALUE_SETS = {"uibc": {"22753-8", "2501-5"}, "egfr-excluded": {"45066-8", "35591-7"}}

AGGRAVATING_CATEGORIES = [
    "aggravating-dopamine-blocking-antipsychotics",
    "aggravating-dopamine-blocking-antiemetics",
    "aggravating-sedating-antihistamines",
    "aggravating-ssri-snri",
    "aggravating-other-antidepressants",
    "aggravating-lithium",
]
BUPROPION_RXNORM = "42347"  # docs/rules.md section 8: not an aggravator

SPEC_FINDING_KINDS = {
    "finding": {
        "iron-deficiency",
        "iron-insufficient-for-rls",
        "anemia",
        "reduced-kidney-function",
        "kidney-failure",
        "hypomagnesemia",
        "hypokalemia",
        "hyperkalemia",
        "hypocalcemia",
        "missing-iron-studies",
        # docs/rules.md section 11 (rule set 2026.3)
        "hypernatremia",
        "possible-dehydration",
        "b12-deficiency",
        "b12-borderline",
        "folate-deficiency",
        "hba1c-diabetes-range",
        "hba1c-prediabetes-range",
        "alcohol-use-positive",
    },
    "advisory": {
        "ferritin-inflammation-caveat",
        "tsat-iron-overload-risk",
        "dialysis-iv-iron-consideration",
        "hemoglobin-altitude-smoking-caveat",
        "egfr-chronicity-caveat",
        "egfr-computed-from-creatinine",
        "electrolyte-not-established-cause",
        "pediatric-iron-threshold",
        "high-ferritin-low-tsat",  # D10, D26
        "pregnancy-aggravator",  # D12
        "aggravating-medication",
        "dopaminergic-augmentation-risk",
        "osmolality-not-dehydration",  # W11
        "mimic-not-established-cause",  # section 11
        "caffeine-not-assessed",  # W6
    },
    "not-evaluable": {
        "stale",
        "pending",
        "unit-not-understood",
        "comparator-indeterminate",
        "missing",
        "no-value",
        "entered-in-error",
        "unknown-code",
        "not-linked",  # docs/rules.md section 10 (D1)
        "indeterminate",
        "no-effective-date",
        "date-too-imprecise",  # docs/rules.md section 1 (D4)
        "after-as-of",
    },
}
# docs/rules.md section 9 (single-target findings); reduced-kidney-function is checked separately.
SPEC_OUTCOMES = {
    "iron-deficiency": "35240004",
    "anemia": "271737000",
    "kidney-failure": "433146000",
    "hypomagnesemia": "190855004",
    "hypokalemia": "43339004",
    "hyperkalemia": "14140009",
    "hypocalcemia": "5291005",
    "hypernatremia": "39355002",  # W12
    "b12-deficiency": "190634004",  # W1
}
SPEC_GFR_CATEGORY_OUTCOMES = {"G3a": "700378005", "G3b": "700379002", "G4": "431857002"}
UNMATCHED_FINDINGS = {
    "iron-insufficient-for-rls",
    "missing-iron-studies",
    # docs/rules.md section 11: no SNOMED CT code fits a range or a screen
    "b12-borderline",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "hba1c-prediabetes-range",
    "alcohol-use-positive",
}

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
COMPUTABLE_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]{0,254}$")
KEBAB_CASE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")
SNOMED_CODE = re.compile(r"^[1-9]\d{5,17}$")
ICD10CM_CODE = re.compile(r"^[A-TV-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$")
RXNORM_CODE = re.compile(r"^[1-9]\d{0,7}$")
CODE_PATTERN_BY_SYSTEM = {LOINC: LOINC_CODE, SNOMED: SNOMED_CODE, ICD10CM: ICD10CM_CODE, RXNORM: RXNORM_CODE}


# --- loading -------------------------------------------------------------------------------------


def _fhir_paths() -> list[Path]:
    return sorted([*TERMINOLOGY_DIR.glob("*.json"), *CONCEPTMAP_DIR.glob("*.json")])


FHIR_PATHS = _fhir_paths()


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _resources(resource_type: str) -> list[dict[str, Any]]:
    return [_load(p) for p in FHIR_PATHS if _load(p)["resourceType"] == resource_type]


def _value_sets_by_url() -> dict[str, dict[str, Any]]:
    return {vs["url"]: vs for vs in _resources("ValueSet")}


def _value_set(id_: str) -> dict[str, Any]:
    return _value_sets_by_url()[f"{BASE_URL}/ValueSet/{id_}"]


def _expand(value_set: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[tuple[str, str]]:
    """(system, code) pairs of a shipped ValueSet, following compose.include.valueSet references."""
    assert value_set["url"] not in seen, f"ValueSet include cycle through {value_set['url']}"
    by_url = _value_sets_by_url()
    pairs: set[tuple[str, str]] = set()
    for include in value_set["compose"]["include"]:
        members = [_expand(by_url[url], seen | {value_set["url"]}) for url in include.get("valueSet", [])]
        own = {(include["system"], c["code"]) for c in include.get("concept", [])}
        if members:
            common = set.intersection(*members)
            pairs |= common & own if "concept" in include else common
        else:
            pairs |= own
    return pairs


def _analyte_groups() -> dict[str, dict[str, Any]]:
    """analyte-* and egfr-tier-* ValueSets, which must never share a code."""
    return {vs["id"]: vs for vs in _resources("ValueSet") if vs["id"].startswith(("analyte-", "egfr-tier-"))}


def _all_analyte_codes() -> set[tuple[str, str]]:
    codes: set[tuple[str, str]] = set()
    for key in ANALYTE_KEYS:
        codes |= _expand(_value_set(f"analyte-{key}"))
    return codes


def _units() -> dict[str, Any]:
    return _load(UNITS_FILE)


@cache
def _ucum_parser() -> Any:
    return ucumvert.get_ucum_parser()


@cache
def _ucum_registry() -> Any:
    return ucumvert.PintUcumRegistry()


def _ucum_quantity(unit: str) -> Any:
    """1 `unit` as a pint Quantity of our own registry (from_ucum would use pint's global one)."""
    transformer = ucumvert.UcumToPintTransformer(ureg=_ucum_registry())
    return transformer.transform(ucumvert.parse_ucum(unit, _ucum_parser()))


def _to_canonical(analyte: str, value: float, unit: str) -> float:
    """The conversion the engine is specified to do: canonical = value * multiply, or value / divide."""
    entry = _units()["analytes"][analyte]
    matches = [c for c in entry["conversions"] if c["from"] == unit]
    assert len(matches) == 1, f"{analyte}: {unit!r} is listed {len(matches)} times"
    conversion = matches[0]
    scaled = value * conversion["multiply"] if "multiply" in conversion else value / conversion["divide"]
    return scaled + conversion.get("add", 0)


# --- check digits --------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("code", "valid"),
    [("718-7", True), ("718-8", False), ("2276-4", True), ("2276-5", False), ("98979-8", True)],
)
def test_loinc_check_digit_helper(code: str, valid: bool) -> None:
    assert loinc_check_digit_ok(code) is valid


@pytest.mark.unit
@pytest.mark.parametrize(
    ("code", "valid"),
    [("271737000", True), ("271737001", False), ("77386006", True), ("77386005", False), ("32914018", False)],
)
def test_snomed_check_digit_helper(code: str, valid: bool) -> None:
    assert snomed_concept_id_ok(code) is valid


# --- every FHIR file -----------------------------------------------------------------------------


@pytest.mark.unit
def test_expected_artifacts_are_shipped() -> None:
    ids = {(_load(p)["resourceType"], _load(p)["id"]) for p in FHIR_PATHS}
    expected = {("ValueSet", f"analyte-{key}") for key in ANALYTE_KEYS}
    expected |= {("ValueSet", f"egfr-tier-{tier}") for tier in range(4)}
    expected |= {("ValueSet", id_) for id_ in [*NEVER_ANALYTE_VALUE_SETS, *AGGRAVATING_CATEGORIES]}
    expected |= {
        ("ValueSet", id_)
        for id_ in [
            "rls-condition",
            "pregnancy-condition",
            "pregnancy-status-pregnant",
            "dialysis",
            "aggravating-medications",
            # RLS treatment drugs matched by the CDS order service (docs/cds-hooks.md)
            "rls-dopaminergic-ingredients",
            "rls-alpha2delta-ingredients",
            "rls-dopaminergic-clinical-drugs",
            "rls-alpha2delta-clinical-drugs",
        ]
    }
    expected |= {
        ("CodeSystem", "rls-finding"),
        ("CodeSystem", "cds-override-reason"),
        ("ConceptMap", "finding-to-snomed"),
    }
    expected |= {("ConceptMap", "example-local-labs")}
    assert expected - ids == set()


@pytest.mark.unit
@pytest.mark.parametrize("path", FHIR_PATHS, ids=lambda p: p.name)
def test_file_parses_as_its_fhir_type(path: Path) -> None:
    data = _load(path)
    model = MODELS.get(data.get("resourceType", ""))
    assert model is not None, f"{path.name}: unexpected resourceType {data.get('resourceType')!r}"
    resource = model.model_validate(data)
    assert resource.id == data["id"]


@pytest.mark.unit
@pytest.mark.parametrize("path", FHIR_PATHS, ids=lambda p: p.name)
def test_file_is_pretty_printed_with_two_spaces(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.unit
@pytest.mark.parametrize("path", FHIR_PATHS, ids=lambda p: p.name)
def test_file_name_id_and_url_agree(path: Path) -> None:
    data = _load(path)
    assert FHIR_ID.match(data["id"])
    assert path.name == f"{data['resourceType']}-{data['id']}.json"
    assert data["url"] == f"{BASE_URL}/{data['resourceType']}/{data['id']}"


@pytest.mark.unit
@pytest.mark.parametrize("path", FHIR_PATHS, ids=lambda p: p.name)
def test_common_metadata(path: Path) -> None:
    data = _load(path)
    assert data["version"] == RULE_SET_VERSION
    assert data["status"] == "active"
    assert data["experimental"] is False
    assert data["publisher"] == "rls-screen"
    assert data["date"] == "2026-12-01"
    assert COMPUTABLE_NAME.match(data["name"]), data["name"]
    assert data["title"].strip()
    description = data["description"]
    # The rules' codes cite their docs/rules.md section; the CDS service's own codes cite its documentation.
    cites = "docs/cds-hooks.md" if data["id"] == "cds-override-reason" else "docs/rules.md"
    assert cites in description, f"the description must cite {cites}"
    assert description.endswith(".")
    assert re.search(r"\.\s+[A-Z]", description) is None, "the description must be one sentence"


@pytest.mark.unit
def test_ids_and_urls_are_unique() -> None:
    for key in ("id", "url"):
        counts = Counter((_load(p)["resourceType"], _load(p)[key]) for p in FHIR_PATHS)
        assert [k for k, n in counts.items() if n > 1] == []
    assert len({_load(p)["url"] for p in FHIR_PATHS}) == len(FHIR_PATHS)


# --- ValueSets -----------------------------------------------------------------------------------

VALUE_SET_PATHS = [p for p in FHIR_PATHS if p.name.startswith("ValueSet-")]


@pytest.mark.unit
@pytest.mark.parametrize("path", VALUE_SET_PATHS, ids=lambda p: p.name)
def test_value_set_codes_are_unique_and_well_formed(path: Path) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    for include in _load(path)["compose"]["include"]:
        assert "system" in include or "valueSet" in include, "vsd-1: an include needs a system or valueSet"
        system = include.get("system")
        for concept in include.get("concept", []):
            seen[(system, concept["code"])] += 1
            pattern = CODE_PATTERN_BY_SYSTEM.get(system)
            assert pattern is not None, f"unexpected code system {system!r}"
            assert pattern.match(concept["code"]), f"{concept['code']!r} is not a {system} code"
            if system == LOINC:
                assert loinc_check_digit_ok(concept["code"]), f"LOINC check digit: {concept['code']}"
            if system == SNOMED:
                assert snomed_concept_id_ok(concept["code"]), f"SNOMED CT check digit: {concept['code']}"
            if "display" in concept:
                assert concept["display"].strip() == concept["display"] != ""
    assert [k for k, n in seen.items() if n > 1] == []


@pytest.mark.unit
def test_every_value_set_reference_resolves_to_a_shipped_value_set() -> None:
    shipped = set(_value_sets_by_url())
    referenced = {
        url
        for vs in _resources("ValueSet")
        for part in ("include", "exclude")
        for clause in vs["compose"].get(part, [])
        for url in clause.get("valueSet", [])
    }
    assert referenced, "expected composed ValueSets (analyte-egfr, aggravating-medications)"
    assert referenced - shipped == set()


@pytest.mark.unit
def test_whole_code_system_includes_only_name_our_own_code_system() -> None:
    # An include with a system and no concept list means "every code": fine for our CodeSystem,
    # a mistake for LOINC or SNOMED CT.
    shipped_code_systems = {cs["url"] for cs in _resources("CodeSystem")}
    for vs in _resources("ValueSet"):
        for include in vs["compose"]["include"]:
            if "system" in include and "concept" not in include and "filter" not in include:
                assert include["system"] in shipped_code_systems, vs["id"]


@pytest.mark.unit
def test_a_loinc_code_belongs_to_at_most_one_analyte_group() -> None:
    owners: dict[str, list[str]] = {}
    for id_, vs in _analyte_groups().items():
        for include in vs["compose"]["include"]:
            for concept in include.get("concept", []):
                owners.setdefault(concept["code"], []).append(id_)
    assert {code: ids for code, ids in owners.items() if len(ids) > 1} == {}


@pytest.mark.unit
def test_analyte_groups_are_loinc_and_match_the_spec() -> None:
    for key, codes in SPEC_ANALYTE_CODES.items():
        expanded = _expand(_value_set(f"analyte-{key}"))
        assert {system for system, _ in expanded} == {LOINC}, key
        assert {code for _, code in expanded} == codes, key


@pytest.mark.unit
def test_egfr_precedence_tiers_compose_analyte_egfr_in_order() -> None:
    egfr = _value_set("analyte-egfr")
    urls = [include["valueSet"] for include in egfr["compose"]["include"]]
    assert urls == [[f"{BASE_URL}/ValueSet/egfr-tier-{tier}"] for tier in range(4)]
    assert all(set(include) == {"valueSet"} for include in egfr["compose"]["include"])
    for tier, codes in enumerate(SPEC_EGFR_TIERS):
        assert _expand(_value_set(f"egfr-tier-{tier}")) == {(LOINC, code) for code in codes}
    assert _expand(egfr) == {(LOINC, code) for codes in SPEC_EGFR_TIERS for code in codes}


@pytest.mark.unit
@pytest.mark.parametrize(("id_", "codes"), sorted(NEVER_ANALYTE_VALUE_SETS.items()))
def test_never_used_codes_stay_out_of_every_analyte_group(id_: str, codes: set[str]) -> None:
    listed = {code for _, code in _expand(_value_set(id_))}
    assert listed == codes
    assert {(LOINC, code) for code in codes} & _all_analyte_codes() == set()
    assert "never" in _value_set(id_)["description"].lower()


@pytest.mark.unit
def test_uibc_is_documented_as_not_tibc() -> None:
    description = _value_set("uibc")["description"]
    assert "NOT TIBC" in description
    assert "never used as TIBC" in description


@pytest.mark.unit
def test_aggravating_medications_compose_every_category_and_exclude_bupropion() -> None:
    composite = _value_set("aggravating-medications")
    urls = [url for include in composite["compose"]["include"] for url in include["valueSet"]]
    assert urls == [f"{BASE_URL}/ValueSet/{id_}" for id_ in AGGRAVATING_CATEGORIES]
    expanded = _expand(composite)
    assert {system for system, _ in expanded} == {RXNORM}
    assert (RXNORM, BUPROPION_RXNORM) not in expanded
    assert len(expanded) == 24  # docs/rules.md section 8 lists 24 ingredients
    for id_ in ("aggravating-ssri-snri", "aggravating-other-antidepressants"):
        assert BUPROPION_RXNORM in _value_set(id_)["description"]


@pytest.mark.unit
def test_condition_value_sets_hold_the_spec_codes() -> None:
    assert _expand(_value_set("rls-condition")) == {(SNOMED, "32914008"), (ICD10CM, "G25.81")}
    # D17: 77386006 and its common descendants; ICD-10-CM Z33.1, Z34.*, O09.* (extensional, a site extends it)
    pregnancy = _expand(_value_set("pregnancy-condition"))
    assert {code for system, code in pregnancy if system == SNOMED} == {
        "77386006",
        "72892002",
        "47200007",
        "16356006",
        "237238006",
    }
    icd = {code for system, code in pregnancy if system == ICD10CM}
    assert "Z33.1" in icd
    assert all(code == "Z33.1" or code.startswith(("Z34.", "O09.")) for code in icd)
    assert {"Z34.00", "Z34.83", "Z34.93", "O09.00", "O09.529", "O09.93", "O09.A3"} <= icd
    assert {system for system, _ in pregnancy} == {SNOMED, ICD10CM}
    assert _expand(_value_set("pregnancy-status-pregnant")) == {(SNOMED, "77386006")}
    dialysis = _expand(_value_set("dialysis"))
    # 105502003 |Dependence on renal dialysis (finding)|: the SNOMED CT twin of Z99.2 (synth writes both)
    assert {(ICD10CM, "Z99.2"), (ICD10CM, "N18.6"), (SNOMED, "105502003")} <= dialysis
    assert {system for system, _ in dialysis} == {SNOMED, ICD10CM}


# --- CodeSystem rls-finding ----------------------------------------------------------------------


def _finding_code_system() -> dict[str, Any]:
    [code_system] = [cs for cs in _resources("CodeSystem") if cs["url"] == FINDING_SYSTEM]
    return code_system


def _kind(concept: dict[str, Any]) -> str:
    kinds = [p["valueCode"] for p in concept.get("property", []) if p["code"] == "kind"]
    assert len(kinds) == 1, f"{concept['code']}: needs exactly one kind, has {kinds}"
    return kinds[0]


@pytest.mark.unit
def test_finding_code_system_header() -> None:
    code_system = _finding_code_system()
    assert code_system["content"] == "complete"
    assert code_system["caseSensitive"] is True
    assert code_system["count"] == len(code_system["concept"])
    [kind] = [p for p in code_system["property"] if p["code"] == "kind"]
    assert kind["type"] == "code"
    assert kind["description"] == "finding | advisory | not-evaluable"


@pytest.mark.unit
def test_finding_codes_are_unique_kebab_case_and_fully_described() -> None:
    concepts = _finding_code_system()["concept"]
    codes = [c["code"] for c in concepts]
    assert [code for code, n in Counter(codes).items() if n > 1] == []
    for concept in concepts:
        assert KEBAB_CASE.match(concept["code"]), concept["code"]
        assert concept["display"].strip()
        assert concept["definition"].endswith("."), concept["code"]
        assert "docs/rules.md section" in concept["definition"], concept["code"]
        assert _kind(concept) in SPEC_FINDING_KINDS


@pytest.mark.unit
def test_finding_codes_and_kinds_match_the_spec() -> None:
    by_kind: dict[str, set[str]] = {}
    for concept in _finding_code_system()["concept"]:
        by_kind.setdefault(_kind(concept), set()).add(concept["code"])
    assert by_kind == SPEC_FINDING_KINDS


# --- ConceptMaps ---------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("path", [p for p in FHIR_PATHS if p.name.startswith("ConceptMap-")], ids=lambda p: p.name)
def test_concept_map_targets_obey_r4_rules(path: Path) -> None:
    for group in _load(path)["group"]:
        sources = [element["code"] for element in group["element"]]
        assert [code for code, n in Counter(sources).items() if n > 1] == []
        for element in group["element"]:
            assert element["target"], element["code"]
            for target in element["target"]:
                assert target["equivalence"] in R4_EQUIVALENCES
                if target["equivalence"] in {"narrower", "inexact"}:
                    assert target.get("comment", "").strip(), "cmd-1: narrower/inexact need a comment"
                if target["equivalence"] == "unmatched":
                    assert "code" not in target
                else:
                    assert target["code"].strip()


@pytest.mark.unit
def test_finding_to_snomed_covers_every_finding_and_nothing_else() -> None:
    [finding_map] = [cm for cm in _resources("ConceptMap") if cm["id"] == "finding-to-snomed"]
    [group] = finding_map["group"]
    assert group["source"] == FINDING_SYSTEM
    assert group["target"] == SNOMED
    mapped = {element["code"] for element in group["element"]}
    assert mapped == SPEC_FINDING_KINDS["finding"]
    targets = {element["code"]: element["target"] for element in group["element"]}
    for finding, outcome in SPEC_OUTCOMES.items():
        assert [t["code"] for t in targets[finding]] == [outcome], finding
        assert targets[finding][0]["equivalence"] in APPLIED_EQUIVALENCES
    for finding in UNMATCHED_FINDINGS:
        assert [t["equivalence"] for t in targets[finding]] == ["unmatched"], finding
        assert "code" not in targets[finding][0], finding
    assert [(t["code"], t["equivalence"]) for t in targets["possible-dehydration"]] == [("34095006", "wider")]
    for element_targets in targets.values():
        for target in element_targets:
            if "code" in target:
                assert snomed_concept_id_ok(target["code"]), target["code"]


@pytest.mark.unit
def test_reduced_kidney_function_maps_by_gfr_category() -> None:
    [finding_map] = [cm for cm in _resources("ConceptMap") if cm["id"] == "finding-to-snomed"]
    [element] = [e for e in finding_map["group"][0]["element"] if e["code"] == "reduced-kidney-function"]
    by_category = {}
    for target in element["target"]:
        assert target["equivalence"] == "specializes"
        [depends_on] = target["dependsOn"]
        assert depends_on["property"] == "gfr-category"
        by_category[depends_on["value"]] = target["code"]
    assert by_category == SPEC_GFR_CATEGORY_OUTCOMES


def _site_concept_maps() -> list[dict[str, Any]]:
    return [_load(p) for p in sorted(CONCEPTMAP_DIR.glob("*.json"))]


@pytest.mark.unit
def test_site_concept_maps_target_loinc_codes_in_an_analyte_value_set() -> None:
    maps = _site_concept_maps()
    assert maps, "the example site ConceptMap is missing"
    analyte_codes = _all_analyte_codes()
    for concept_map in maps:
        for group in concept_map["group"]:
            assert group["target"] == LOINC
            for element in group["element"]:
                for target in element["target"]:
                    if "code" in target:
                        assert (LOINC, target["code"]) in analyte_codes, (element["code"], target["code"])


@pytest.mark.unit
def test_example_site_map_documents_an_unapplied_mapping() -> None:
    [example] = [cm for cm in _site_concept_maps() if cm["id"] == "example-local-labs"]
    equivalences = Counter(t["equivalence"] for g in example["group"] for e in g["element"] for t in e["target"])
    assert equivalences["equivalent"] >= 13
    assert set(equivalences) - APPLIED_EQUIVALENCES, "expected one mapping that is not applied"
    assert {g["source"] for g in example["group"]} == {"https://lab.example-hospital.org/codes"}


# --- mappings/units.json -------------------------------------------------------------------------


def _all_units() -> list[str]:
    units = _units()
    found = {entry["canonicalUnit"] for entry in units["analytes"].values()}
    found |= {c["from"] for entry in units["analytes"].values() for c in entry["conversions"]}
    found |= set(units["unitTextAliases"].values())
    return sorted(found)


@pytest.mark.unit
def test_units_file_shape() -> None:
    units = _units()
    assert set(units) == {"version", "description", "analytes", "unitTextAliases"}
    assert units["version"] == RULE_SET_VERSION
    assert "docs/rules.md section 7" in units["description"]
    for key, entry in units["analytes"].items():
        assert set(entry) - {"unitless"} == {"canonicalUnit", "source", "conversions"}, key
        assert entry.get("unitless", entry["canonicalUnit"]) == entry["canonicalUnit"], key  # W13
        assert entry["source"].startswith("docs/rules.md section"), key


@pytest.mark.unit
def test_unit_keys_match_analyte_value_sets() -> None:
    analyte_value_sets = {
        vs["id"].removeprefix("analyte-") for vs in _resources("ValueSet") if vs["id"].startswith("analyte-")
    }
    assert analyte_value_sets == ANALYTE_KEYS
    assert set(_units()["analytes"]) == ANALYTE_KEYS - CODED_ANALYTES


@pytest.mark.unit
@pytest.mark.parametrize("analyte", sorted(ANALYTE_KEYS - CODED_ANALYTES))
def test_each_conversion_has_one_positive_factor(analyte: str) -> None:
    entry = _units()["analytes"][analyte]
    froms = [c["from"] for c in entry["conversions"]]
    assert [unit for unit, n in Counter(froms).items() if n > 1] == []
    for conversion in entry["conversions"]:
        factors = set(conversion) & {"multiply", "divide"}
        assert len(factors) == 1, conversion
        assert set(conversion) - {"add"} == {"from", *factors}, conversion  # add: an affine conversion (W8)
        factor = conversion[factors.pop()]
        assert isinstance(factor, int | float), conversion
        assert not isinstance(factor, bool), conversion
        assert math.isfinite(factor), conversion
        assert factor > 0, conversion
    assert {"from": entry["canonicalUnit"], "multiply": 1} in entry["conversions"]


@pytest.mark.unit
@pytest.mark.parametrize("unit", _all_units())
def test_every_unit_is_valid_ucum(unit: str) -> None:
    ucumvert.parse_ucum(unit, _ucum_parser())


@pytest.mark.unit
@pytest.mark.parametrize("unit", ["mcg/L", "µg/L", "mEq/L", "weeks", "mL/min/1.73m2"])
def test_ucum_validation_rejects_free_text(unit: str) -> None:
    with pytest.raises(ucumvert.InvalidUcumError):
        ucumvert.parse_ucum(unit, _ucum_parser())


@pytest.mark.unit
def test_aliases_point_at_accepted_units_and_are_not_themselves_ucum_codes_in_use() -> None:
    units = _units()
    accepted = {c["from"] for entry in units["analytes"].values() for c in entry["conversions"]}
    aliases = units["unitTextAliases"]
    assert set(aliases.values()) - accepted == set()
    assert set(aliases) & accepted == set(), "an alias must not shadow a UCUM code"
    assert all(text != target for text, target in aliases.items())


@pytest.mark.unit
def test_egfr_accepts_only_the_per_area_unit() -> None:
    # docs/rules.md section 7: plain mL/min is a clearance (Cockcroft-Gault), not eGFR.
    units = _units()
    assert [c["from"] for c in units["analytes"]["egfr"]["conversions"]] == ["mL/min/{1.73_m2}"]
    assert "mL/min" not in units["unitTextAliases"].values()
    assert all(not text.lower().strip().endswith("/min") for text in units["unitTextAliases"])


# Independent chemistry for the cross-dimension factors (g/mol), and the charge for mEq.
MOLAR_MASS = {
    # ferritin's conventional ~445 kDa, the mass behind 1 ug/L = 2.247 pmol/L; catches a flipped factor
    "ferritin": 445_000.0,
    "hemoglobin": 16_114.5,  # haemoglobin monomer (Hb(Fe)), IFCC
    "iron": 55.845,
    "tibc": 55.845,  # TIBC is reported as iron bound
    "creatinine": 113.12,
    "magnesium": 24.305,
    "calcium-total": 40.078,
    "calcium-ionized": 40.078,
    "b12": 1355.37,  # cyanocobalamin: 1 pmol/L = 1.355 ng/L (NICE NG239: ng/L x 0.738 = pmol/L)
    "folate": 441.4,  # folic acid: 1 ng/mL = 2.266 nmol/L
    "glucose": 180.16,
    "urea-nitrogen": 28.014,  # two nitrogen atoms per urea: urea nitrogen mg/dL -> urea mmol/L
}
VALENCE = {"magnesium": 2, "potassium": 1, "sodium": 1, "calcium-total": 2, "calcium-ionized": 2}
NOT_PHYSICAL = {("hba1c", "mmol/mol"), ("audit-c", "1"), ("audit-c", "{score}")}
"""W8: HbA1c % and mmol/mol are two scales (affine, IFCC-NGSP master equation), not a unit conversion; a score."""


def _independent_factor(analyte: str, unit: str, canonical: str) -> float:
    """canonical value of 1 `unit`, from UCUM (pint), molar mass and valence, not from units.json."""
    registry = _ucum_registry()
    source = _ucum_quantity(unit)
    target = _ucum_quantity(canonical)
    if "eq" in unit:  # UCUM counts an equivalent as a mole; one mmol of a divalent ion is 2 meq
        source = source / VALENCE[analyte]
    if source.dimensionality != target.dimensionality:
        molar_mass = registry.Quantity(MOLAR_MASS[analyte], "g/mol")
        source = source * molar_mass if source.check("[substance]/[length]**3") else source / molar_mass
    return float(source.to(target.units).magnitude / target.magnitude)


@pytest.mark.unit
@pytest.mark.parametrize("analyte", sorted(ANALYTE_KEYS - CODED_ANALYTES))
def test_factors_agree_with_ucum_and_chemistry(analyte: str) -> None:
    entry = _units()["analytes"][analyte]
    for conversion in entry["conversions"]:
        unit = conversion["from"]
        if (analyte, unit) in NOT_PHYSICAL:
            continue
        expected = _independent_factor(analyte, unit, entry["canonicalUnit"])
        assert _to_canonical(analyte, 1.0, unit) == pytest.approx(expected, rel=2e-3), unit


# docs/rules.md sections 5 and 7 in their own numbers: (analyte, value, unit, canonical value).
SPEC_ROUND_TRIPS = [
    ("ferritin", 1.0, "pmol/L", 1 / 2.247),
    ("ferritin", 2.247, "pmol/L", 1.0),
    ("ferritin", 15.0, "ng/mL", 15.0),
    ("hemoglobin", 13.0, "g/dL", 130.0),
    ("hemoglobin", 1.0, "mmol/L", 16.114),  # g/dL = mmol/L x 1.6114
    ("magnesium", 1.7, "mg/dL", 1.7 / 2.4305),
    ("magnesium", 1.4, "meq/L", 0.70),  # section 5: 0.70 mmol/L = 1.4 mEq/L
    ("calcium-total", 8.5, "mg/dL", 8.5 / 4.008),
    ("calcium-total", 4.24, "meq/L", 2.12),
    ("calcium-ionized", 2.3, "meq/L", 1.15),
    ("potassium", 3.5, "meq/L", 3.5),
    ("creatinine", 88.42, "umol/L", 1.0),
    ("iron", 1.0, "umol/L", 5.585),
    ("tibc", 1.0, "umol/L", 5.585),
    ("crp", 0.5, "mg/dL", 5.0),
    ("albumin", 4.0, "g/dL", 40.0),
    ("gestational-age", 98.0, "d", 14.0),
    ("egfr", 60.0, "mL/min/{1.73_m2}", 60.0),
    ("tsat", 20.0, "%", 20.0),
    # docs/rules.md section 11 (W4, W8) in its own numbers
    ("b12", 133.0, "pmol/L", 133.0 / 0.738),
    ("b12", 0.18, "ng/mL", 180.0),
    ("b12", 180.0, "pg/mL", 180.0),
    ("folate", 10.0, "nmol/L", 10.0 / 2.266),
    ("folate", 4.0, "ug/L", 4.0),
    ("hba1c", 48.0, "mmol/mol", 48.0 / 10.929 + 2.15),
    ("hba1c", (6.5 - 2.15) * 10.929, "mmol/mol", 6.5),
    ("glucose", 250.0, "mg/dL", 250.0 / 18.016),
    ("urea-nitrogen", 14.0, "mg/dL", 14.0 * 0.357),
    ("urea-nitrogen", 5.0, "mmol/L", 5.0),
    ("sodium", 146.0, "meq/L", 146.0),
    ("audit-c", 4.0, "{score}", 4.0),
]


@pytest.mark.unit
@pytest.mark.parametrize(("analyte", "value", "unit", "canonical"), SPEC_ROUND_TRIPS)
def test_spec_numbers_round_trip(analyte: str, value: float, unit: str, canonical: float) -> None:
    assert _to_canonical(analyte, value, unit) == pytest.approx(canonical, rel=1e-9)


@pytest.mark.unit
def test_spec_thresholds_agree_across_units() -> None:
    # Section 5 states the magnesium and calcium thresholds in several units; they must coincide.
    assert _to_canonical("magnesium", 1.7, "mg/dL") == pytest.approx(0.70, abs=0.005)
    assert _to_canonical("calcium-total", 8.5, "mg/dL") == pytest.approx(2.12, abs=0.005)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("analyte", "text", "value", "canonical"),
    [
        ("ferritin", "µg/L", 30.0, 30.0),
        ("ferritin", "mcg/L", 30.0, 30.0),
        ("potassium", "mEq/L", 4.1, 4.1),
        ("egfr", "mL/min/1.73 m2", 45.0, 45.0),
        ("hemoglobin", "g/dl", 12.0, 120.0),
        ("gestational-age", "weeks", 20.0, 20.0),
    ],
)
def test_unit_text_aliases_convert(analyte: str, text: str, value: float, canonical: float) -> None:
    ucum = _units()["unitTextAliases"][text]
    assert _to_canonical(analyte, value, ucum) == pytest.approx(canonical)


@pytest.mark.unit
def test_override_reasons_come_from_their_code_system_in_file_order() -> None:
    [code_system] = [cs for cs in _resources("CodeSystem") if cs["id"] == "cds-override-reason"]
    assert code_system["count"] == len(code_system["concept"])
    assert all(c["code"] and c["display"] and c["definition"] for c in code_system["concept"])
    loaded = load_terminology().override_reasons
    assert loaded == tuple((c["code"], c["display"]) for c in code_system["concept"])


@pytest.mark.unit
@pytest.mark.parametrize(
    ("concepts", "message"),
    [
        ([], "no override reasons"),
        ([{"code": "a", "display": "A"}, {"code": "a", "display": "Again"}], "listed twice"),
        ([{"code": "a"}], "needs a code and a display"),
    ],
)
def test_a_broken_override_reason_code_system_is_a_configuration_error(
    concepts: list[dict[str, str]], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _override_reasons({"concept": concepts}, "terminology/CodeSystem-cds-override-reason.json")
