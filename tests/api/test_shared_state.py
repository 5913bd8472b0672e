"""Two replicas of the service on one PostgreSQL state store (RLS_SCREEN_STATE_URL): what one learns, both know.

Each app below has its own pool, as two pods do: a token used on one is a replay on the other, and an
override sent to one hides the card on the other. /ready reports the state store it pings; with the store
gone, a call is refused (the replay check fails closed) and /ready answers 503.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.helpers import NORMAL, PATIENT_VIEW, Ehr, ServerFactory, full_prefetch, labs, patient_view_request

from rls_screen.cds.feedback import FeedbackStore
from rls_screen.state import open_database, parse_state_url, recorded_versions

pytestmark = pytest.mark.net
PUBLIC = "https://cds.example.test"
SERVICE = f"/cds-services/{PATIENT_VIEW}"
IRON = "iron-insufficient-for-rls"


def _cards(ehr: Ehr, patient_id: str) -> list[Any]:
    body = patient_view_request(patient_id, full_prefetch(patient_id, labs(patient_id, **{**NORMAL, "ferritin": 30.0})))
    response = ehr.post(SERVICE, body, token=ehr.token(SERVICE, aud=PUBLIC + SERVICE))
    assert response.status_code == 200, response.text
    cards: list[Any] = response.json()["cards"]
    return cards


def _iron(cards: list[Any]) -> Any:
    return next((c for c in cards if c["source"]["topic"]["code"] == IRON), None)


@pytest.mark.postgres
def test_two_replicas_share_tokens_and_overrides(cds_server: ServerFactory, postgres_url: str) -> None:
    first_server, first = cds_server(public_url=PUBLIC, state_url=postgres_url)
    _, second = cds_server(public_url=PUBLIC, state_url=postgres_url)

    token = first.token(SERVICE, aud=PUBLIC + SERVICE)
    body = patient_view_request("ss1", full_prefetch("ss1", labs("ss1", **NORMAL)))
    assert first.post(SERVICE, body, token=token).status_code == 200
    replay = second.post(SERVICE, body, token=token)
    assert (replay.status_code, replay.content) == (401, b"")

    card = _iron(_cards(first, "ss2"))
    assert card is not None
    path = f"/cds-services/{PATIENT_VIEW}/feedback"
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    answer = second.post(path, {"feedback": [item]}, token=second.token(path, aud=PUBLIC + path))
    assert (answer.status_code, answer.json()) == (200, {})
    assert _iron(_cards(first, "ss2")) is None  # overridden through the other replica: hidden here too

    ready = first.session.get(first_server.base_url + "/ready", timeout=10)
    assert (ready.status_code, ready.json()["checks"]["state-store"]) == (200, "ok (postgresql)")
    db = open_database(parse_state_url(postgres_url))
    try:
        assert recorded_versions(db) == {"cds-feedback": 1, "jwt-replay": 1}
    finally:
        db.close()


def test_a_state_store_gone_fails_closed_and_not_ready(cds_server: ServerFactory, state_url: str) -> None:
    server, ehr = cds_server(public_url=PUBLIC, state_url=state_url)
    assert server.server is not None
    server.server.config.app.state.state_db.close()  # the database gone, as the service sees it
    ready = ehr.session.get(server.base_url + "/ready", timeout=10)
    assert (ready.status_code, ready.json()["checks"]["state-store"]) == (503, "unavailable")
    body = patient_view_request("ss3", full_prefetch("ss3", labs("ss3", **NORMAL)))
    refused = ehr.post(SERVICE, body, token=ehr.token(SERVICE, aud=PUBLIC + SERVICE))
    assert (refused.status_code, refused.content) == (401, b"")  # no replay check, no call


def test_a_state_store_failing_mid_call_still_shows_the_cards(
    cds_server: ServerFactory, state_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The replay check passed, then the store fails: suppression fails open, the clinician gets every card."""
    server, ehr = cds_server(public_url=PUBLIC, state_url=state_url)
    assert server.server is not None
    runtime = server.server.config.app.state.runtime
    broken = open_database(parse_state_url(str(tmp_path / "broken.sqlite3")))
    runtime.store = FeedbackStore(broken, salt="s")
    broken.close()  # only the feedback store's database is gone; the replay cache still answers
    assert _iron(_cards(ehr, "ss4")) is not None
    assert "cards shown without override suppression" in caplog.text
    assert "not recorded" in caplog.text
