"""The R4 rest-hook Subscriptions of the re-screen, derived from the data contract, and their idempotent upsert.

One Subscription per resource type the contract selects by code (``DataContract.searches``): its
criteria are the contract's own filters, so a result the screening would read is a result that
notifies, and nothing else. Today that is Observation (``combo-code``: the analyte codes, as the
Observation's code or a component's), Condition and Procedure (the ValueSets that change a decision:
RLS, pregnancy, dialysis). MedicationRequest is selected by status only: a Subscription on it would
notify on every prescription of every patient, so medication changes reach the Flags through the next
``screen``, CDS call or ``batch --since`` instead (docs/subscriptions.md).

``upsert`` makes the server hold exactly these: it finds ours by tag and callback, leaves an equal one
alone, updates one that differs (criteria, channel, secret, status), creates a missing one. Run twice,
the second run changes nothing. The secret travels in ``channel.header`` and is never printed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rls_screen.contract import DataContract
from rls_screen.errors import ConfigurationError, InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.rescreen.endpoint import SECRET_HEADER
from rls_screen.urls import is_loopback

TAG_SYSTEM = "https://rls-screen.dev/fhir/CodeSystem/rls-screen-tag"
TAG_CODE = "rescreen-subscription"
PAYLOAD = "application/fhir+json"
CODE_PARAMETERS = frozenset({"code", "combo-code"})
"""Search parameters that select by code: a contract search with one of them becomes a Subscription."""
LIVE_STATUSES = frozenset({"requested", "active"})


@dataclass(frozen=True)
class Change:
    resource_type: str
    action: str
    """created | updated | unchanged | turned off"""
    subscription_id: str


def criteria(contract: DataContract, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Resource type -> R4 criteria (a search URL without base), from the contract's searches by code.
    ``extra`` narrows every criteria (e.g. ``subject=Patient/a,Patient/b`` for a pilot group)."""
    narrowing = "".join(f"&{name}={value}" for name, value in extra)
    return {
        search.resource_type: f"{search.resource_type}?"
        + "&".join(f"{name}={value}" for name, value in search.filters)
        + narrowing
        for search in contract.searches
        if any(name in CODE_PARAMETERS for name, _ in search.filters)
    }


def check_callback(callback: str, allowed: Iterable[str]) -> str:
    """The callback, if the site allowlisted it (RLS_SCREEN_RESCREEN_CALLBACK_ALLOWLIST) and it is https
    (plain http only on loopback): the FHIR server will send patient data there."""
    url = callback.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise InputError("--callback must be an absolute http(s) URL without query, fragment or user name")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InputError("--callback must use https (plain http only on a loopback address)")
    if url not in set(allowed):
        raise ConfigurationError(
            "--callback is not in RLS_SCREEN_RESCREEN_CALLBACK_ALLOWLIST: list the notification URLs this site "
            "uses there first (docs/subscriptions.md)"
        )
    return url


def build(resource_type: str, criteria_text: str, callback: str, secret: str) -> dict[str, Any]:
    """One Subscription (R4 4.0.1), status ``requested`` (the server activates it)."""
    return {
        "resourceType": "Subscription",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": TAG_CODE}]},
        "status": "requested",
        "reason": f"rls-screen: re-screen the patient when a {resource_type} the screening reads is written",
        "criteria": criteria_text,
        "channel": {
            "type": "rest-hook",
            "endpoint": callback,
            "payload": PAYLOAD,
            "header": [f"{SECRET_HEADER}: {secret}"],
        },
    }


def _same(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    channel = existing.get("channel") or {}
    return (
        existing.get("status") in LIVE_STATUSES
        and existing.get("criteria") == wanted["criteria"]
        and {k: channel.get(k) for k in ("type", "endpoint", "payload", "header")} == wanted["channel"]
    )


def _type_of(subscription: Mapping[str, Any]) -> str:
    return str(subscription.get("criteria") or "").split("?", 1)[0]


def ours(client: FhirClient, callback: str) -> list[dict[str, Any]]:
    """The Subscriptions this module registered for this callback (by tag and endpoint)."""
    found = client.search("Subscription", {"_tag": f"{TAG_SYSTEM}|{TAG_CODE}", "url": callback, "_count": "100"})
    return [
        s
        for s in found
        if s.get("resourceType") == "Subscription" and (s.get("channel") or {}).get("endpoint") == callback
    ]


def upsert(client: FhirClient, wanted: Mapping[str, dict[str, Any]], callback: str) -> list[Change]:
    """Make the server hold ``wanted`` (type -> Subscription) for this callback; ours for other types are turned off."""
    existing: dict[str, list[dict[str, Any]]] = {}
    for subscription in ours(client, callback):
        existing.setdefault(_type_of(subscription), []).append(subscription)
    changes: list[Change] = []
    for resource_type, subscription in wanted.items():
        have = existing.pop(resource_type, [])
        if not have:
            created = client.request_json("POST", "Subscription", json_body=subscription, idempotent=False)
            changes.append(Change(resource_type, "created", str(created.get("id", ""))))
            continue
        keep = have[0]
        if _same(keep, subscription):
            changes.append(Change(resource_type, "unchanged", str(keep["id"])))
        else:
            client.request_json("PUT", f"Subscription/{keep['id']}", json_body={**subscription, "id": keep["id"]})
            changes.append(Change(resource_type, "updated", str(keep["id"])))
        existing[resource_type] = have[1:]  # duplicates: turned off below
    for resource_type, leftovers in existing.items():
        for subscription in leftovers:
            changes.append(_turn_off(client, resource_type, subscription))
    return changes


def turn_off(client: FhirClient, callback: str) -> list[Change]:
    """Turn off every Subscription of ours for this callback (status ``off``: the server stops notifying)."""
    return [_turn_off(client, _type_of(s), s) for s in ours(client, callback)]


def _turn_off(client: FhirClient, resource_type: str, subscription: dict[str, Any]) -> Change:
    if subscription.get("status") == "off":
        return Change(resource_type, "unchanged (off)", str(subscription["id"]))
    client.request_json("PUT", f"Subscription/{subscription['id']}", json_body={**subscription, "status": "off"})
    return Change(resource_type, "turned off", str(subscription["id"]))
