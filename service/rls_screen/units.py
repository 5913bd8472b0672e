"""Unit conversion to each analyte's canonical unit, from the table in ``mappings/units.json``.

Conversion starts from ``Quantity.code`` when ``Quantity.system`` is UCUM. Without a UCUM code, the
free-text ``Quantity.unit`` is accepted only when it is exactly one of the analyte's UCUM codes (D6: the
result then says "unit read from text") or is listed in the explicit alias table (docs/rules.md section
7). Anything else is "unit not understood": never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from rls_screen.codesets import UCUM
from rls_screen.errors import ConfigurationError

UnitSource = Literal["ucum-code", "unit-text", "unit-alias", "unitless"]
UNIT_READ_FROM_TEXT = "unit read from text"
"""D6 (docs/rules.md section 7): what the output says when the unit came from ``Quantity.unit`` text."""


@dataclass(frozen=True, slots=True)
class Factor:
    """``canonical = value * number`` or ``value / number``, then ``+ offset``, kept as the spec writes it.

    The offset makes a conversion affine (W8: HbA1c % = mmol/mol / 10.929 + 2.15); it is still increasing,
    so a bound stays a bound of the same direction.
    """

    operation: Literal["multiply", "divide"]
    number: float
    offset: float = 0.0

    def apply(self, value: float) -> float:
        scaled = value * self.number if self.operation == "multiply" else value / self.number
        return scaled + self.offset

    def invert(self, value: float) -> float:
        """From the canonical unit back to this unit (used by tests and the synthetic panel)."""
        shifted = value - self.offset
        return shifted / self.number if self.operation == "multiply" else shifted * self.number


@dataclass(frozen=True, slots=True)
class Converted:
    value: float
    unit: str
    """The canonical UCUM unit."""
    source_unit: str
    """The UCUM unit the value was reported in."""
    via: UnitSource


@dataclass(frozen=True, slots=True)
class UnitProblem:
    detail: str


@dataclass(frozen=True)
class UnitTable:
    version: str
    canonical_unit: Mapping[str, str]
    factors: Mapping[str, Mapping[str, Factor]]
    aliases: Mapping[str, str]
    unitless: Mapping[str, str] = field(default_factory=dict)
    """Analyte -> the unit a Quantity with no unit at all (or a ``valueInteger``) is read in (W13: a score)."""

    def resolve_unit(self, analyte: str, quantity: Mapping[str, Any]) -> tuple[str, UnitSource] | UnitProblem:
        """The UCUM unit of a Quantity for this analyte, or why it cannot be known."""
        known = self.factors.get(analyte)
        if known is None:
            return UnitProblem(f"no unit table for {analyte}")
        code, system, text = quantity.get("code"), quantity.get("system"), quantity.get("unit")
        code = code if isinstance(code, str) else None
        text = text if isinstance(text, str) else None
        if code and system == UCUM:
            if code in known:
                return code, "ucum-code"
            return UnitProblem(f"UCUM unit '{code}' is not a unit this module converts for {analyte}")
        # A code from another unit system is not UCUM (and FHIR requires a system with a code): only the
        # free text is left, and only through the exact-UCUM or alias rules.
        for candidate in (text,):
            if not isinstance(candidate, str) or not candidate:
                continue
            if candidate in known:
                return candidate, "unit-text"
            alias = self.aliases.get(candidate)
            if alias is not None and alias in known:
                return alias, "unit-alias"
        shown = text or code
        if shown:
            return UnitProblem(f"unit '{shown}' is not understood for {analyte}")
        unitless = self.unitless.get(analyte)
        if unitless is not None:  # W13: a score reported without a unit
            return unitless, "unitless"
        return UnitProblem(f"no unit given for {analyte}")

    def to_canonical(self, analyte: str, value: float, quantity: Mapping[str, Any]) -> Converted | UnitProblem:
        # Fast path for the common case (a UCUM code this analyte converts): one lookup, same answer as
        # ``resolve_unit`` gives for it; everything else goes through ``resolve_unit``.
        known = self.factors.get(analyte)
        code = quantity.get("code")
        if known is not None and type(code) is str and code and quantity.get("system") == UCUM:
            factor = known.get(code)
            if factor is not None:
                return Converted(factor.apply(value), self.canonical_unit[analyte], code, "ucum-code")
        resolved = self.resolve_unit(analyte, quantity)
        if isinstance(resolved, UnitProblem):
            return resolved
        unit, via = resolved
        factor = self.factors[analyte][unit]
        return Converted(factor.apply(value), self.canonical_unit[analyte], unit, via)


def parse_unit_table(raw: Mapping[str, Any], source: str = "units.json") -> UnitTable:
    canonical: dict[str, str] = {}
    factors: dict[str, dict[str, Factor]] = {}
    unitless: dict[str, str] = {}
    for analyte, spec in raw.get("analytes", {}).items():
        canonical[analyte] = spec["canonicalUnit"]
        table: dict[str, Factor] = {}
        for conversion in spec["conversions"]:
            multiply, divide = conversion.get("multiply"), conversion.get("divide")
            if (multiply is None) == (divide is None):
                raise ConfigurationError(f"{source}: {analyte} {conversion.get('from')}: give multiply or divide")
            number = multiply if multiply is not None else divide
            if not isinstance(number, int | float) or number <= 0:
                raise ConfigurationError(f"{source}: {analyte} {conversion.get('from')}: factor must be > 0")
            offset = conversion.get("add", 0)
            if not isinstance(offset, int | float) or isinstance(offset, bool):
                raise ConfigurationError(f"{source}: {analyte} {conversion.get('from')}: add must be a number")
            operation: Literal["multiply", "divide"] = "multiply" if multiply is not None else "divide"
            table[conversion["from"]] = Factor(operation, float(number), float(offset))
        if canonical[analyte] not in table:
            raise ConfigurationError(f"{source}: {analyte}: the canonical unit needs its own entry")
        factors[analyte] = table
        if "unitless" in spec:
            if spec["unitless"] not in table:
                raise ConfigurationError(f"{source}: {analyte}: the unitless unit needs its own entry")
            unitless[analyte] = spec["unitless"]
    return UnitTable(
        version=str(raw.get("version", "")),
        canonical_unit=canonical,
        factors=factors,
        aliases=dict(raw.get("unitTextAliases", {})),
        unitless=unitless,
    )


def load_unit_table() -> UnitTable:
    entry = resources.files("rls_screen.mappings").joinpath("units.json")
    try:
        raw = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"mappings/units.json: cannot read ({error})") from error
    return parse_unit_table(raw)
