"""The lab's own reference range as text (shown beside our threshold, never deciding)."""

from __future__ import annotations

from typing import Any

import pytest

from rls_screen.observation_fields import reference_range_text

pytestmark = pytest.mark.unit


def _with(range_: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "referenceRange": [range_]}


@pytest.mark.parametrize(
    ("range_", "text"),
    [
        ({"low": {"value": 15}, "high": {"value": 150}}, "15-150 ng/mL"),
        ({"high": {"value": 5.0}}, "<= 5.0 ng/mL"),
        ({"low": {"value": 3.5}}, ">= 3.5 ng/mL"),
        ({"text": "see lab report"}, "see lab report"),
        ({"low": {"unit": "ng/mL"}}, None),
    ],
)
def test_a_range_open_at_one_end_reads_as_a_bound(range_: dict[str, Any], text: str | None) -> None:
    assert reference_range_text(_with(range_), "ng/mL") == text


def test_no_range_gives_no_text() -> None:
    assert reference_range_text({"resourceType": "Observation"}, "ng/mL") is None
