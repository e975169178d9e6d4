#!/usr/bin/env python3
"""Validates JSON documents against the OCI image-spec schemas, fully offline.

Usage: validate-oci-json.py SCHEMA_DIR KIND FILE...   (KIND: manifest, index, config, layout)

The schemas refer to each other by https://opencontainers.org/schema/image/... ids; every such
reference is served from SCHEMA_DIR, so nothing is fetched from the network.
"""
import json
import pathlib
import sys

import jsonschema
import referencing
import referencing.jsonschema

KINDS = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
}
BASE = "https://opencontainers.org/schema/image/"


def registry(schema_dir):
    resources = []
    for path in schema_dir.glob("*.json"):
        contents = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT4)
        resources.append((BASE + path.name, resource))
        if "id" in contents:
            resources.append((contents["id"], resource))
    return referencing.Registry().with_resources(resources)


def main():
    schema_dir = pathlib.Path(sys.argv[1])
    kind = sys.argv[2]
    schema = json.loads((schema_dir / KINDS[kind]).read_text())
    validator = jsonschema.Draft4Validator(schema, registry=registry(schema_dir))
    failed = 0
    for name in sys.argv[3:]:
        document = json.loads(pathlib.Path(name).read_text())
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        for error in errors:
            print(f"{name}: {kind}: {'/'.join(map(str, error.path))}: {error.message}")
        failed += bool(errors)
    print(f"{len(sys.argv) - 3 - failed} valid, {failed} invalid")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
