"""Numbers that may be bounds, and three-valued threshold tests on them.

A lab may report "<5" or ">60" (FHIR Quantity.comparator). Such a value is a bound, not a number
(docs/rules.md S5): when the bound decides a threshold test we use it ("ferritin <5" is below 15);
when it cannot ("eGFR >60" against G1/G2), the answer is *unknown*. Unknown is ``None`` here, and the
rules combine answers with Kleene logic (``all3``/``any3``/``not3``), so a missing or indeterminate input
yields an indeterminate finding instead of a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Comparator = Literal["<", "<=", ">", ">="]
Truth = bool | None
"""True, False, or None when the data cannot decide."""

COMPARATORS: frozenset[str] = frozenset({"<", "<=", ">", ">="})
_FLIPPED: dict[Comparator, Comparator] = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Bound:
    """A value, exact when ``comparator`` is None, otherwise a bound: ``x <comparator> value``."""

    value: float
    comparator: Comparator | None = None

    @property
    def is_exact(self) -> bool:
        return self.comparator is None

    def below(self, threshold: float) -> Truth:
        """Is the true value < threshold?"""
        v, c = self.value, self.comparator
        if c is None:
            return v < threshold
        if c == "<":
            return True if v <= threshold else None
        if c == "<=":
            return True if v < threshold else None
        # ">" / ">=": the value is at least v
        return False if v >= threshold else None

    def at_most(self, threshold: float) -> Truth:
        """Is the true value <= threshold?"""
        v, c = self.value, self.comparator
        if c is None:
            return v <= threshold
        if c in ("<", "<="):
            return True if v <= threshold else None
        if c == ">":
            return False if v >= threshold else None
        return False if v > threshold else None  # ">="

    def above(self, threshold: float) -> Truth:
        """Is the true value > threshold?"""
        result = self.at_most(threshold)
        return None if result is None else not result

    def at_least(self, threshold: float) -> Truth:
        """Is the true value >= threshold?"""
        result = self.below(threshold)
        return None if result is None else not result

    def map_monotonic(self, function: Callable[[float], float], *, increasing: bool) -> Bound:
        """Apply a monotonic function; a bound stays a bound, flipped when the function decreases."""
        comparator = self.comparator
        if comparator is not None and not increasing:
            comparator = _FLIPPED[comparator]
        return Bound(function(self.value), comparator)

    def display(self, decimals: int | None = None) -> str:
        value = f"{self.value:.{decimals}f}" if decimals is not None else format_number(self.value)
        return f"{self.comparator or ''}{value}"


def combine_monotonic(function: Callable[..., float], *inputs: tuple[Bound, bool]) -> Bound | None:
    """Apply a function monotonic in each input (``(bound, increasing)``) to bounds.

    Each bound input pushes the result one way: an upper bound on an increasing input (or a lower
    bound on a decreasing one) makes the result an upper bound, and vice versa. When every bound
    pushes the same way the result is a bound that way (strict if any input is strict); when they
    pull in opposite directions nothing can be said and the answer is None.
    """
    directions: set[str] = set()
    strict = False
    for bound, increasing in inputs:
        if bound.comparator is None:
            continue
        upper_input = bound.comparator in ("<", "<=")
        directions.add("upper" if upper_input == increasing else "lower")
        strict = strict or bound.comparator in ("<", ">")
    value = function(*(bound.value for bound, _ in inputs))
    if not directions:
        return Bound(value)
    if len(directions) > 1:
        return None
    if directions == {"upper"}:
        return Bound(value, "<" if strict else "<=")
    return Bound(value, ">" if strict else ">=")


_FORMATTED: dict[float, str] = {}
_FORMATTED_MAX = 4096


def format_number(value: float) -> str:
    """A compact human form: 12.0 -> '12', 0.7 -> '0.7', 1.23456 -> '1.23'."""
    # Lab values repeat (the same few hundred numbers per analyte): remember the text of recent ones.
    # Only exact floats are remembered (an int 1 and a float 1.0 are equal keys but may format alike anyway).
    if type(value) is float:
        text = _FORMATTED.get(value)
        if text is None:
            text = _format_number(value)
            if len(_FORMATTED) >= _FORMATTED_MAX:
                _FORMATTED.clear()
            _FORMATTED[value] = text
        return text
    return _format_number(value)


def _format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.4g}"


def not3(value: Truth) -> Truth:
    return None if value is None else not value


def all3(values: Iterable[Truth]) -> Truth:
    """Kleene AND: False if any is False, else None if any is unknown, else True."""
    unknown = False
    for value in values:
        if value is False:
            return False
        if value is None:
            unknown = True
    return None if unknown else True


def any3(values: Iterable[Truth]) -> Truth:
    """Kleene OR: True if any is True, else None if any is unknown, else False."""
    unknown = False
    for value in values:
        if value is True:
            return True
        if value is None:
            unknown = True
    return None if unknown else False
