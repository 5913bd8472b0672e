"""The repo holds its own clinical specification, and every citation of it resolves.

docs/rules.md and the rule-set file are the whole specification: no file may point at a rules file
outside the repository, and every citation of the form ``docs/rules.md section N`` (or ``sections 1, 2
and 6``, ``sections 1-9``, ``S5``, ``rule D1``, a quoted heading or phrase) must name a numbered
section heading, a rule or a phrase that docs/rules.md really has.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
RULES = REPO / "docs" / "rules.md"

# Not repository content: tool state, virtual environments, build and run output (see .gitignore).
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "target",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        ".run",
        ".tools",
        "build",
        "dist",
        "out",
        "var",
        "node_modules",
    }
)
# Spelt in pieces so that this file does not match itself.
OUTSIDE_POINTERS = ("CLINICAL" + "_RULES", ".." + "/shared", "/work" + "/shared")

CITATION = re.compile(r"docs/rules\.md")
SEPARATOR = re.compile(r"[\s,;]*(?:(?:and|rule)\s+)?")
SECTIONS = re.compile(r"sections?\s+(\d+(?:\s*(?:-|–|,|and)\s*\d+)*)\b")
BARE_SECTION = re.compile(r"\s+(\d+)\b")
RULE = re.compile(r"\(?\b([SDW]\d+)\b\)?")
QUOTED = re.compile(r'"([A-Za-z][^"]{2,80})"')
TAIL_CHARS = 160


def repo_files() -> Iterator[Path]:
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name in SKIPPED_DIRS:  # a worktree's .git is a file
                continue
            path = Path(root) / name
            head = path.read_bytes()[:8192]
            if b"\0" not in head:  # text files only
                yield path


@cache
def rules_text() -> str:
    return RULES.read_text(encoding="utf-8")


@cache
def rules_sections() -> frozenset[int]:
    return frozenset(int(n) for n in re.findall(r"^## (\d+)\. ", rules_text(), re.MULTILINE))


@cache
def rules_ids() -> frozenset[str]:
    """Rules docs/rules.md defines: table rows ``| S1 status |`` and bold ``**D1 Reference resolution**``."""
    text = rules_text()
    return frozenset(re.findall(r"^\| (S\d+) ", text, re.MULTILINE) + re.findall(r"\*\*([DW]\d+) ", text))


def _normalised(text: str) -> str:
    return " ".join(text.replace("*", "").replace("`", "").split()).lower()


def _numbers(listed: str) -> list[int]:
    """'1, 2 and 6' -> [1, 2, 6]; '1-9' -> [1, ..., 9]."""
    numbers: list[int] = []
    for part in re.split(r"\s*(?:,|and)\s*", listed):
        bounds = re.split(r"\s*[-–]\s*", part)
        numbers.extend(range(int(bounds[0]), int(bounds[-1]) + 1))
    return numbers


def citation_problems(text: str) -> list[str]:
    """What each ``docs/rules.md ...`` citation in ``text`` names that docs/rules.md does not have."""
    problems = []
    phrases = _normalised(rules_text())
    for match in CITATION.finditer(text):
        tail = text[match.end() : match.end() + TAIL_CHARS]
        shown = " ".join(("docs/rules.md" + tail).split())[:70]
        bare = BARE_SECTION.match(tail)
        if bare and int(bare.group(1)) not in rules_sections():
            problems.append(f"no section {bare.group(1)}: {shown!r}")
        position = re.match(r"[\s,:(]*", tail)
        at = position.end() if position else 0
        while True:
            for pattern in (SECTIONS, RULE, QUOTED):
                found = pattern.match(tail, at)
                if found is None:
                    continue
                if pattern is SECTIONS:
                    missing = [n for n in _numbers(found.group(1)) if n not in rules_sections()]
                    problems.extend(f"no section {n}: {shown!r}" for n in missing)
                elif pattern is RULE and found.group(1) not in rules_ids():
                    problems.append(f"no rule {found.group(1)}: {shown!r}")
                elif pattern is QUOTED and _normalised(found.group(1)) not in phrases:
                    problems.append(f"no text {found.group(1)!r}: {shown!r}")
                break
            else:
                break
            separator = SEPARATOR.match(tail, found.end())
            at = separator.end() if separator else found.end()
    return problems


def file_problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    outside = [f"mentions {pointer}" for pointer in OUTSIDE_POINTERS if pointer in text]
    return outside + citation_problems(text)


def _file_params() -> list[object]:
    return [pytest.param(path, id=path.relative_to(REPO).as_posix()) for path in repo_files()]


@pytest.mark.parametrize("path", _file_params())
def test_file_points_inside_the_repo_and_its_citations_resolve(path: Path) -> None:
    assert file_problems(path) == []


def test_rules_has_every_numbered_section_and_rule() -> None:
    assert rules_sections() == frozenset(range(1, 12))
    assert {f"S{n}" for n in range(1, 7)} | {"D1", "D2"} | {f"W{n}" for n in range(1, 14)} <= rules_ids()
    for heading in ("## Scope", "## Project choices", "## Citations"):
        assert re.search(rf"^{heading}$", rules_text(), re.MULTILINE), heading


def test_the_whole_repo_is_checked() -> None:
    files = {path.relative_to(REPO).as_posix() for path in repo_files()}
    assert {"README.md", "docs/rules.md", "mappings/units.json", "service/rls_screen/synth/patient.py"} <= files
    assert not any(part in SKIPPED_DIRS for name in files for part in name.split("/"))
    cited = sum(len(CITATION.findall(path.read_text(encoding="utf-8", errors="replace"))) for path in repo_files())
    assert cited > 100  # the data files, code and tests cite docs/rules.md throughout


DOC = "docs/rules" + ".md"  # built, so that the bad examples below are not citations of this file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'"source": "{DOC} section 7",', []),
        (f"({DOC} section 1, S2).", []),
        (f"({DOC} sections 1-9).", []),
        (f"{DOC} sections 1, 2 and 6, as written", []),
        (f"({DOC} section 10, rule D1)", []),
        (f'{DOC} S4, S5, section 6 "match on code, never on\ndisplay text", section 7 "never guessed"', []),
        (f'({DOC} section 10, "One patient-data contract")', []),
        (f"{DOC} section 12 (S2)", ["no section 12"]),
        (f"{DOC} sections 10-13", ["no section 12", "no section 13"]),
        (f"{DOC} section 11, W4 and W99", ["no rule W99"]),
        (f"{DOC} section 2, S9 and D99", ["no rule S9", "no rule D99"]),
        (f"{DOC} 12", ["no section 12"]),
        (f'{DOC}, "no such heading"', ["no text 'no such heading'"]),
    ],
)
def test_citation_parser(text: str, expected: list[str]) -> None:
    assert [problem.split(":")[0] for problem in citation_problems(text)] == expected
