"""Writing a panel out as FHIR Bundles: transaction Bundles by id, and Synthea-style urn:uuid Bundles.

- ``chunked_transaction_bundles`` / ``transaction_bundles``: ``PUT Type/id`` entries, several patients
  per Bundle, references ``Patient/<id>``; reloading is idempotent. The Group comes last, alone.
- ``urn_uuid_bundles`` / ``urn_uuid_bundle``: one Bundle per patient as Synthea writes them: every entry
  has ``fullUrl: urn:uuid:<uuid>`` and every subject is ``{"reference": "urn:uuid:<patient uuid>"}``.
  Type ``transaction`` (``POST`` by type, or ``PUT`` by id; the server resolves the urn:uuid references
  while it loads) or ``collection`` (offline use: ``rls-screen evaluate`` reads one as it is).

The uuids are ``uuid5`` of the seed, type and id, so the same panel gets the same uuids every time.
Streams, like NDJSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Final, Literal

from rls_screen.errors import InputError
from rls_screen.synth.codes import MRN_SYSTEM, Json
from rls_screen.synth.ndjson import PanelSource, records_of
from rls_screen.synth.records import PatientRecord
from rls_screen.synth.resources import build_group, group_of

BundleType = Literal["transaction", "collection"]
RequestMethod = Literal["POST", "PUT"]
BUNDLE_TYPES: Final = ("transaction", "collection")
REQUEST_METHODS: Final = ("POST", "PUT")
UUID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://rls-screen.org/fhir/synthetic-panel")
"""Namespace of every synthetic urn:uuid (a fixed value: changing it changes every fullUrl)."""


# --- by id ---------------------------------------------------------------------------------------
def _entry(resource: Json) -> Json:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _transaction(entries: list[Json]) -> Json:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def transaction_bundles(source: PanelSource) -> Iterator[Json]:
    """One transaction Bundle per patient (PUT by id, so reloading is idempotent), then the Group's."""
    return chunked_transaction_bundles(source, patients_per_bundle=1)


def chunked_transaction_bundles(source: PanelSource, patients_per_bundle: int = 20) -> Iterator[Json]:
    """Transaction Bundles of several patients each (each Patient before its resources); the Group
    comes alone in the last Bundle, after every member exists."""
    if not isinstance(patients_per_bundle, int) or not 1 <= patients_per_bundle <= 10_000:
        raise InputError(f"patients per bundle must be from 1 to 10,000, got {patients_per_bundle!r}")
    return _chunks(records_of(source), patients_per_bundle)


def _chunks(records: Iterable[PatientRecord], size: int) -> Iterator[Json]:
    entries: list[Json] = []
    in_chunk = 0
    patient_ids: list[str] = []
    group_id: str | None = None
    for record in records:
        group_id = group_id or record.panel_id
        patient_ids.append(record.patient_id)
        entries.extend(_entry(resource) for resource in record.all_resources())
        in_chunk += 1
        if in_chunk == size:
            yield _transaction(entries)
            entries, in_chunk = [], 0
    if entries:
        yield _transaction(entries)
    if group_id is not None:
        yield _transaction([_entry(build_group(group_id, patient_ids))])


# --- urn:uuid, Synthea style ---------------------------------------------------------------------
def resource_uuid(seed: int, resource_type: str, resource_id: str) -> uuid.UUID:
    """The uuid of one synthetic resource: ``uuid5(UUID_NAMESPACE, "<seed>/<type>/<id>")``."""
    return uuid.uuid5(UUID_NAMESPACE, f"{seed}/{resource_type}/{resource_id}")


def full_url(seed: int, resource: Json) -> str:
    """``urn:uuid:<uuid>`` of ``resource`` in a panel drawn with ``seed``."""
    return f"urn:uuid:{resource_uuid(seed, resource['resourceType'], resource['id'])}"


def _check(bundle_type: str, method: str) -> None:
    if bundle_type not in BUNDLE_TYPES:
        raise InputError(f"Bundle type must be one of {', '.join(BUNDLE_TYPES)}, got {bundle_type!r}")
    if method not in REQUEST_METHODS:
        raise InputError(f"request method must be one of {', '.join(REQUEST_METHODS)}, got {method!r}")


def _urn_entry(url: str, resource: Json, bundle_type: BundleType, method: RequestMethod) -> Json:
    entry: Json = {"fullUrl": url, "resource": resource}
    if bundle_type == "transaction":
        kind = resource["resourceType"]
        entry["request"] = {"method": method, "url": kind if method == "POST" else f"{kind}/{resource['id']}"}
    return entry


def urn_uuid_bundle(
    record: PatientRecord, *, bundle_type: BundleType = "transaction", method: RequestMethod = "POST"
) -> Json:
    """One patient's Bundle: the Patient first, every subject ``urn:uuid:<patient uuid>``.

    Resources keep their ids (``syn-p0001-obs-0001``): offline and after a ``PUT`` load they are the
    same references as in NDJSON; a ``POST`` load gets ids the server picks. The record is not changed.
    """
    _check(bundle_type, method)
    patient_url = full_url(record.seed, record.patient)
    entries = [_urn_entry(patient_url, record.patient, bundle_type, method)]
    for resource in record.resources:
        linked = {**resource, "subject": {"reference": patient_url}}
        entries.append(_urn_entry(full_url(record.seed, resource), linked, bundle_type, method))
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def urn_uuid_bundles(
    source: PanelSource, *, bundle_type: BundleType = "transaction", method: RequestMethod = "POST"
) -> Iterator[Json]:
    """``urn_uuid_bundle`` of every patient; for ``transaction``, then the Group in a Bundle of its own.

    The Group's members are ``Patient/<id>`` after a ``PUT`` load, and conditional references
    ``Patient?identifier=<MRN system>|<MRN>`` after a ``POST`` load (the server picked the ids; it
    resolves each to the one Patient with that MRN). ``collection`` Bundles come without a Group.
    """
    _check(bundle_type, method)
    return _urn_bundles(records_of(source), bundle_type, method)


def _urn_bundles(records: Iterable[PatientRecord], bundle_type: BundleType, method: RequestMethod) -> Iterator[Json]:
    members: list[Json] = []
    group_id: str | None = None
    seed = 0
    for record in records:
        group_id, seed = group_id or record.panel_id, record.seed
        if method == "PUT":
            members.append({"reference": f"Patient/{record.patient_id}"})
        else:
            members.append({"reference": f"Patient?identifier={MRN_SYSTEM}|{record.patient['identifier'][0]['value']}"})
        yield urn_uuid_bundle(record, bundle_type=bundle_type, method=method)
    if group_id is not None and bundle_type == "transaction":
        group = group_of(group_id, members)
        yield {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_urn_entry(full_url(seed, group), group, "transaction", method)],
        }
