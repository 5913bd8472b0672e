"""``rls-screen subscribe --callback URL``: register (or update) the re-screen Subscriptions on the FHIR server.

Idempotent: run it again with the same settings and nothing changes; change the secret, the codes
(a new rule set or site ConceptMap) or ``--filter`` and the Subscriptions are updated in place.
``--off`` turns them off. Prints one line per Subscription, never the secret (docs/subscriptions.md).
"""

from __future__ import annotations

import argparse

from rls_screen.errors import ConfigurationError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.rescreen import subscriptions
from rls_screen.rescreen.settings import get_rescreen_settings
from rls_screen.settings import get_settings

SUBSCRIBE_SCOPES = "system/Subscription.crus"
"""SMART v2 scope to search, read, create and update Subscriptions (no patient data is read)."""


def filter_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip() or any(c in text for c in "&?# "):
        raise argparse.ArgumentTypeError("expected NAME=VALUE (one search parameter, e.g. subject=Patient/p1)")
    return name.strip(), value.strip()


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    rescreen = get_rescreen_settings()
    callback = subscriptions.check_callback(args.callback, rescreen.callbacks)
    client = FhirClient.from_settings(settings, args.fhir_url, scopes=SUBSCRIBE_SCOPES)
    try:
        if args.off:
            changes = subscriptions.turn_off(client, callback)
        else:
            if rescreen.secret is None:
                raise ConfigurationError(
                    "RLS_SCREEN_RESCREEN_SECRET is not set: the notifications need the secret the service checks"
                )
            knowledge = load_knowledge(settings.conceptmap_dir)
            wanted = {
                resource_type: subscriptions.build(resource_type, text, callback, rescreen.secret.get_secret_value())
                for resource_type, text in subscriptions.criteria(knowledge.contract, args.filter).items()
            }
            if args.dry_run:
                for resource_type, subscription in wanted.items():
                    print(f"{resource_type}: criteria {subscription['criteria']}")
                print("Dry run: nothing was sent.")
                return 0
            changes = subscriptions.upsert(client, wanted, callback)
    finally:
        client.close()
    if not changes:
        print(f"No Subscriptions of rls-screen for {callback}.")
    for change in changes:
        print(f"{change.resource_type}: Subscription/{change.subscription_id} {change.action}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "subscribe",
        help="register the re-screen Subscriptions (rest-hook) on the FHIR server",
        description="Create or update, idempotently, one R4 rest-hook Subscription per resource type of the data "
        "contract that is selected by code (Observation, Condition, Procedure), notifying CALLBACK (the "
        "/rescreen/notification endpoint of rls-screen serve) with the RLS_SCREEN_RESCREEN_SECRET header.",
    )
    parser.add_argument(
        "--callback",
        required=True,
        help="notification URL, e.g. https://rls.example.org/rescreen/notification "
        "(must be listed in RLS_SCREEN_RESCREEN_CALLBACK_ALLOWLIST)",
    )
    parser.add_argument("--fhir-url", help="FHIR base URL (default: FHIR_BASE_URL)")
    parser.add_argument(
        "--filter",
        type=filter_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="narrow every criteria by one more search parameter (repeatable), e.g. subject=Patient/a,Patient/b",
    )
    parser.add_argument("--off", action="store_true", help="turn this callback's Subscriptions off")
    parser.add_argument("--dry-run", action="store_true", help="print the criteria, send nothing")
    parser.set_defaults(run=run)
