"""Which finding a clinician sees first: the one order for cards, Flags, the panel worklist and the app.

A finding's role comes from CodeSystem rls-finding (property ``role``, terminology/), so a new rule set
adds its findings as data: established causes of RLS first, then findings related to one (consider their
cause), then a missing test RLS guidelines ask for, then mimics and aggravators that are not established
causes (docs/rules.md). Within a role, the higher graded severity comes first, then the CodeSystem's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from rls_screen.codesets import CodeConcept

ROLE_ORDER: tuple[str, ...] = ("established-cause", "related", "test-to-consider", "mimic-or-aggravator")
"""Roles in the order a clinician should see them."""

SEVERITY_ORDER: tuple[str, ...] = (
    "grade-4",
    "grade-3",
    "severe",
    "grade-2",
    "moderate",
    "grade-1-2",
    "grade-1",
    "mild",
)
"""Graded severities, highest first: CTCAE v5.0 grades (electrolytes) and WHO 2024 anaemia bands."""


class Ranked(Protocol):
    """What the order reads: a ``model.Finding``, or a finding as the batch job store keeps it."""

    @property
    def code(self) -> str: ...

    @property
    def severity(self) -> str | None: ...


R = TypeVar("R", bound=Ranked)


def role_of(code: str, concepts: Mapping[str, CodeConcept]) -> str:
    """The finding's role; a code with none (advisories, an unknown code) ranks after every role."""
    concept = concepts.get(code)
    return concept.role if concept is not None else ""


def finding_priority(finding: Ranked, concepts: Mapping[str, CodeConcept]) -> tuple[int, int, int]:
    """A sort key: lower comes first (role, then severity, then the CodeSystem's order of codes)."""
    role = role_of(finding.code, concepts)
    role_rank = ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)
    severity = finding.severity or ""
    severity_rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    codes = list(concepts)
    code_rank = codes.index(finding.code) if finding.code in concepts else len(codes)
    return (role_rank, severity_rank, code_rank)


def by_priority(findings: Iterable[R], concepts: Mapping[str, CodeConcept]) -> list[R]:
    """The findings, most important first (stable: equal keys keep their order)."""
    return sorted(findings, key=lambda finding: finding_priority(finding, concepts))
