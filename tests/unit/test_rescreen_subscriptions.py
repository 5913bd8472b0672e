"""The re-screen Subscriptions derive from the data contract; the callback must be the site's; --since parses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rls_screen.errors import ConfigurationError, InputError
from rls_screen.knowledge import load_knowledge
from rls_screen.rescreen import subscriptions
from rls_screen.rescreen.since import LAST, parse_since

pytestmark = pytest.mark.unit
CALLBACK = "https://rls.example.org/rescreen/notification"


def test_criteria_are_the_contracts_searches_by_code() -> None:
    contract = load_knowledge().contract
    criteria = subscriptions.criteria(contract)
    assert sorted(criteria) == ["Condition", "Observation", "Procedure"]  # MedicationRequest: by status only
    searches = {s.resource_type: s for s in contract.searches}
    for resource_type, text in criteria.items():
        assert text == f"{resource_type}?" + "&".join(f"{n}={v}" for n, v in searches[resource_type].filters)
    ferritin = "http://loinc.org|2276-4"
    assert ferritin in criteria["Observation"].split("=", 1)[1].split(",")
    assert criteria["Observation"].startswith("Observation?combo-code=")  # a panel's component notifies too


def test_a_filter_narrows_every_criteria() -> None:
    criteria = subscriptions.criteria(load_knowledge().contract, [("subject", "Patient/a,Patient/b")])
    assert all(text.endswith("&subject=Patient/a,Patient/b") for text in criteria.values())


def test_the_subscription_carries_the_secret_header_and_a_full_resource_payload() -> None:
    built = subscriptions.build("Observation", "Observation?code=x|y", CALLBACK, "s" * 40)
    assert built["channel"] == {
        "type": "rest-hook",
        "endpoint": CALLBACK,
        "payload": "application/fhir+json",
        "header": [f"X-Rls-Screen-Secret: {'s' * 40}"],
    }
    assert built["status"] == "requested"


@pytest.mark.parametrize(
    ("callback", "error"),
    [
        (CALLBACK, None),
        (CALLBACK + "/", None),
        ("https://evil.example/rescreen/notification", ConfigurationError),  # not the site's
        ("http://rls.example.org/rescreen/notification", InputError),  # plain http off loopback
        (CALLBACK + "?x=1", InputError),
        ("https://user@rls.example.org/rescreen/notification", InputError),
    ],
)
def test_only_an_allowlisted_callback_is_registered(callback: str, error: type[Exception] | None) -> None:
    allowed = (CALLBACK, "http://127.0.0.1:8090/rescreen/notification")
    if error is None:
        assert subscriptions.check_callback(callback, allowed) == CALLBACK
    else:
        with pytest.raises(error):
            subscriptions.check_callback(callback, allowed)


def test_since_takes_last_a_zoned_time_or_a_date() -> None:
    assert parse_since("last") == LAST
    assert parse_since("2026-12-01T08:00:00Z") == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(InputError, match="time zone"):
        parse_since("2026-12-01T08:00:00")
    with pytest.raises(InputError):
        parse_since("yesterday")
