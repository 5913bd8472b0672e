"""The patient-view systemActions: the write-back RiskAssessment and one Flag per finding, as create actions.

The EHR holds neither our Device nor (yet) the RiskAssessment, so references to them are logical
(by identifier), not literal. The resources are the write-back builders' own (``writeback``).
"""

from __future__ import annotations

from typing import Any

from rls_screen import __version__
from rls_screen.cds.models import Action
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment
from rls_screen.wording import sources_text
from rls_screen.writeback import (
    DEVICE_ID_SYSTEM,
    DEVICE_IDENTIFIER,
    RISK_ASSESSMENT_ID_SYSTEM,
    build_flag,
    build_risk_assessment,
    risk_assessment_identifier,
    to_json,
)


def system_actions(assessment: Assessment, knowledge: Knowledge) -> list[Action]:
    """Create actions for the RiskAssessment and each finding's Flag (none without findings)."""
    if not assessment.findings:
        return []
    terminology, rules = knowledge.terminology, knowledge.ruleset
    device: dict[str, Any] = {
        "identifier": {"system": DEVICE_ID_SYSTEM, "value": DEVICE_IDENTIFIER},
        "display": f"rls-screen {__version__}",
    }
    ra_reference: dict[str, Any] = {
        "type": "RiskAssessment",
        "identifier": {"system": RISK_ASSESSMENT_ID_SYSTEM, "value": risk_assessment_identifier(assessment)},
    }
    risk = to_json(build_risk_assessment(assessment, terminology, rules, "Device/rls-screen"))
    risk["performer"] = device
    actions = [
        Action(
            type="create",
            description=f"Record the RLS secondary-cause screen ({len(assessment.findings)} finding(s))",
            resource=risk,
        )
    ]
    for finding in assessment.findings:
        flag = to_json(
            build_flag(
                assessment,
                finding,
                terminology,
                rules,
                device_ref="Device/rls-screen",
                risk_assessment_ref="RiskAssessment/placeholder",
                start=assessment.as_of,
            )
        )
        flag["author"] = device
        for extension in flag.get("extension", []):
            if "valueReference" in extension:
                extension["valueReference"] = ra_reference
        source = f" ({sources_text(rules, finding.citations[:1])})" if finding.citations else ""
        actions.append(Action(type="create", description=f"Flag: {finding.display}{source}", resource=flag))
    return actions
