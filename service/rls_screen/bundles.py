"""The shape of a Bundle from a FHIR server: its entries and its next link, checked before use.

A server (or whatever answers in its name) may send ``"entry": null``, an object where a list belongs,
or ``"link": "..."``. Iterating such values gives characters or keys, and then an AttributeError far
from the cause, or silently no data (a patient without labs, as far as the rules can tell). These
functions raise ``FhirResponseError`` instead, which every caller already reports as "data
unavailable" (FHIR R4 bundle.html: ``entry`` and ``link`` are arrays of objects; JSON null is not
allowed anywhere in FHIR JSON, json.html#null).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rls_screen.errors import FhirResponseError


def _objects(bundle: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    if field not in bundle:
        return []
    value = bundle[field]
    if not isinstance(value, list):
        raise FhirResponseError(f"a Bundle's {field} is a JSON {_json_type(value)}, not a list")
    if not all(isinstance(item, Mapping) for item in value):
        raise FhirResponseError(f"a Bundle's {field} holds an item that is not a JSON object")
    return value


def _json_type(value: Any) -> str:
    return "null" if value is None else {str: "string", dict: "object", bool: "boolean"}.get(type(value), "number")


def entries(bundle: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``Bundle.entry`` ([] when absent); ``FhirResponseError`` unless it is a list of objects."""
    return _objects(bundle, "entry")


def resources(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``resource`` of each entry that has one that is an object."""
    for entry in entries(bundle):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            yield resource


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The url of the ``next`` link, or None; ``FhirResponseError`` when ``link`` or that url is malformed."""
    for link in _objects(bundle, "link"):
        if link.get("relation") == "next":
            url = link.get("url")
            if not isinstance(url, str):
                raise FhirResponseError("a Bundle's next link has no url string")
            return url
    return None
