"""Bounds and three-valued threshold tests (docs/rules.md S5), in ``rls_screen.quantities``.

A result "<5" means the true value lies below 5. A test on it is True when every value the bound
allows passes, False when none does, and None (unknown) otherwise. The table below is written out by
hand for a value below, at and above the threshold; a hypothesis property checks the same rule
against sampled true values.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rls_screen.quantities import Bound, all3, any3, format_number, not3

pytestmark = pytest.mark.unit

T = 15.0
BELOW, AT, ABOVE = 10.0, 15.0, 20.0

# (comparator, value) -> {predicate: expected} for threshold 15
TABLE: list[tuple[str | None, float, str, bool | None]] = [
    # exact values
    (None, BELOW, "below", True),
    (None, AT, "below", False),
    (None, ABOVE, "below", False),
    (None, BELOW, "at_most", True),
    (None, AT, "at_most", True),
    (None, ABOVE, "at_most", False),
    (None, BELOW, "above", False),
    (None, AT, "above", False),
    (None, ABOVE, "above", True),
    (None, BELOW, "at_least", False),
    (None, AT, "at_least", True),
    (None, ABOVE, "at_least", True),
    # "<v": the true value is below v
    ("<", BELOW, "below", True),
    ("<", AT, "below", True),  # "<15" is below 15
    ("<", ABOVE, "below", None),
    ("<", BELOW, "at_most", True),
    ("<", AT, "at_most", True),
    ("<", ABOVE, "at_most", None),
    ("<", BELOW, "above", False),
    ("<", AT, "above", False),
    ("<", ABOVE, "above", None),
    ("<", BELOW, "at_least", False),
    ("<", AT, "at_least", False),
    ("<", ABOVE, "at_least", None),
    # "<=v"
    ("<=", BELOW, "below", True),
    ("<=", AT, "below", None),  # could be exactly 15
    ("<=", ABOVE, "below", None),
    ("<=", BELOW, "at_most", True),
    ("<=", AT, "at_most", True),
    ("<=", ABOVE, "at_most", None),
    ("<=", BELOW, "above", False),
    ("<=", AT, "above", False),
    ("<=", ABOVE, "above", None),
    ("<=", BELOW, "at_least", False),
    ("<=", AT, "at_least", None),
    ("<=", ABOVE, "at_least", None),
    # ">v": the true value is above v
    (">", BELOW, "below", None),
    (">", AT, "below", False),
    (">", ABOVE, "below", False),
    (">", BELOW, "at_most", None),
    (">", AT, "at_most", False),
    (">", ABOVE, "at_most", False),
    (">", BELOW, "above", None),
    (">", AT, "above", True),  # ">15" is above 15
    (">", ABOVE, "above", True),
    (">", BELOW, "at_least", None),
    (">", AT, "at_least", True),
    (">", ABOVE, "at_least", True),
    # ">=v"
    (">=", BELOW, "below", None),
    (">=", AT, "below", False),
    (">=", ABOVE, "below", False),
    (">=", BELOW, "at_most", None),
    (">=", AT, "at_most", None),  # could be exactly 15
    (">=", ABOVE, "at_most", False),
    (">=", BELOW, "above", None),
    (">=", AT, "above", None),
    (">=", ABOVE, "above", True),
    (">=", BELOW, "at_least", None),
    (">=", AT, "at_least", True),
    (">=", ABOVE, "at_least", True),
]


@pytest.mark.parametrize(("comparator", "value", "predicate", "expected"), TABLE)
def test_bound_threshold_table(comparator: str | None, value: float, predicate: str, expected: bool | None) -> None:
    bound = Bound(value, comparator)  # type: ignore[arg-type]
    assert getattr(bound, predicate)(T) is expected


def test_table_covers_every_comparator_predicate_and_position() -> None:
    keys = {(c, v, p) for c, v, p, _ in TABLE}
    assert len(keys) == len(TABLE) == 5 * 3 * 4


@pytest.mark.parametrize(
    ("bound", "threshold", "expected"),
    [
        (Bound(5, "<"), 15, True),  # S5: ferritin "<5" is below 15
        (Bound(60, ">"), 90, None),  # S5: eGFR ">60" against G1/G2 is indeterminate
        (Bound(60, ">"), 60, False),  # ...but it is certainly not below 60
        (Bound(90, ">"), 90, False),
    ],
)
def test_spec_examples(bound: Bound, threshold: float, expected: bool | None) -> None:
    assert bound.below(threshold) is expected


def test_is_exact() -> None:
    assert Bound(1.0).is_exact
    assert not Bound(1.0, "<").is_exact


# --- the same rule checked on sampled true values ----------------------------------------------------


def allowed(comparator: str | None, value: float, candidate: float) -> bool:
    return {
        None: candidate == value,
        "<": candidate < value,
        "<=": candidate <= value,
        ">": candidate > value,
        ">=": candidate >= value,
    }[comparator]


PREDICATES = {
    "below": lambda x, t: x < t,
    "at_most": lambda x, t: x <= t,
    "above": lambda x, t: x > t,
    "at_least": lambda x, t: x >= t,
}

small = st.integers(min_value=-20, max_value=20).map(float)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    comparator=st.sampled_from([None, "<", "<=", ">", ">="]),
    value=small,
    threshold=small,
    predicate=st.sampled_from(sorted(PREDICATES)),
)
def test_bound_answers_agree_with_every_allowed_value(
    comparator: str | None, value: float, threshold: float, predicate: str
) -> None:
    answer = getattr(Bound(value, comparator), predicate)(threshold)  # type: ignore[arg-type]
    # on a half-integer grid, the points around value and threshold stand in for every real number
    grid = [x / 2 for x in range(-50, 51)]
    outcomes = {PREDICATES[predicate](x, threshold) for x in grid if allowed(comparator, value, x)}
    expected = outcomes.pop() if len(outcomes) == 1 else None
    assert answer is expected


# --- monotone maps keep bounds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparator", "increasing", "expected"),
    [
        (None, True, None),
        (None, False, None),
        ("<", True, "<"),
        ("<=", True, "<="),
        (">", True, ">"),
        (">=", True, ">="),
        ("<", False, ">"),
        ("<=", False, ">="),
        (">", False, "<"),
        (">=", False, "<="),
    ],
)
def test_map_monotonic_flips_bound_for_decreasing_functions(
    comparator: str | None, increasing: bool, expected: str | None
) -> None:
    mapped = Bound(4.0, comparator).map_monotonic(lambda x: 100 / x, increasing=increasing)  # type: ignore[arg-type]
    assert mapped == Bound(25.0, expected)  # type: ignore[arg-type]


# --- Kleene logic -------------------------------------------------------------------------------------

TRUTHS = [True, False, None]


@pytest.mark.parametrize(("value", "expected"), [(True, False), (False, True), (None, None)])
def test_not3(value: bool | None, expected: bool | None) -> None:
    assert not3(value) is expected


@pytest.mark.parametrize("a", TRUTHS)
@pytest.mark.parametrize("b", TRUTHS)
def test_all3_and_any3_are_kleene(a: bool | None, b: bool | None) -> None:
    if a is False or b is False:
        conjunction = False
    elif a is None or b is None:
        conjunction = None
    else:
        conjunction = True
    if a is True or b is True:
        disjunction = True
    elif a is None or b is None:
        disjunction = None
    else:
        disjunction = False
    assert all3([a, b]) is conjunction
    assert any3([a, b]) is disjunction


def test_empty_all3_any3() -> None:
    assert all3([]) is True
    assert any3([]) is False


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.0, "12"), (0.7, "0.7"), (1.23456, "1.235"), (0.123456, "0.123"), (0.0, "0"), (44.5, "44.5")],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_display_shows_comparator() -> None:
    assert Bound(5.0, "<").display() == "<5"
    assert Bound(60.0, ">=").display() == ">=60"
    assert Bound(2.5).display(2) == "2.50"
    assert Bound(7.0, "<=").display(1) == "<=7.0"
