"""Schemathesis against the HTTP API's own OpenAPI document, in process, bounded: every
generated request (valid and invalid) gets an answer below 500, every reference in the schema
resolves, and the schema states the constraints the API enforces (so most valid-by-schema
bodies are accepted)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from modalfuse.query.api import create_api
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings
from tests.integration.api_support import small_world

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]
OUTCOMES: Counter[int] = Counter()
REJECTED: Counter[tuple[str, str]] = Counter()


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    minilm_fp32: Path,
    catalogue: list[tuple[str, dict[str, Any]]],
) -> Iterator[Any]:
    s, engine = small_world(
        tmp_path_factory.mktemp("fuzz"), settings.models_dir, minilm_fp32, catalogue
    )
    # A generous deadline: this test is about answers below 500, and a 504 from a search that a
    # busy machine made slow would say nothing about the API.
    s = s.model_copy(update={"query_log": False, "query_timeout_s": 120.0})
    yield create_api(s, Searcher(s, engine=engine))
    engine.close()


@pytest.fixture(scope="module")
def api_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_reference_in_the_schema_resolves(app: Any) -> None:
    document = app.openapi()
    text = json.dumps(document)
    refs = set(re.findall(r'"\$ref": "([^"]+)"', text))
    assert refs, "the search body's filters are described by reference"
    for ref in refs:
        node: Any = document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in node, f"dangling reference {ref}"
            node = node[part]
    body = document["components"]["schemas"]["SearchBody"]
    weights = body["properties"]["weights"]
    assert weights["additionalProperties"]["minimum"] == 0  # the constraint is stated


def test_no_generated_request_gets_a_server_error(api_schema: Any) -> None:
    """Each operation's generated requests (schemathesis' strategies, driven by hypothesis)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(op.path == "/search" for op in operations)
    for operation in operations:
        examples = 150 if operation.path == "/search" else 10

        @given(case=operation.as_strategy())
        @hsettings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call()
            OUTCOMES[response.status_code] += 1
            if response.status_code in (404, 422):
                REJECTED[(case.path, response.text[:160])] += 1
            assert response.status_code < 500, (
                case.method,
                case.path,
                case.body,
                response.status_code,
                response.text[:500],
            )
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                problem = response.json()
                assert problem.get("error") or problem.get("detail"), response.text

        check()
    # Printed with -s: how the generated requests were answered.
    print(f"schemathesis outcomes by status: {dict(sorted(OUTCOMES.items()))}")
    for (path, text), n in REJECTED.most_common(12):
        print(f"  {n:>4} {path} {text}")
    # The schema states what the API enforces, so generated bodies are not all refused, and
    # the invalid ones that are refused are refused as the client's fault (4xx).
    assert OUTCOMES[200] > 0
    assert sum(n for status, n in OUTCOMES.items() if 400 <= status < 500) > 0
