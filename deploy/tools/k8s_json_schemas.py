"""Kubernetes JSON schemas for kubeconform, made from the Kubernetes OpenAPI (v2) of a Kubernetes release.

kubeconform normally downloads these from a GitHub repository, which this build machine cannot reach.
The same schemas are derived here from ``api/openapi-spec/swagger.json`` of the Go module
``k8s.io/kubernetes`` (fetched from the Go module proxy by deploy/tools/install-helm-tools.sh), in the
layout kubeconform reads from a local directory: ``v<version>-standalone-strict/<kind>-<group>-<version>.json``.

What "standalone strict" means, as in the published schemas: every ``$ref`` is inlined (a recursive
reference becomes an open schema); every object that lists its properties refuses others
(``additionalProperties: false``: a misspelt key fails); IntOrString accepts a string or an integer
and Quantity a string or a number (YAML ``cpu: 1``); a typed value may be null (the API server
treats a null as absent); ``apiVersion`` and ``kind`` must be the kind's own.

Usage: python3 k8s_json_schemas.py SWAGGER_JSON OUT_DIR   (stdlib only; prints the number of kinds)
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

REF_PREFIX = "#/definitions/"
SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif "oneOf" in schema and {"type": "null"} not in schema["oneOf"]:
        schema["oneOf"] = [*schema["oneOf"], {"type": "null"}]
    return schema


def resolve(schema: dict[str, Any], definitions: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    """``schema`` with its references inlined and the strict rules applied (walks schema keywords only)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        name = ref[len(REF_PREFIX) :]
        description = {k: v for k, v in schema.items() if k == "description"}
        if name in stack:  # a recursive type (JSONSchemaProps): accept anything below this point
            return description
        target = copy.deepcopy(SPECIAL[name]) if name in SPECIAL else resolve(definitions[name], definitions, (*stack, name))
        return {**target, **description}
    out = dict(schema)
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {
            key: nullable(resolve(value, definitions, stack)) for key, value in schema["properties"].items()
        }
        out.setdefault("additionalProperties", False)
    if isinstance(schema.get("items"), dict):
        out["items"] = nullable(resolve(schema["items"], definitions, stack))
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = nullable(resolve(schema["additionalProperties"], definitions, stack))
    for keyword in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(keyword), list):
            out[keyword] = [resolve(item, definitions, stack) for item in schema[keyword]]
    return out


def file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's name: lower-case kind, then the group's first label (none for core), then the version."""
    suffix = f"-{group.split('.')[0].lower()}" if group else ""
    return f"{kind.lower()}{suffix}-{version.lower()}.json"


def generate(swagger: Path, out_dir: Path) -> int:
    definitions: dict[str, Any] = json.loads(swagger.read_text(encoding="utf-8"))["definitions"]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, definition in sorted(definitions.items()):
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            schema = resolve(definition, definitions, (name,))
            api_version = f"{group}/{version}" if group else version
            properties = schema.setdefault("properties", {})
            if "apiVersion" in properties:
                properties["apiVersion"] = {**properties["apiVersion"], "enum": [api_version]}
            if "kind" in properties:
                properties["kind"] = {**properties["kind"], "enum": [kind]}
            schema["$schema"] = "http://json-schema.org/schema#"
            (out_dir / file_name(group, version, kind)).write_text(json.dumps(schema, indent=1), encoding="utf-8")
            written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(generate(Path(sys.argv[1]), Path(sys.argv[2])))
