"""What only OpenSearch has: the k-NN engine choice and its preflight, per-item bulk errors
against a strict mapping, transport failures as transient errors, and the demo on a real node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modalfuse.engines.base import Document, LexicalQuery
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.errors import ConfigError, EngineUnavailable
from modalfuse.mappings.schema import ResolvedSchema, load_schema, parse_schema, resolve
from modalfuse.settings import Settings
from tests.conftest import dropped_after, opensearch_settings, unique_name
from tests.integration.browser_support import check_served_images

pytestmark = pytest.mark.opensearch


def products(name: str) -> ResolvedSchema:
    return resolve(parse_schema(load_schema().model_dump() | {"name": name}), {"text": 8})


def node_lacks_native_knn(engine: OpenSearchEngine) -> bool:
    return bool(engine.nodes_without_native_knn())


def test_faiss_is_refused_before_any_document_on_a_node_without_native_knn(
    opensearch_url: str, tmp_path: Path
) -> None:
    engine = OpenSearchEngine(Settings(data_dir=tmp_path, opensearch_url=opensearch_url))
    if not node_lacks_native_knn(engine):
        pytest.skip("this cluster has the k-NN native libraries: faiss works here")
    alias = unique_name("faiss")
    with dropped_after(engine, alias):
        # The bundled schema says faiss; without MODALFUSE_KNN_ENGINE nothing is created.
        with pytest.raises(ConfigError, match="MODALFUSE_KNN_ENGINE=lucene") as err:
            engine.create(products(alias))
        assert "text_vector" in str(err.value)
        assert engine.alias_target(alias) is None
        assert not engine.client.indices.exists(index=f"{alias}-v1")
    lucene = OpenSearchEngine(opensearch_settings(opensearch_url, tmp_path))
    with dropped_after(lucene, alias):
        index = lucene.create(products(alias))
        mapping = lucene.client.indices.get_mapping(index=index)[index]["mappings"]
        assert mapping["properties"]["text_vector"]["method"]["engine"] == "lucene"
        # The schema kept with the index says what the index really uses.
        assert lucene.schema_of(alias).vectors["text_vector"].field.hnsw.engine == "lucene"


def test_per_item_errors_come_back_with_their_ids(opensearch_url: str, tmp_path: Path) -> None:
    engine = OpenSearchEngine(opensearch_settings(opensearch_url, tmp_path, bulk_chunk_docs=3))
    alias = unique_name("items")
    with dropped_after(engine, alias):
        engine.create(products(alias))
        docs = [
            Document(id="x", version=1, fields={"nope": "unknown field"}),
            Document(id="y", version=1, fields={"title": "fine"}),
            Document(id="z", version=1, fields={"price": "not a number"}),
        ]
        result = engine.upsert(alias, docs)
        assert result.written == ["y"]
        errors = {str(e.doc_id): e for e in result.failed}
        assert sorted(errors) == ["x", "z"]
        assert all(not e.transient for e in errors.values())
        assert "strict" in str(errors["x"]) and "price" in str(errors["z"])
        engine.refresh(alias)
        hits = engine.lexical(alias, LexicalQuery(text="fine", fields={"title": 1.0}))
        assert [h.id for h in hits] == ["y"]


def test_an_unreachable_node_is_a_transient_error(tmp_path: Path) -> None:
    engine = OpenSearchEngine(
        Settings(data_dir=tmp_path, opensearch_url="http://127.0.0.1:9", opensearch_timeout_s=2)
    )
    with pytest.raises(EngineUnavailable, match="cannot reach OpenSearch"):
        engine.upsert("x", [Document(id="1", version=1, fields={"title": "t"})])
    with pytest.raises(EngineUnavailable):
        engine.lexical("x", LexicalQuery(text="t", fields={"title": 1.0}))


@pytest.mark.needs_export
@pytest.mark.slow
@pytest.mark.browser
def test_demo_runs_on_the_node(
    opensearch_url: str, tmp_path: Path, settings: Settings, minilm_fp32: Path
) -> None:
    from tests.cli_support import CLI

    index = unique_name("demo")
    env = os.environ | {
        "MODALFUSE_DATA_DIR": str(tmp_path / "data"),
        "MODALFUSE_MODEL_CACHE_DIR": str(settings.models_dir),
        "MODALFUSE_ENGINE": "opensearch",
        "MODALFUSE_OPENSEARCH_URL": opensearch_url,
        "MODALFUSE_KNN_ENGINE": os.environ.get("MODALFUSE_KNN_ENGINE", "lucene"),
        "MODALFUSE_INDEX": index,
    }
    engine = OpenSearchEngine(opensearch_settings(opensearch_url, tmp_path))
    with dropped_after(engine, index):
        proc = subprocess.run(
            [*CLI, "demo", "--no-serve", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["engine"] == "opensearch", summary
        engine.refresh(index)
        assert engine.stats(index).documents == 2000
        assert engine.stats(index).vector_fields.keys() == {"text_vector", "image_vector"}
        check_served_images(env)
