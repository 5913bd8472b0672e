"""``rls-screen synth``: generate the synthetic RLS panel; write NDJSON / Bundles, or load it.

Generation streams (``rls_screen.synth.iter_patient_records``): each patient is written and/or posted
as it is drawn, so 100k patients never sit in memory at once. This is the only place the synthetic
panel reads the clock (the default ``--as-of`` is today).

Loading posts transaction Bundles (PUT by id: reloading is idempotent) through the shared
``FhirClient`` (allowlist, retries, typed errors). ``--urn-uuid`` writes and loads one Bundle per
patient as Synthea does (``fullUrl: urn:uuid:...``, subjects by urn:uuid; POST by default, which the
server resolves on load but which is not idempotent).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import orjson

from rls_screen import synth
from rls_screen.errors import FhirError, InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.scopes import scopes_for
from rls_screen.settings import get_settings
from rls_screen.synth import Json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a deterministic synthetic RLS patient panel (test data)",
        description=(
            "Generate a deterministic synthetic panel of RLS patients (FHIR R4 Patients, Conditions, "
            "lab Observations, MedicationRequests, Procedures and a Group), with the mess of real lab feeds. "
            "Same arguments, same bytes. "
            "See docs/synthetic-panel.md."
        ),
    )
    parser.add_argument(
        "-n", "--patients", type=_integer, default=200, metavar="N", help="number of patients (default 200)"
    )
    parser.add_argument("--seed", type=_integer, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--as-of",
        type=_iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="the date results are dated back from (default: today)",
    )
    parser.add_argument("--id-prefix", default="syn", help="prefix of every resource id (default 'syn')")
    parser.add_argument("--ndjson", type=Path, metavar="DIR", help="write <Type>.ndjson files (Bulk layout)")
    parser.add_argument("--bundles", type=Path, metavar="DIR", help="write transaction Bundle JSON files")
    parser.add_argument(
        "--patients-per-bundle",
        type=_integer,
        default=None,
        metavar="K",
        help="patients per transaction Bundle for --bundles and --load (default 20; not with --urn-uuid)",
    )
    parser.add_argument(
        "--urn-uuid",
        action="store_true",
        help="one Bundle per patient, Synthea style: fullUrl urn:uuid:<uuid5>, subjects by urn:uuid "
        "(files <patient-id>.json, the Group's <prefix>-panel.json last)",
    )
    parser.add_argument(
        "--bundle-type",
        choices=synth.bundles.BUNDLE_TYPES,
        default=None,
        help="with --urn-uuid: transaction (default) or collection (offline use; not with --load)",
    )
    parser.add_argument(
        "--bundle-method",
        choices=synth.bundles.REQUEST_METHODS,
        default=None,
        help="with --urn-uuid transactions: POST by type (default; the server assigns ids) or PUT by id",
    )
    parser.add_argument("--load", action="store_true", help="post the transaction Bundles to the FHIR server")
    parser.add_argument("--fhir-url", metavar="URL", help="FHIR base URL for --load (default: setting FHIR_BASE_URL)")
    parser.set_defaults(run=run)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    as_of: date = args.as_of if args.as_of is not None else date.today()
    records = synth.iter_patient_records(args.patients, args.seed, as_of, args.id_prefix)
    per_bundle = _bundle_options(args)
    scopes = scopes_for(write=False, load=True)
    client = FhirClient.from_settings(get_settings(), args.fhir_url, scopes=scopes) if args.load else None
    base_url = client.base_url if client is not None else None
    bundle_dir: Path | None = args.bundles
    if bundle_dir is not None:
        _make_dir(bundle_dir)

    resources: Counter[str] = Counter()
    scenarios: Counter[str] = Counter()
    bundles_written = bundles_posted = 0
    writer = synth.NdjsonWriter(args.ndjson, manifest=True) if args.ndjson is not None else None
    paths: dict[str, Path] | None = None

    def counted(stream: Iterable[synth.PatientRecord]) -> Iterator[synth.PatientRecord]:
        for record in stream:
            scenarios[record.manifest.scenario] += 1
            resources.update(resource["resourceType"] for resource in record.all_resources())
            if writer is not None:
                writer.add(record)
            yield record

    try:
        if bundle_dir is None and base_url is None:
            for _ in counted(records):
                pass
        else:
            for number, bundle in enumerate(_bundles(args, counted(records), per_bundle), 1):
                if bundle_dir is not None:
                    name = (
                        f"{bundle['entry'][0]['resource']['id']}.json" if args.urn_uuid else f"bundle-{number:06d}.json"
                    )
                    _write_bundle(bundle_dir / name, bundle)
                    bundles_written += 1
                if client is not None:
                    try:
                        client.transaction(bundle)
                    except FhirError as error:
                        raise type(error)(f"bundle {number}: {error}", status=error.status) from error
                    bundles_posted += 1
        paths = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if client is not None:
            client.close()
    resources["Group"] += 1

    elapsed = time.perf_counter() - started
    patients = sum(scenarios.values())
    print(f"synth: {patients} patients (seed {args.seed}, as of {as_of.isoformat()}, id prefix {args.id_prefix!r})")
    print("resources: " + ", ".join(f"{kind} {count}" for kind, count in sorted(resources.items())))
    print("scenarios: " + ", ".join(f"{name} {count}" for name, count in sorted(scenarios.items())))
    if paths is not None:
        print(f"ndjson: {args.ndjson} ({', '.join(path.name for path in paths.values())})")
    if bundle_dir is not None and args.urn_uuid:
        kind = args.bundle_type or "transaction"
        group = "no Group" if kind == "collection" else "Group last"
        print(f"bundles: {bundle_dir} ({bundles_written} {kind} files, urn:uuid, 1 patient each, {group})")
    elif bundle_dir is not None:
        print(f"bundles: {bundle_dir} ({bundles_written} files, {per_bundle} patients each, Group last)")
    if base_url is not None:
        print(f"loaded: {bundles_posted} transaction bundles to {base_url}")
    if paths is None and bundle_dir is None and base_url is None:
        print("nothing written (use --ndjson, --bundles or --load)")
    print(f"elapsed: {elapsed:.2f} s ({patients / elapsed if elapsed > 0 else 0.0:.0f} patients/s)")
    return 0


def _bundle_options(args: argparse.Namespace) -> int:
    """Patients per Bundle; refuses flags that do not go together."""
    if not args.urn_uuid:
        for flag, value in (("--bundle-type", args.bundle_type), ("--bundle-method", args.bundle_method)):
            if value is not None:
                raise InputError(f"{flag} needs --urn-uuid")
        per_bundle: int = 20 if args.patients_per_bundle is None else args.patients_per_bundle
        if not 1 <= per_bundle <= 1000:
            raise InputError(f"--patients-per-bundle must be from 1 to 1000, got {per_bundle}")
        return per_bundle
    if args.patients_per_bundle is not None:
        raise InputError("--urn-uuid writes one Bundle per patient: leave out --patients-per-bundle")
    if args.bundle_type == "collection" and args.load:
        raise InputError("--bundle-type collection is for offline use: a server loads transaction Bundles")
    if args.bundle_type == "collection" and args.bundle_method is not None:
        raise InputError("--bundle-method applies to transaction Bundles, not to collection")
    if args.bundles is None and not args.load:
        raise InputError("--urn-uuid needs --bundles DIR or --load")
    return 1


def _bundles(args: argparse.Namespace, records: Iterable[synth.PatientRecord], per_bundle: int) -> Iterator[Json]:
    if not args.urn_uuid:
        return synth.chunked_transaction_bundles(records, per_bundle)
    return synth.urn_uuid_bundles(
        records, bundle_type=args.bundle_type or "transaction", method=args.bundle_method or "POST"
    )


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create output directory {path}: {error.strerror}") from error


def _write_bundle(path: Path, bundle: Json) -> None:
    try:
        path.write_bytes(orjson.dumps(bundle) + b"\n")
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror}") from error
