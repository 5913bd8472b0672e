"""Two replicas on one state store behind HAProxy: what one replica learns, the other knows.

A JWT's ``jti`` used on one replica is refused on the other (the replay cache is shared), and an
override given through one replica hides the card on the other (the suppression is shared). JWT
verification is on: ES384 tokens from a trusted issuer, ``aud`` = the balancer's URL.
"""

from __future__ import annotations

import pytest
from tests.api.helpers import NORMAL, PATIENT_VIEW, full_prefetch, labs, patient_view_request
from tests.replicas.conftest import Pair

pytestmark = [pytest.mark.replicas, pytest.mark.slow]

SERVICE = f"/cds-services/{PATIENT_VIEW}"
FEEDBACK = f"{SERVICE}/feedback"
OVERRIDE_REASON = {"system": "https://rls-screen.org/fhir/CodeSystem/cds-override-reason", "code": "already-addressed"}


def _iron_deficient(prefix: str) -> dict[str, object]:
    return patient_view_request(prefix, full_prefetch(prefix, labs(prefix, **{**NORMAL, "ferritin": 9.0})))


def test_a_jti_used_on_one_replica_is_refused_on_the_other(pair: Pair, unique_prefix: str) -> None:
    token = pair.ehr.token(SERVICE)
    first = pair.post_to(pair.a, SERVICE, _iron_deficient(unique_prefix), token=token)
    assert first.status_code == 200, pair.logs()
    assert first.json()["cards"]
    replayed = pair.post_to(pair.b, SERVICE, _iron_deficient(unique_prefix), token=token)
    assert replayed.status_code == 401
    assert replayed.content == b""
    # And the other way round, with a new token: the cache is shared, not copied one way.
    other = pair.ehr.token(SERVICE)
    assert pair.post_to(pair.b, SERVICE, _iron_deficient(unique_prefix), token=other).status_code == 200
    assert pair.post_to(pair.a, SERVICE, _iron_deficient(unique_prefix), token=other).status_code == 401
    # Through the balancer (round robin: consecutive calls go to different replicas), fresh tokens pass.
    assert [pair.ehr.call(PATIENT_VIEW, _iron_deficient(unique_prefix)).status_code for _ in range(4)] == [200] * 4


def test_an_override_through_one_replica_hides_the_card_on_the_other(pair: Pair, unique_prefix: str) -> None:
    body = _iron_deficient(unique_prefix)
    (card,) = pair.post_to(pair.a, SERVICE, body).json()["cards"]
    assert card["source"]["topic"]["code"] == "iron-deficiency"
    assert pair.post_to(pair.b, SERVICE, body).json()["cards"], "the card shows on both before the override"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-12-02T03:00:00Z",
                "overrideReason": {"reason": OVERRIDE_REASON},
            }
        ]
    }
    response = pair.post_to(pair.a, FEEDBACK, feedback)
    assert (response.status_code, response.json()) == (200, {}), pair.logs()
    assert pair.post_to(pair.b, SERVICE, _iron_deficient(unique_prefix)).json()["cards"] == []
    assert pair.post_to(pair.a, SERVICE, _iron_deficient(unique_prefix)).json()["cards"] == []
    # Another patient's card is untouched on either replica.
    other = f"{unique_prefix}-other"
    assert pair.post_to(pair.b, SERVICE, _iron_deficient(other)).json()["cards"]
