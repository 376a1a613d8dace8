"""Validate request bodies against the official OpenSearch API spec (copied in tests/data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[1] / "data" / "opensearch-api" / "opensearch-openapi.yaml"
SPEC_URI = "urn:opensearch-openapi"
Validate = Callable[[Any, str], None]


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC.open(encoding="utf-8") as f:
        loaded: dict[str, Any] = yaml.load(f, Loader=loader)
    return loaded


@pytest.fixture(scope="session")
def validate(spec: dict[str, Any]) -> Validate:
    """`validate(body, target)` raises `jsonschema.ValidationError` if the body breaks the spec.

    `target` is an operation's request body (`indices.create`, `bulk`, `msearch`...) or a
    component schema (`_common.query_dsl___KnnQuery`).
    """
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    bodies = spec["components"]["requestBodies"]

    def check(body: Any, target: str) -> None:
        if target in bodies:
            content_type = next(iter(bodies[target]["content"]))
            escaped = content_type.replace("/", "~1")
            pointer = f"#/components/requestBodies/{target}/content/{escaped}/schema"
        else:
            assert target in spec["components"]["schemas"], f"no schema {target!r} in the spec"
            pointer = f"#/components/schemas/{target}"
        validator = Draft202012Validator({"$ref": f"{SPEC_URI}{pointer}"}, registry=registry)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            raise errors[0]

    return check


__all__ = ["Validate", "ValidationError"]
