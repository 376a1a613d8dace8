"""`modalfuse dataset`, `modalfuse eval` (with --tune) and the tuned config in `search` and as an
index default, on a small real slice: the held-out products of the bundled sample catalogue,
indexed through the real queue and worker with the bundled encoders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from modalfuse.query.fusion_config import load_fusion_config
from modalfuse.settings import Settings
from tests.conftest import SAMPLE
from tests.integration.test_cli import _run

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]
FIGURES = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "queries"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Path:
    out = tmp_path_factory.mktemp("beir") / "fashion-sample"
    proc = _run(
        [
            "dataset",
            "fashion",
            "--catalog",
            str(SAMPLE / "products.jsonl"),
            "--out",
            str(out),
            "--json",
        ],
        settings,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["documents"] > 150 and summary["queries"]["colour_type"] > 20
    return out


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, minilm_fp32: Path
) -> dict[str, str]:
    return {
        "MODALFUSE_DATA_DIR": str(tmp_path_factory.mktemp("eval-data")),
        "MODALFUSE_MODEL_CACHE_DIR": str(settings.models_dir),
    }


def _json(proc: Any) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, Any] = json.loads(proc.stdout)
    return loaded


def test_eval_tune_outputs_and_reuse(
    dataset: Path, env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    modes = "lexical,text_vector,text_to_image,hybrid,hybrid-minmax,lexical+text_to_image"
    doc = _json(
        _run(
            ["eval", str(dataset), "--modes", modes, "--tune", "--out", str(out), "--json"],
            settings,
            **env,
        )
    )
    assert doc["index"]["reused"] is False and doc["index"]["dead_lettered"] == 0
    assert doc["index"]["in_index"] == doc["index"]["documents"]
    assert set(doc["modes"]) == {*modes.split(","), "tuned"}
    test_queries = doc["tuning"]["test_queries"]
    for name, figures in doc["modes"].items():
        assert set(figures) >= FIGURES, name
        assert figures["queries"] == test_queries, name
        assert all(0.0 <= figures[k] <= 1.0 for k in FIGURES - {"queries"}), name
    # Colour + type queries are easy for any retriever that reads the titles: far above chance.
    assert doc["modes"]["lexical"]["ndcg@10"] > 0.4 and doc["modes"]["hybrid"]["ndcg@10"] > 0.4
    assert doc["modes"]["text_to_image"]["ndcg@10"] > 0.1
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "per_query.jsonl").read_text().splitlines()
    assert len(rows) == sum(f["queries"] for f in doc["modes"].values())
    config = load_fusion_config(Path(doc["tuning"]["config_file"]))
    assert config.tuned is not None and config.tuned["metric"] == "ndcg@10"
    assert doc["tuning"]["dev_queries"] + test_queries == doc["queries"]
    # Unchanged dataset and encoders: the index is found again, and the figures repeat.
    again = _json(_run(["eval", str(dataset), "--modes", "lexical", "--json"], settings, **env))
    assert again["index"]["reused"] is True and again["index"]["index"] == doc["index"]["index"]


def test_tuned_config_drives_search_and_becomes_the_index_default(
    dataset: Path, env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    index = _json(_run(["eval", str(dataset), "--modes", "lexical", "--json"], settings, **env))[
        "index"
    ]["index"]
    config = tmp_path / "fusion.json"
    config.write_text(
        json.dumps(
            {"fusion": "rrf", "k": 5, "weights": {"lexical": 3.0, "text_vector": 1.0}, "window": 50}
        )
    )
    query = [
        "search",
        "navy blue shirts",
        "--index",
        index,
        "--retrievers",
        "lexical,text_vector",
        "--explain",
        "--json",
    ]
    unset = _json(_run(query, settings, **env))
    assert unset["fusion"] == "auto"  # the default: one vote each, min-max contributions
    top = unset["hits"][0]["explain"]["lexical"]
    assert top["contribution"] in (0.0, pytest.approx(0.5 * top["normalized"]))
    plain = _json(_run([*query, "--fusion", "rrf"], settings, **env))
    tuned = _json(_run([*query, "--fusion-config", str(config)], settings, **env))
    part = tuned["hits"][0]["explain"]["lexical"]
    assert part["contribution"] == pytest.approx(3.0 / (5 + part["rank"]))
    assert plain["hits"][0]["explain"]["lexical"]["contribution"] == pytest.approx(
        1.0 / (60 + plain["hits"][0]["explain"]["lexical"]["rank"])
    )
    made = _json(
        _run(
            ["index", "set-fusion", "--index", index, "--fusion-config", str(config), "--json"],
            settings,
            **env,
        )
    )
    assert made["fusion"]["k"] == 5
    default = _json(_run(query, settings, **env))
    assert [h["id"] for h in default["hits"]] == [h["id"] for h in tuned["hits"]]
    explicit = _json(
        _run(
            [*query, "--k", "60", "--weight", "lexical=1", "--weight", "text_vector=1"],
            settings,
            **env,
        )
    )
    assert [h["id"] for h in explicit["hits"]] == [h["id"] for h in plain["hits"]]
    _json(_run(["index", "set-fusion", "--index", index, "--clear", "--json"], settings, **env))


def test_image_queries_find_their_kind(
    dataset: Path, env: dict[str, str], settings: Settings
) -> None:
    doc = _json(
        _run(
            ["eval", str(dataset), "--split", "image", "--modes", "image,lexical", "--json"],
            settings,
            **env,
        )
    )
    image = doc["modes"]["image"]
    assert image["queries"] == doc["queries"] and image["ndcg@10"] > 0.1
    # A text retriever cannot serve a photo: counted as not applicable, never scored as zero.
    assert doc["modes"]["lexical"]["queries"] == 0 and doc["modes"]["lexical"]["not_applicable"]


def test_bad_dataset_and_mode_are_one_clear_line(settings: Settings, tmp_path: Path) -> None:
    proc = _run(["eval", str(tmp_path)], settings)
    assert proc.returncode == 2 and "not a BEIR-layout dataset" in proc.stderr
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "title": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q\t1\t1\n")
    proc = _run(["eval", str(tmp_path), "--modes", "bm42"], settings)
    assert proc.returncode == 2 and "unknown mode 'bm42'" in proc.stderr


@pytest.mark.opensearch
def test_eval_on_opensearch_agrees_with_lancedb(
    dataset: Path, env: dict[str, str], settings: Settings, opensearch_url: str, tmp_path: Path
) -> None:
    """The same dataset on a real OpenSearch node (index built through the queue, `_msearch`,
    lucene HNSW) and on LanceDB: every mode's figures land close, since both engines score BM25
    with the english analyzer and the same multi-field rule, and the vectors are the same."""
    from opensearchpy import OpenSearch

    os_env = env | {
        "MODALFUSE_DATA_DIR": str(tmp_path / "os-data"),
        "MODALFUSE_ENGINE": "opensearch",
        "MODALFUSE_OPENSEARCH_URL": opensearch_url,
        "MODALFUSE_KNN_ENGINE": os.environ.get("MODALFUSE_KNN_ENGINE", "lucene"),
    }
    args = ["eval", str(dataset), "--modes", "lexical,text_vector,hybrid", "--json"]
    on_opensearch = _json(_run([*args, "--engine", "opensearch"], settings, **os_env))
    try:
        assert on_opensearch["engine"] == "opensearch"
        built = on_opensearch["index"]
        assert built["in_index"] == built["documents"] and built["dead_lettered"] == 0
        on_lancedb = _json(_run(args, settings, **env))
        for mode in ("lexical", "text_vector", "hybrid"):
            os_figures, lance_figures = on_opensearch["modes"][mode], on_lancedb["modes"][mode]
            assert os_figures["queries"] == lance_figures["queries"] > 20
            assert abs(os_figures["ndcg@10"] - lance_figures["ndcg@10"]) < 0.02, (
                mode,
                os_figures,
                lance_figures,
            )
    finally:
        client = OpenSearch(hosts=[opensearch_url])
        client.indices.delete(index=f"{on_opensearch['index']['index']}*", ignore=[404])
