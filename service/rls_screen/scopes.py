"""The SMART Backend Services scopes each command needs, and whether a token's grant covers them.

Scopes follow SMART App Launch 2.0 (``system/<Type>.<cruds>``): c create, r read, u update, d delete,
s search. What each command does decides what it asks for, so a default configuration works against an
authorization server that grants exactly what is asked and nothing more:

- reading a patient (every command): Patient, Observation, Condition, Procedure, MedicationRequest (rs),
  the data contract's types (contract.CONTRACT_TYPES);
- writing back (``screen``/``batch`` without ``--dry-run``, ``demo``): RiskAssessment (cs: a conditional
  create searches first), Flag and ServiceRequest (crus: conditional update), Provenance (c), Device (cs);
- ``batch --group`` and ``--bulk``: Group (r; $export runs on the Group);
- ``synth --load``: create and update of the panel's types and the Group.

A grant is checked against what the command needs: a token answer that names its granted scopes
(RFC 6749 section 5.1) without one the command needs is an error naming the missing scope and why it is
needed. SMART 1.0 forms (``system/Flag.read``, ``.write``, ``.*``, ``system/*.read``) are understood.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rls_screen.contract import CONTRACT_TYPES

_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
READ_SCOPES = tuple(f"system/{kind}.rs" for kind in CONTRACT_TYPES)
WRITE_BACK_SCOPES = (
    "system/RiskAssessment.cs",
    "system/Flag.crus",
    "system/ServiceRequest.crus",
    "system/Provenance.c",
    "system/Device.cs",
)
GROUP_SCOPES = ("system/Group.r",)
LOAD_SCOPES = tuple(f"system/{kind}.cu" for kind in (*CONTRACT_TYPES, "Group"))
_WHY = {
    "RiskAssessment": "to write the RiskAssessment",
    "Flag": "to write the Flags",
    "ServiceRequest": "to write the iron-studies proposal",
    "Provenance": "to write the Provenance",
    "Device": "to record the module as a Device",
    "Group": "to read the panel's Group",
}


def scopes_for(*, write: bool, group: bool = False, load: bool = False) -> str:
    """The space-separated scope string a command asks for."""
    scopes = list(READ_SCOPES)
    if write:
        scopes += WRITE_BACK_SCOPES
    if group:
        scopes += GROUP_SCOPES
    if load:
        scopes += LOAD_SCOPES
    return " ".join(scopes)


@dataclass(frozen=True)
class _Scope:
    context: str
    resource_type: str
    permissions: frozenset[str]


def _parse(scope: str) -> _Scope | None:
    context, slash, rest = scope.partition("/")
    resource_type, dot, permissions = rest.partition(".")
    if not slash or not dot or not resource_type:
        return None  # launch, openid, fhirUser, ...: not a resource scope
    permissions = permissions.split("?", 1)[0]  # SMART 2.0 granular scopes: the query narrows, ignored here
    letters = _V1_PERMISSIONS.get(permissions, permissions)
    if not letters or set(letters) - set("cruds"):
        return None
    return _Scope(context, resource_type, frozenset(letters))


def missing_scopes(needed: str, granted: str) -> list[str]:
    """The scopes of ``needed`` that ``granted`` does not cover (a wildcard type or a wider grant covers)."""
    grants = [s for s in (_parse(g) for g in granted.split()) if s is not None]
    missing: list[str] = []
    for text in needed.split():
        want = _parse(text)
        if want is None:
            continue
        letters: set[str] = set()
        for grant in grants:
            if grant.context == want.context and grant.resource_type in (want.resource_type, "*"):
                letters |= grant.permissions
        if not want.permissions <= letters:
            missing.append(text)
    return missing


def explain_missing(missing: Iterable[str]) -> str:
    """One line: each missing scope and what the module needs it for."""
    parts = []
    for scope in missing:
        kind = scope.partition("/")[2].partition(".")[0]
        parts.append(f"{scope} ({_WHY.get(kind, 'to read the patient data')})")
    return "the authorization server did not grant " + ", ".join(parts)
