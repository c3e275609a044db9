"""JSON Schema documents of the messages integrators handle, for ``docs/``.

``python -m pipeline.schemadocs docs/schemas`` writes one file per message
(the job submission, its replies and the events); a test fails when the
committed files differ from what the code generates.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from pipeline import message_schemas

DOCUMENTED = {**message_schemas.SUBMISSIONS, **message_schemas.EVENTS}


def documents() -> dict[str, dict]:
    """File name -> JSON Schema (draft 2020-12 compatible subset) of each documented message."""
    plugin = MarshmallowPlugin()
    spec = APISpec("CloudMover messages", "1", "3.1.0", plugins=[plugin])
    out = {}
    for name, schema in DOCUMENTED.items():
        spec.components.schema(name, schema=type(schema))
    components = spec.to_dict()["components"]["schemas"]
    for name in DOCUMENTED:
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name,
               **_inline(components[name], components)}
        doc["properties"]["type"] = {"const": name}
        doc["additionalProperties"] = False
        out[f"{name}.json"] = doc
    return out


def _inline(node, components):
    """Replace ``$ref``s to components with the component itself (self-contained files)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(components[node["$ref"].rsplit("/", 1)[-1]], components)
        return {k: _inline(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, components) for v in node]
    return node


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in documents().items():
        (directory / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"))
