"""Check digits of LOINC codes and SNOMED CT concept ids: they catch typos in codes, not wrong meanings."""

from __future__ import annotations

import re

LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")
SNOMED_CODE = re.compile(r"^[1-9]\d{5,17}$")

_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P1 = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]


def _verhoeff_permutations() -> list[list[int]]:
    # Derived as powers of P1 rather than typed in: a typo in a hand-written table goes unseen.
    table = [list(range(10))]
    for _ in range(7):
        table.append([_VERHOEFF_P1[x] for x in table[-1]])
    return table


_VERHOEFF_P = _verhoeff_permutations()


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (LOINC Users' Guide, appendix: a Luhn check over the number part)."""
    match = LOINC_CODE.match(code)
    if match is None:
        return False
    total = 0
    for position, char in enumerate(reversed(match.group(1))):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(match.group(2))


def snomed_check_digit_ok(code: str) -> bool:
    """The Verhoeff check digit of an SCTID."""
    if SNOMED_CODE.match(code) is None:
        return False
    check = 0
    for position, char in enumerate(reversed(code)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check == 0


def snomed_concept_id_ok(code: str) -> bool:
    """SCTID with a valid check digit and partition 00 or 10 (a concept) (SNOMED CT TIG, SCTID)."""
    return snomed_check_digit_ok(code) and code[-3:-1] in {"00", "10"}
