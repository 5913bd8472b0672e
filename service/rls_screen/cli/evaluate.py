"""``rls-screen evaluate BUNDLE.json``: evaluate one patient's Bundle offline (no server)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rls_screen.assessment import assess
from rls_screen.errors import InputError
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import from_bundle
from rls_screen.report import format_text
from rls_screen.settings import get_settings


def parse_as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in the form YYYY-MM-DD") from error


def read_json_file(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text") from error
    try:
        return json.loads(text)
    except RecursionError:  # thousands of nested arrays or objects: no FHIR Bundle is built that way
        raise InputError(f"{path} is not a FHIR Bundle: its JSON is nested too deeply to read") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from error


def run(args: argparse.Namespace) -> int:
    data = from_bundle(read_json_file(args.bundle))
    knowledge = load_knowledge(get_settings().conceptmap_dir)
    assessment = assess(data, knowledge=knowledge, as_of=args.as_of or date.today())
    if args.format == "json":
        print(json.dumps(assessment.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_text(assessment, knowledge.ruleset))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate one patient's FHIR Bundle offline",
        description="Evaluate a FHIR Bundle (collection, searchset or transaction) holding one Patient "
        "and its Observations against the rule set. Exit 0 even when findings exist.",
    )
    parser.add_argument("bundle", type=Path, help="Bundle JSON file, or - for standard input")
    parser.add_argument("--as-of", type=parse_as_of, help="evaluation date YYYY-MM-DD (default: today)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)
