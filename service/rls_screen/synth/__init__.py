"""Deterministic synthetic panel of RLS patients as plain FHIR R4 JSON, with the mess of real lab feeds.

This package owns the test and demo data: Patients, Conditions (restless legs syndrome, dialysis),
laboratory Observations for the analytes of docs/rules.md, MedicationRequests (aggravating and
other drugs) and dialysis Procedures, drawn per patient from a *scenario*
(iron deficiency, CKD G4, 2nd-trimester pregnancy, normal, ...) and then made messy the way real
feeds are: several results per analyte over two years (older ones stale), entered-in-error and
preliminary results, comparators (``<5``, ``>60``), dataAbsentReason, units the module must convert
or refuse, eGFR codes of different precedence, missing iron studies. The distributions and every
quirk are documented in docs/synthetic-panel.md.

Pure: no network, no clock (``as_of`` is an argument), no global random state. Patient ``i`` is drawn
from its own ``random.Random`` keyed by ``(seed, i)``, so it is the same whether generated alone or in
a panel of a million, and panels can be streamed (``iter_patient_records``) without holding them.
Each patient carries a ``ManifestEntry``: the scenario, the quirks applied and the findings the values
were designed to produce (with margins from every threshold), so tests and demos can cross-check the
engine against an independent statement of intent.

Modules, in the order a patient is made: ``scenarios`` (which picture, which values), ``patient``
(the draw, with ``labs`` and ``mess`` for the Observations and ``resources`` for Patient, Condition and
Group), ``orders`` (MedicationRequests and Procedures, from a stream of their own), ``panel`` (entry
points), ``ndjson`` and ``bundles`` (output). ``codes`` holds the tables, ``clinical`` the arithmetic,
``dice`` the random draws. Everything public is re-exported here.
"""

from __future__ import annotations

from rls_screen.synth.bundles import (
    BundleType,
    RequestMethod,
    chunked_transaction_bundles,
    full_url,
    resource_uuid,
    transaction_bundles,
    urn_uuid_bundle,
    urn_uuid_bundles,
)
from rls_screen.synth.clinical import age_on, ckd_epi_2021, creatinine_for_egfr, hb_cutoffs
from rls_screen.synth.codes import (
    ICD10CM,
    ID_PREFIX_PATTERN,
    LOCAL_LAB_SYSTEM,
    LOINC,
    LOINC_DISPLAY,
    MAX_PATIENTS,
    MRN_SYSTEM,
    SNOMED,
    TEST_DATA_TAG,
    UCUM,
    Json,
)
from rls_screen.synth.ndjson import NDJSON_TYPES, NdjsonWriter, PanelSource, write_ndjson
from rls_screen.synth.panel import generate_panel, generate_patient, iter_patient_records
from rls_screen.synth.records import ManifestEntry, Panel, PatientRecord, panel_id, patient_id, validate_arguments
from rls_screen.synth.resources import build_group
from rls_screen.synth.scenarios import SCENARIO_WEIGHTS, SCENARIOS, scenario_for

__all__ = [
    "ICD10CM",
    "ID_PREFIX_PATTERN",
    "LOCAL_LAB_SYSTEM",
    "LOINC",
    "LOINC_DISPLAY",
    "MAX_PATIENTS",
    "MRN_SYSTEM",
    "NDJSON_TYPES",
    "SCENARIOS",
    "SCENARIO_WEIGHTS",
    "SNOMED",
    "TEST_DATA_TAG",
    "UCUM",
    "BundleType",
    "Json",
    "ManifestEntry",
    "NdjsonWriter",
    "Panel",
    "PanelSource",
    "PatientRecord",
    "RequestMethod",
    "age_on",
    "build_group",
    "chunked_transaction_bundles",
    "ckd_epi_2021",
    "creatinine_for_egfr",
    "full_url",
    "generate_panel",
    "generate_patient",
    "hb_cutoffs",
    "iter_patient_records",
    "panel_id",
    "patient_id",
    "resource_uuid",
    "scenario_for",
    "transaction_bundles",
    "urn_uuid_bundle",
    "urn_uuid_bundles",
    "validate_arguments",
    "write_ndjson",
]
