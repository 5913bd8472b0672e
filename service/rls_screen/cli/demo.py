"""``rls-screen demo``: the main job on the embedded default.

Loads the deterministic synthetic panel into the FHIR server (local HAPI by default), screens it as
a batch with write-back, and prints the summary, the report path, and how to browse the results.
Re-running is safe: the panel is loaded with PUT (unchanged resources stay as they are) and the
write-back is idempotent.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime

from rls_screen.batch import sources
from rls_screen.batch.jobs import JobStore, job_store_target
from rls_screen.cli.batch import execute_job, positive_int
from rls_screen.errors import FhirUnavailableError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.scopes import scopes_for
from rls_screen.settings import get_settings
from rls_screen.synth import chunked_transaction_bundles, generate_panel, panel_id


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    client = FhirClient.from_settings(settings, args.fhir_url, scopes=scopes_for(write=True, group=True, load=True))
    try:
        client.request("GET", "metadata", params={"_summary": "true"})
    except FhirUnavailableError as error:
        raise FhirUnavailableError(f"{error}. Start the local server with `make fhir-up`.") from error
    as_of = date.today()
    started = time.monotonic()
    panel = generate_panel(args.patients, seed=args.seed, as_of=as_of, id_prefix=args.id_prefix)
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=20):
        client.transaction(bundle)
    group = panel_id(args.id_prefix)
    print(
        f"Loaded the synthetic panel: {len(panel.patients)} patients, Group/{group} "
        f"({time.monotonic() - started:.1f} s) into {client.base_url}"
    )
    knowledge = load_knowledge(settings.conceptmap_dir)
    store = JobStore(job_store_target(settings))
    try:
        members = sources.from_group(client, f"Group/{group}")
        job = store.create_job(
            created=datetime.now(UTC).replace(microsecond=0).isoformat(),
            source=f"group:Group/{group}",
            as_of=as_of,
            dry_run=False,
            fhir_base_url=client.base_url,
        )
        store.add_patients(job.id, members.ids)
        code = execute_job(
            store, job, client, knowledge, None, concurrency=args.concurrency, report_dir=settings.state_dir / "reports"
        )
    finally:
        store.close()
        client.close()
    first = panel.patients[0].patient["id"]
    print(
        "\nBrowse what was written (the server keeps running; `make fhir-down` stops it):\n"
        f"  curl '{client.base_url}/Flag?subject=Patient/{first}'\n"
        f"  curl '{client.base_url}/RiskAssessment?subject=Patient/{first}'\n"
        f"  rls-screen screen --patient {first} --dry-run"
    )
    return code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="load the synthetic panel into the FHIR server, screen it, write back, report",
        description="The main job on the embedded default: synthetic panel -> FHIR server -> batch screening.",
    )
    parser.add_argument("--patients", type=int, default=200, help="panel size (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="synthetic panel seed (default 1)")
    parser.add_argument("--id-prefix", default="demo", help="id prefix of the synthetic resources (default demo)")
    parser.add_argument("--concurrency", type=positive_int, default=4)
    parser.add_argument("--fhir-url", help="FHIR base URL (default: FHIR_BASE_URL)")
    parser.set_defaults(run=run)
