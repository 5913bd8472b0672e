"""The one order of findings (rls_screen.priority): established causes, related, a missing test, mimics."""

from __future__ import annotations

import pytest

from rls_screen.knowledge import load_knowledge
from rls_screen.model import Finding
from rls_screen.priority import ROLE_ORDER, by_priority, role_of

pytestmark = pytest.mark.unit

CONCEPTS = load_knowledge().terminology.concepts


def _finding(code: str, severity: str | None = None) -> Finding:
    return Finding(
        code=code,
        kind="finding",
        display=code,
        rule_id="R",
        rule_set_version="2026.3",
        thresholds=(),
        values=(),
        citations=(),
        severity=severity,
    )


def test_every_finding_code_has_a_known_role() -> None:
    findings = [c for c in CONCEPTS.values() if c.kind == "finding"]
    assert findings
    assert {c.code: c.role for c in findings if c.role not in ROLE_ORDER} == {}


def test_advisories_and_unknown_codes_have_no_role() -> None:
    assert role_of("aggravating-medication", CONCEPTS) == ""
    assert role_of("no-such-code", CONCEPTS) == ""


def test_established_causes_come_before_related_tests_and_mimics() -> None:
    given = [
        _finding("hyperkalemia", "grade-3"),
        _finding("missing-iron-studies"),
        _finding("anemia", "severe"),
        _finding("kidney-failure"),
        _finding("iron-deficiency"),
    ]
    assert [f.code for f in by_priority(given, CONCEPTS)] == [
        "iron-deficiency",
        "kidney-failure",
        "anemia",
        "missing-iron-studies",
        "hyperkalemia",
    ]


def test_within_a_role_the_higher_grade_comes_first() -> None:
    given = [_finding("hypokalemia", "grade-1-2"), _finding("hypomagnesemia", "grade-4"), _finding("hypocalcemia")]
    assert [f.code for f in by_priority(given, CONCEPTS)] == ["hypomagnesemia", "hypokalemia", "hypocalcemia"]


def test_unknown_codes_rank_last() -> None:
    given = [_finding("no-such-code"), _finding("hypocalcemia")]
    assert [f.code for f in by_priority(given, CONCEPTS)] == ["hypocalcemia", "no-such-code"]
