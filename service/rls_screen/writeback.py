"""From an Assessment to the FHIR resources written back, as one deterministic transaction.

Pure builders (no network): given the assessment, what already exists on the server (Flags,
ServiceRequests, the RiskAssessment with this identifier) and the injected time of the run, decide
what to create or update, and build the transaction Bundle. Same inputs -> the same bytes, which
is what makes write-back idempotent: a re-run on unchanged data changes nothing and sends nothing.

Written resources (fhir.resources R4B models, identical to R4 for these types, so they are valid
by construction; serialised without nulls):
- Device: the module itself, with its version (conditional create, once per server: ``ensure_device``).
- RiskAssessment: one per distinct evaluation; identifier = hash(patient, rule-set version, basis
  Observations with versions, outcome), created with If-None-Exist.
- Flag: one per patient + finding (stable identifier, conditional update); a Flag whose finding is
  no longer present becomes inactive with period.end; one that returns becomes active again.
- ServiceRequest (intent proposal) for missing iron studies; revoked when the studies arrive.
- Provenance: what this run wrote, by the Device, from which Observations.
"""

from __future__ import annotations

import hashlib
import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest

from rls_screen import __version__
from rls_screen.codesets import CANONICAL_BASE, FINDING_SYSTEM, SNOMED, Terminology
from rls_screen.model import Assessment, Finding
from rls_screen.ruleset import RuleSet
from rls_screen.wording import (
    advice_for,
    display_units,
    finding_head,
    finding_sentence,
    flag_banner_text,
    iron_band_text,
    sources_text,
    threshold_for,
    threshold_text,
    value_phrase,
)

DEVICE_ID_SYSTEM = f"{CANONICAL_BASE}/identifier/device"
RISK_ASSESSMENT_ID_SYSTEM = f"{CANONICAL_BASE}/identifier/risk-assessment"
FLAG_ID_SYSTEM = f"{CANONICAL_BASE}/identifier/flag"
SERVICE_REQUEST_ID_SYSTEM = f"{CANONICAL_BASE}/identifier/service-request"
RULESET_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/rule-set"
DEVICE_IDENTIFIER = f"rls-screen-{__version__}"  # one Device per released version
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
PROVENANCE_AGENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
UUID_NAMESPACE = uuid.UUID("6f6c1c9e-4c43-4bd6-9a3a-6b0c2f1e8a11")
IRON_STUDIES_TEXT = "Ferritin and iron panel (serum iron, TIBC, transferrin saturation)"


def _token(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, '|'.join(parts))}"


def narrative(*paragraphs: str) -> dict[str, str]:
    """A generated XHTML narrative, so an EHR can show the resource as written (FHIR dom-6)."""
    body = "".join(f"<p>{html.escape(text)}</p>" for text in paragraphs if text)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def to_json(resource: Resource) -> dict[str, Any]:
    """A fhir.resources model as plain JSON without nulls."""
    result: dict[str, Any] = orjson.loads(resource.model_dump_json(exclude_none=True))
    return result


@dataclass(frozen=True)
class ExistingState:
    """What the server holds for this patient, from the pre-write read."""

    flags: Mapping[str, Mapping[str, Any]]
    """Finding code -> the Flag with our identifier."""
    service_request: Mapping[str, Any] | None
    risk_assessment_exists: bool


@dataclass(frozen=True)
class WritePlan:
    bundle: dict[str, Any] | None
    """The transaction Bundle, or None when nothing would change."""
    risk_assessment_identifier: str
    created: tuple[str, ...]
    """What the transaction creates or changes, e.g. 'Flag iron-deficiency (active)'."""


def risk_assessment_identifier(assessment: Assessment) -> str:
    """Derived from patient, rule-set version, the basis Observations with versions, and the outcome."""
    basis = sorted(f"{r.reference}/_history/{r.version_id or '-'}" for r in assessment.used_observations)
    outcome = sorted(f"{f.code}:{f.severity or ''}" for f in (*assessment.findings, *assessment.advisories))
    return _token(
        assessment.patient,
        assessment.rule_set_id,
        assessment.rule_set_version,
        *basis,
        "|".join(outcome),
        assessment.iron_band,
        assessment.gfr_category or "",
    )


def flag_identifier(patient_id: str, code: str) -> str:
    return f"{patient_id}.{code}"


def service_request_identifier(patient_id: str) -> str:
    return f"{patient_id}.missing-iron-studies"


def build_device() -> Device:
    return Device(
        identifier=[{"system": DEVICE_ID_SYSTEM, "value": DEVICE_IDENTIFIER}],
        status="active",
        manufacturer="rls-screen project",
        deviceName=[{"name": "rls-screen RLS secondary-cause screening", "type": "user-friendly-name"}],
        version=[{"value": __version__}],
    )


def _finding_concept(finding: Finding, terminology: Terminology, gfr_category: str | None) -> dict[str, Any]:
    codings = [{"system": FINDING_SYSTEM, "code": finding.code, "display": finding.display}]
    for snomed, depends_on in terminology.snomed_outcomes.get(finding.code, ()):
        if depends_on is None or depends_on == gfr_category:
            codings.append({"system": SNOMED, "code": snomed})
    return {"coding": codings, "text": finding.display}


def build_risk_assessment(
    assessment: Assessment, terminology: Terminology, rules: RuleSet, device_ref: str
) -> RiskAssessment:
    advice = rules.advice
    predictions = [
        {
            "outcome": _finding_concept(f, terminology, assessment.gfr_category),
            "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY_SYSTEM, "code": "high"}]},
            "rationale": finding_sentence(f, rules),
        }
        for f in assessment.findings
    ]
    notes = [
        f"GFR category: {assessment.gfr_category or 'not determined'}; "
        f"iron band: {assessment.iron_band} ({iron_band_text(assessment, advice)})."
    ]
    notes.extend(
        f"{a.display}: {display_units(a.note) if a.note else advice.get(a.code, '')}" for a in assessment.advisories
    )
    if assessment.not_evaluable:
        counts: dict[str, int] = {}
        for item in assessment.not_evaluable:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        notes.append("Not used: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) + ".")
    summary = (
        "; ".join(finding_head(f) for f in assessment.findings) or "No secondary-cause finding on the usable results"
    )
    return RiskAssessment(
        text=narrative(
            f"RLS secondary-cause screen as of {assessment.as_of.isoformat()} "
            f"(rule set {assessment.rule_set_id} {assessment.rule_set_version}): {summary}.",
            *[finding_sentence(f, rules) for f in assessment.findings],
            *notes,
        ),
        identifier=[{"system": RISK_ASSESSMENT_ID_SYSTEM, "value": risk_assessment_identifier(assessment)}],
        status="final",
        subject={"reference": assessment.patient},
        occurrenceDateTime=assessment.as_of.isoformat(),
        method={
            "coding": [
                {
                    "system": RULESET_SYSTEM,
                    "code": f"{assessment.rule_set_id}-{assessment.rule_set_version}",
                    "display": f"{assessment.rule_set_id} {assessment.rule_set_version}",
                }
            ],
            "text": f"Rule set {assessment.rule_set_id} {assessment.rule_set_version}",
        },
        performer={"reference": device_ref},
        basis=[{"reference": r.reference} for r in assessment.used_observations] or None,
        prediction=predictions or None,
        note=[{"text": text} for text in notes],
    )


def flag_text(finding: Finding, rules: RuleSet) -> str:
    """One short line a clinician sees in the EHR's flag list: the value against its own threshold (D23)."""
    measured = [v for v in finding.values if not v.computed] or list(finding.values)
    shown = f": {value_phrase(measured[0])}" if measured else ""
    own = threshold_for(measured[0], finding.thresholds) if measured else None
    first = own or (finding.thresholds[0] if finding.thresholds and not measured else None)
    sources = sources_text(rules, finding.citations)
    closing = f" (threshold {threshold_text(first, named=own is None)}; {sources})" if first else f" ({sources})"
    return f"RLS screen: {finding.display}{shown}{closing}"


def build_flag(
    assessment: Assessment,
    finding: Finding,
    terminology: Terminology,
    rules: RuleSet,
    *,
    device_ref: str,
    risk_assessment_ref: str,
    start: date,
) -> Flag:
    patient_id = assessment.patient.removeprefix("Patient/")
    concept = _finding_concept(finding, terminology, assessment.gfr_category)
    concept["text"] = flag_banner_text(finding)  # short enough for an EHR banner; the detail is the narrative
    advice = advice_for(finding, rules.advice)
    return Flag(
        text=narrative(flag_text(finding, rules), advice or ""),
        identifier=[{"system": FLAG_ID_SYSTEM, "value": flag_identifier(patient_id, finding.code)}],
        status="active",
        category=[{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "lab", "display": "Lab"}]}],
        code=concept,
        subject={"reference": assessment.patient},
        period={"start": start.isoformat()},
        author={"reference": device_ref},
        extension=[{"url": FLAG_DETAIL_EXTENSION, "valueReference": {"reference": risk_assessment_ref}}],
    )


def deactivated_flag(existing: Mapping[str, Any], end: date) -> dict[str, Any]:
    flag = {k: v for k, v in existing.items() if k not in ("meta", "text")}
    flag["status"] = "inactive"
    flag["text"] = narrative(f"Inactive since {end.isoformat()}: {(flag.get('code') or {}).get('text', '')}")
    period = dict(flag.get("period") or {})
    start = period.get("start")
    if not start or str(start)[:10] > end.isoformat():
        period["start"] = end.isoformat()
    period["end"] = end.isoformat()
    flag["period"] = period
    return to_json(Flag.model_validate(flag))


def build_service_request(
    assessment: Assessment, *, rules: RuleSet, device_ref: str, risk_assessment_ref: str, status: str
) -> ServiceRequest:
    patient_id = assessment.patient.removeprefix("Patient/")
    cite = sources_text(rules, rules.cite(rules.iron.missing_studies.citations))  # the rule set's guideline names
    return ServiceRequest(
        text=narrative(f"Proposal ({status}): {IRON_STUDIES_TEXT}. Reason: RLS with iron studies missing ({cite})."),
        identifier=[{"system": SERVICE_REQUEST_ID_SYSTEM, "value": service_request_identifier(patient_id)}],
        status=status,
        intent="proposal",
        category=[{"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}],
        code={"text": IRON_STUDIES_TEXT},
        subject={"reference": assessment.patient},
        authoredOn=assessment.as_of.isoformat(),
        requester={"reference": device_ref},
        reasonCode=[
            {
                "coding": [
                    {
                        "system": FINDING_SYSTEM,
                        "code": "missing-iron-studies",
                        "display": "Iron studies missing",
                    }
                ],
                "text": f"RLS: iron studies missing ({cite}: iron studies for every patient with RLS)",
            }
        ],
        supportingInfo=[{"reference": risk_assessment_ref}],
    )


def _flag_semantics(flag: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a Flag says, without the link to the latest RiskAssessment (which changes every run)."""
    code = flag.get("code") or {}
    return (
        flag.get("status"),
        code.get("text"),
        str((flag.get("period") or {}).get("start", ""))[:10],
        (flag.get("period") or {}).get("end"),
    )


def plan_writeback(
    assessment: Assessment,
    existing: ExistingState,
    *,
    terminology: Terminology,
    rules: RuleSet,
    recorded: datetime,
    device_ref: str,
) -> WritePlan:
    """Decide what to write and build the one transaction Bundle (or none when nothing changes).

    ``device_ref`` is the module's Device on the server (``ensure_device``): created once, outside
    the per-patient transactions, because concurrent conditional creates of one shared resource race.
    """
    patient_id = assessment.patient.removeprefix("Patient/")
    ra_identifier = risk_assessment_identifier(assessment)
    device_url = device_ref
    ra_url = _urn("risk-assessment", ra_identifier)
    ra_conditional = f"RiskAssessment?identifier={RISK_ASSESSMENT_ID_SYSTEM}|{ra_identifier}"
    entries: list[dict[str, Any]] = []
    changes: list[str] = []
    targets: list[str] = []

    if not existing.risk_assessment_exists:
        risk_assessment = build_risk_assessment(assessment, terminology, rules, device_url)
        entries.append(
            {
                "fullUrl": ra_url,
                "resource": to_json(risk_assessment),
                "request": {
                    "method": "POST",
                    "url": "RiskAssessment",
                    "ifNoneExist": ra_conditional.split("?", 1)[1],
                },
            }
        )
        changes.append(f"RiskAssessment ({len(assessment.findings)} finding(s))")
        targets.append(ra_url)
    # Flags and the ServiceRequest point at the RiskAssessment: a new one via its fullUrl, an existing
    # one by conditional reference, which the server resolves inside the transaction.
    ra_ref = ra_url if not existing.risk_assessment_exists else ra_conditional

    present = {f.code: f for f in assessment.findings}
    for code, finding in present.items():
        old = existing.flags.get(code)
        start = assessment.as_of
        if old is not None and old.get("status") == "active":
            start = date.fromisoformat(str((old.get("period") or {}).get("start", assessment.as_of.isoformat()))[:10])
        flag = to_json(
            build_flag(
                assessment,
                finding,
                terminology,
                rules,
                device_ref=device_url,
                risk_assessment_ref=ra_ref,
                start=start,
            )
        )
        if old is not None and _flag_semantics(old) == _flag_semantics(flag):
            continue
        identifier = flag_identifier(patient_id, code)
        url = _urn("flag", patient_id, code)
        entries.append(
            {
                "fullUrl": url,
                "resource": flag,
                "request": {"method": "PUT", "url": f"Flag?identifier={FLAG_ID_SYSTEM}|{identifier}"},
            }
        )
        changes.append(f"Flag {code} ({'updated' if old else 'new'}, active)")
        targets.append(url)
    for code, old in sorted(existing.flags.items()):
        if code in present or old.get("status") != "active":
            continue
        url = _urn("flag", patient_id, code)
        entries.append(
            {
                "fullUrl": url,
                "resource": deactivated_flag(old, assessment.as_of),
                "request": {
                    "method": "PUT",
                    "url": f"Flag?identifier={FLAG_ID_SYSTEM}|{flag_identifier(patient_id, code)}",
                },
            }
        )
        changes.append(f"Flag {code} (inactive)")
        targets.append(url)

    missing = "missing-iron-studies" in present
    old_request = existing.service_request
    wanted_status = (
        "active" if missing else ("revoked" if old_request and old_request.get("status") == "active" else None)
    )
    if wanted_status and not (old_request and old_request.get("status") == wanted_status):
        request = to_json(
            build_service_request(
                assessment, rules=rules, device_ref=device_url, risk_assessment_ref=ra_ref, status=wanted_status
            )
        )
        url = _urn("service-request", patient_id)
        entries.append(
            {
                "fullUrl": url,
                "resource": request,
                "request": {
                    "method": "PUT",
                    "url": "ServiceRequest?identifier="
                    f"{SERVICE_REQUEST_ID_SYSTEM}|{service_request_identifier(patient_id)}",
                },
            }
        )
        changes.append(f"ServiceRequest iron studies ({wanted_status})")
        targets.append(url)

    if not entries:
        return WritePlan(None, ra_identifier, ())

    provenance = Provenance(
        target=[{"reference": target} for target in targets],
        recorded=recorded.isoformat(),
        activity={"coding": [{"system": DATA_OPERATION_SYSTEM, "code": "CREATE" if not existing.flags else "UPDATE"}]},
        agent=[
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT_SYSTEM, "code": "author", "display": "Author"}]},
                "who": {"reference": device_url, "display": f"rls-screen {__version__}"},
            }
        ],
        entity=[{"role": "source", "what": {"reference": r.reference}} for r in assessment.used_observations] or None,
    )
    entries.append(
        {
            "fullUrl": _urn("provenance", ra_identifier, recorded.isoformat(), *changes),
            "resource": to_json(provenance),
            "request": {"method": "POST", "url": "Provenance"},
        }
    )
    return WritePlan({"resourceType": "Bundle", "type": "transaction", "entry": entries}, ra_identifier, tuple(changes))


def flags_by_code(flags: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Index the patient's Flags carrying our identifier by finding code."""
    indexed: dict[str, Mapping[str, Any]] = {}
    for flag in flags:
        for identifier in flag.get("identifier", []):
            if identifier.get("system") == FLAG_ID_SYSTEM:
                code = str(identifier.get("value", "")).rsplit(".", 1)[-1]
                indexed[code] = flag
    return indexed
