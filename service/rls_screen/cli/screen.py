"""``rls-screen screen --patient ID``: read one patient from FHIR, evaluate, write back."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime

from rls_screen.cli.evaluate import parse_as_of
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.report import format_text
from rls_screen.scopes import scopes_for
from rls_screen.screening import screen_patient
from rls_screen.settings import get_settings


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    client = FhirClient.from_settings(settings, args.fhir_url, scopes=scopes_for(write=not args.dry_run))
    knowledge = load_knowledge(settings.conceptmap_dir)
    try:
        result = screen_patient(
            client,
            args.patient,
            knowledge=knowledge,
            as_of=args.as_of or date.today(),
            recorded=datetime.now(UTC).replace(microsecond=0),
            dry_run=args.dry_run,
        )
    finally:
        client.close()
    print(format_text(result.assessment, knowledge.ruleset))
    print()
    bundle = result.plan.bundle if result.plan else None
    if args.dry_run:
        if bundle is None:
            print("Dry run: nothing would be written (the server already holds this result).")
        else:
            print("Dry run: this transaction would be sent (nothing was written):")
            print(json.dumps(bundle, indent=2, ensure_ascii=False))
    elif result.written and result.plan:
        print(f"Written in one transaction: {'; '.join(result.plan.created)}.")
    else:
        print("Nothing written: the server already holds this result.")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "screen",
        help="screen one patient on a FHIR server and write back the result",
        description="Read one patient's labs from FHIR, evaluate them, and write back a RiskAssessment, "
        "Flags, a ServiceRequest proposal where iron studies are missing, and Provenance in one transaction.",
    )
    parser.add_argument("--patient", required=True, help="Patient id on the FHIR server")
    parser.add_argument("--fhir-url", help="FHIR base URL (default: FHIR_BASE_URL)")
    parser.add_argument("--as-of", type=parse_as_of, help="evaluation date YYYY-MM-DD (default: today)")
    parser.add_argument("--dry-run", action="store_true", help="print the transaction, send nothing")
    parser.set_defaults(run=run)
