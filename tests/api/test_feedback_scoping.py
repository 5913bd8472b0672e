"""Feedback is scoped: an override hides a card only for the client (issuer + tenant) that sent it, on
the service that issued the card, for the patient it was about; feedback naming anything else (a
foreign or unknown card, another service, a reason or suggestion the card never offered) is answered
200 {} and recorded nowhere."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.api.helpers import (
    NORMAL,
    ORDER_SIGN,
    PATIENT_VIEW,
    SPEC_ISSUER,
    Ehr,
    LiveServer,
    ServerFactory,
    SigningKey,
    full_prefetch,
    labs,
    patient_view_request,
)

pytestmark = pytest.mark.net
OVERRIDE_SYSTEM = "https://rls-screen.org/fhir/CodeSystem/cds-override-reason"
IRON = "iron-insufficient-for-rls"


def _call(ehr: Ehr, patient_id: str, *, tenant: str | None = None, hook_instance: str | None = None) -> list[Any]:
    body = patient_view_request(patient_id, full_prefetch(patient_id, labs(patient_id, **{**NORMAL, "ferritin": 30.0})))
    if hook_instance:
        body["hookInstance"] = hook_instance
    path = f"/cds-services/{PATIENT_VIEW}"
    response = ehr.post(path, body, token=ehr.token(path, tenant=tenant))
    assert response.status_code == 200, response.text
    cards: list[Any] = response.json()["cards"]
    return cards


def _iron(cards: list[Any]) -> Any:
    return next((c for c in cards if c["source"]["topic"]["code"] == IRON), None)


def _override(
    ehr: Ehr,
    card: str,
    *,
    service: str = PATIENT_VIEW,
    tenant: str | None = None,
    reason: dict[str, Any] | None = None,
) -> requests.Response:
    item: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    item["overrideReason"] = {"reason": reason or {"system": OVERRIDE_SYSTEM, "code": "already-addressed"}}
    path = f"/cds-services/{service}/feedback"
    response = ehr.post(path, {"feedback": [item]}, token=ehr.token(path, tenant=tenant))
    assert (response.status_code, response.json()) == (200, {})  # the same answer, recorded or not
    return response


def _recorded(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute("SELECT count(*) FROM feedback").fetchone()
    return int(count)


@pytest.fixture
def served(cds_server: ServerFactory, tmp_path: Path) -> tuple[LiveServer, Ehr, Path]:
    db = tmp_path / "scoped.sqlite3"
    server, ehr = cds_server(cds_feedback_db=db)
    return server, ehr, db


def test_an_override_by_one_issuer_never_hides_another_issuers_card(
    served: tuple[LiveServer, Ehr, Path], spec_key: SigningKey
) -> None:
    """Issuer B gets a card for the same patient id (its own made-up Condition) and overrides it."""
    _, issuer_a, db = served
    issuer_b = Ehr(issuer_a.base_url, spec_key, issuer=SPEC_ISSUER)
    card_a, card_b = _iron(_call(issuer_a, "sc1")), _iron(_call(issuer_b, "sc1"))
    assert card_a["uuid"] != card_b["uuid"]
    _override(issuer_b, card_a["uuid"])  # A's card, named by B: a foreign card
    assert _recorded(db) == 0
    _override(issuer_b, card_b["uuid"])
    assert _recorded(db) == 1
    assert _iron(_call(issuer_a, "sc1")) is not None
    assert _iron(_call(issuer_b, "sc1")) is None


def test_tenants_of_one_issuer_are_kept_apart(served: tuple[LiveServer, Ehr, Path]) -> None:
    _, ehr, db = served
    card_t1 = _iron(_call(ehr, "sc2", tenant="hospital-1"))
    card_t2 = _iron(_call(ehr, "sc2", tenant="hospital-2"))
    assert card_t1["uuid"] != card_t2["uuid"]
    _override(ehr, card_t1["uuid"], tenant="hospital-2")  # tenant 2 cannot override tenant 1's card
    _override(ehr, card_t1["uuid"])  # nor can the issuer without a tenant
    assert _recorded(db) == 0
    _override(ehr, card_t1["uuid"], tenant="hospital-1")
    assert _iron(_call(ehr, "sc2", tenant="hospital-1")) is None
    assert _iron(_call(ehr, "sc2", tenant="hospital-2")) is not None
    assert _iron(_call(ehr, "sc2")) is not None


def test_feedback_sent_to_another_services_endpoint_records_nothing(served: tuple[LiveServer, Ehr, Path]) -> None:
    _, ehr, db = served
    card = _iron(_call(ehr, "sc3"))
    _override(ehr, card["uuid"], service=ORDER_SIGN)
    assert _recorded(db) == 0
    assert _iron(_call(ehr, "sc3")) is not None


@pytest.mark.parametrize(
    "reason",
    [
        {"system": OVERRIDE_SYSTEM, "code": "made-up-reason"},
        {"system": "https://elsewhere.example/CodeSystem/reasons", "code": "already-addressed"},
        {"code": "already-addressed"},
        {"display": "Already addressed"},
    ],
    ids=["unknown code", "another system", "no system", "no code"],
)
def test_an_override_reason_the_card_never_offered_is_ignored(
    served: tuple[LiveServer, Ehr, Path], reason: dict[str, Any]
) -> None:
    _, ehr, db = served
    card = _iron(_call(ehr, "sc4"))
    assert {"system": OVERRIDE_SYSTEM, "code": "already-addressed"} in [
        {"system": r["system"], "code": r["code"]} for r in card["overrideReasons"]
    ]
    _override(ehr, card["uuid"], reason=reason)
    assert _recorded(db) == 0
    assert _iron(_call(ehr, "sc4")) is not None


def test_an_override_without_a_coded_reason_is_recorded(served: tuple[LiveServer, Ehr, Path]) -> None:
    _, ehr, db = served
    card = _iron(_call(ehr, "sc5"))
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    path = f"/cds-services/{PATIENT_VIEW}/feedback"
    assert ehr.post(path, {"feedback": [item]}).status_code == 200
    assert _recorded(db) == 1
    assert _iron(_call(ehr, "sc5")) is None


def test_an_accepted_suggestion_the_card_never_offered_is_ignored(served: tuple[LiveServer, Ehr, Path]) -> None:
    _, ehr, db = served
    body = patient_view_request("sc6", full_prefetch("sc6", []))  # no labs: the iron-studies card has a suggestion
    card = ehr.call(PATIENT_VIEW, body).json()["cards"][0]
    offered = card["suggestions"][0]["uuid"]
    path = f"/cds-services/{PATIENT_VIEW}/feedback"

    def accept(suggestion: str) -> None:
        item = {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": suggestion}],
            "outcomeTimestamp": "2026-11-20T10:00:00Z",
        }
        assert ehr.post(path, {"feedback": [item]}).json() == {}

    accept(str(uuid.uuid4()))
    assert _recorded(db) == 0
    accept(offered)
    assert _recorded(db) == 1


def test_a_reused_hook_instance_gives_each_patient_its_own_card_uuids(served: tuple[LiveServer, Ehr, Path]) -> None:
    _, ehr, _ = served
    shared = str(uuid.uuid4())
    first, second = _call(ehr, "sc7a", hook_instance=shared), _call(ehr, "sc7b", hook_instance=shared)
    assert not {c["uuid"] for c in first} & {c["uuid"] for c in second}
    _override(ehr, _iron(second)["uuid"])
    assert _iron(_call(ehr, "sc7a")) is not None
    assert _iron(_call(ehr, "sc7b")) is None


def test_an_unknown_card_is_answered_200_and_recorded_nowhere(
    served: tuple[LiveServer, Ehr, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rls_screen.cds")
    _, ehr, db = served
    _override(ehr, str(uuid.uuid4()))
    assert _recorded(db) == 0
    assert any("0 item(s) stored, 1 ignored (unknown-card: 1)" in r.getMessage() for r in caplog.records)


def test_dev_mode_feedback_has_one_fixed_local_scope(cds_server: ServerFactory, tmp_path: Path) -> None:
    server, _ = cds_server(cds_dev_mode=True, cds_feedback_db=tmp_path / "dev.sqlite3")
    session = requests.Session()
    body = patient_view_request("sc8", full_prefetch("sc8", labs("sc8", **{**NORMAL, "ferritin": 30.0})))
    cards = session.post(f"{server.base_url}/cds-services/{PATIENT_VIEW}", json=body, timeout=30).json()["cards"]
    item = {"card": _iron(cards)["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    feedback = session.post(
        f"{server.base_url}/cds-services/{PATIENT_VIEW}/feedback", json={"feedback": [item]}, timeout=30
    )
    assert feedback.status_code == 200
    again = session.post(f"{server.base_url}/cds-services/{PATIENT_VIEW}", json=body, timeout=30).json()["cards"]
    assert _iron(again) is None
