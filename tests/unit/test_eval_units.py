"""Evaluation pieces without an engine: BEIR reading, modes, fusion configs, the tuning grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modalfuse.engines.base import Hit
from modalfuse.errors import ConfigError, InvalidDocument, InvalidInput
from modalfuse.evaluation import beir
from modalfuse.evaluation.evaluation import configured_mode, parse_mode, request_for
from modalfuse.evaluation.tuning import candidates, fused_ids, split_queries, weight_grid
from modalfuse.query import fusion
from modalfuse.query.fusion_config import FusionConfig, parse_fusion_config
from modalfuse.query.request import RetrieverName, SearchRequest


def _write(root: Path, *, header: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "body"}\n'
        '{"_id": "d2", "title": "", "text": "", "image": "img/2.jpg"}\n'
    )
    (root / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "one"}\n{"_id": "q2", "text": "two"}\n'
        '{"_id": "q3", "text": "", "image": "img/q.jpg"}\n'
    )
    (root / "qrels").mkdir(exist_ok=True)
    rows = ["q1\td1\t2", "q1\td2\t0", "q2\td2\t0", "q3\td2\t1", "q9\td1\t1"]
    (root / "qrels" / "test.tsv").write_text(
        "\n".join((["query-id\tcorpus-id\tscore"] if header else []) + rows) + "\n"
    )


@pytest.mark.parametrize("header", [True, False])
def test_beir_reads_qrels_with_or_without_header(tmp_path: Path, header: bool) -> None:
    _write(tmp_path / "ds", header=header)
    data = beir.load(tmp_path / "ds", "test")
    # q2 has no positive judgment and q9 is not among the queries: both are left out.
    assert data.qrels == {"q1": {"d1": 2.0, "d2": 0.0}, "q3": {"d2": 1.0}}
    assert sorted(data.queries) == ["q1", "q3"] and data.skipped_queries == 2
    assert data.queries["q3"].image == "img/q.jpg"
    docs = list(beir.corpus(tmp_path / "ds"))
    assert docs[0] == {"id": "d1", "title": "T", "description": "body"}
    assert docs[1] == {"id": "d2", "image": str(tmp_path.resolve() / "ds" / "img/2.jpg")}


def test_beir_errors_name_the_problem(tmp_path: Path) -> None:
    _write(tmp_path / "ds", header=True)
    with pytest.raises(InvalidDocument, match=r"no qrels for split 'dev'.*available: test"):
        beir.load(tmp_path / "ds", "dev")
    (tmp_path / "ds" / "qrels" / "bad.tsv").write_text("h\th\th\nq1\td1\tmany\n")
    with pytest.raises(InvalidDocument, match=r"bad\.tsv:2: score 'many' is not a number"):
        beir.read_qrels(tmp_path / "ds" / "qrels" / "bad.tsv")
    with pytest.raises(InvalidDocument, match="not a BEIR-layout dataset"):
        beir.load(tmp_path, "test")


def test_fingerprint_follows_the_corpus(tmp_path: Path) -> None:
    _write(tmp_path / "ds", header=True)
    before = beir.fingerprint(tmp_path / "ds")
    assert beir.fingerprint(tmp_path / "ds") == before
    with (tmp_path / "ds" / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "d3", "title": "new"}\n')
    assert beir.fingerprint(tmp_path / "ds") != before


def test_modes() -> None:
    assert parse_mode("text_vector").retrievers == ["text_vector"]
    assert parse_mode("hybrid-zscore").retrievers is None
    assert parse_mode("hybrid-zscore").fusion == "zscore"
    assert parse_mode("lexical+text_vector+lexical").retrievers == ["lexical", "text_vector"]
    # One spelling per concept: the old name says what it is now.
    with pytest.raises(ConfigError, match="'vector' is now 'text_vector'"):
        parse_mode("vector")
    with pytest.raises(ConfigError, match="unknown mode 'bm42'"):
        parse_mode("bm42")


def test_request_for_each_mode() -> None:
    query = beir.Query(id="q", text="red dress")
    req = request_for(query, parse_mode("hybrid-minmax"), index="i", window=100)
    assert (req.fusion, req.retrievers, req.size, req.window, req.return_fields) == (
        "minmax",
        None,
        100,
        100,
        False,
    )
    tuned = FusionConfig(fusion="rrf", k=20, weights={"lexical": 0.5}, window=200)
    req = request_for(query, configured_mode("tuned", tuned), index="i", window=100)
    assert (req.k, req.weights, req.window) == (20, {"lexical": 0.5}, 200)


def test_fusion_config_fills_only_what_the_request_left_unset() -> None:
    config = FusionConfig(fusion="minmax", k=10, weights={"lexical": 2.0}, window=50)
    req = config.apply(SearchRequest(text="x", k=30))
    assert (req.fusion, req.k, req.weights, req.window) == ("minmax", 30, {"lexical": 2.0}, 50)
    # Weights for retrievers the request excludes are dropped rather than refused.
    req = config.apply(SearchRequest(text="x", retrievers=["text_vector"]))
    assert req.weights == {}
    with pytest.raises(InvalidInput, match="beyond the window"):
        config.apply(SearchRequest.model_validate({"text": "x", "from": 45, "size": 10}))
    with pytest.raises(ConfigError, match=r"weights\.bm25"):
        parse_fusion_config({"weights": {"bm25": 1}})
    assert parse_fusion_config(json.loads(config.model_dump_json())) == config


def test_dev_test_split_is_stable_and_disjoint() -> None:
    ids = [str(i) for i in range(200)]
    dev, test = split_queries(ids, seed=0)
    assert set(dev).isdisjoint(test) and set(dev) | set(test) == set(ids)
    assert 70 < len(dev) < 130
    assert split_queries(ids[:100], seed=0)[0] == [q for q in dev if int(q) < 100]
    assert split_queries(ids, seed=1) != (dev, test)


def test_weight_grid_has_one_vector_per_direction() -> None:
    grid = weight_grid(["lexical", "text_vector"])
    keys = {tuple(w.values()) for w in grid}
    assert (1.0, 1.0) in keys and (0.0, 1.0) in keys and (1.0, 0.0) in keys
    assert (0.5, 0.5) not in keys and len(keys) == len(grid)
    configs = candidates(["lexical", "text_vector"])
    assert FusionConfig(weights={"lexical": 1.0, "text_vector": 1.0}) in configs
    single = [c for c in configs if c.retrievers == ["text_vector"]]
    assert single and all(c.weights == {"text_vector": 1.0} for c in single)


def test_offline_fusion_equals_the_query_layer_fusion() -> None:
    lists: dict[RetrieverName, list[Hit]] = {
        "lexical": [Hit(id=i, score=10 - n) for n, i in enumerate("abcdef")],
        "text_vector": [Hit(id=i, score=1 - n / 10) for n, i in enumerate("fedxyz")],
    }
    config = FusionConfig(
        fusion="rrf", k=20, weights={"lexical": 2.0, "text_vector": 1.0}, window=4
    )
    direct = fusion.fuse(
        {str(name): hits for name, hits in lists.items()},
        method="rrf",
        rank_constant=20,
        weights={"lexical": 2.0, "text_vector": 1.0},
        window=4,
    )
    assert fused_ids(lists, config) == [f.id for f in direct]
    only = FusionConfig(retrievers=["text_vector"], weights={"text_vector": 1.0})
    assert fused_ids(lists, only) == list("fedxyz")


def test_the_cli_default_modes_are_the_evaluation_defaults() -> None:
    import inspect

    from modalfuse.cli.evaluate import eval_command
    from modalfuse.evaluation.evaluation import DEFAULT_MODES

    default = inspect.signature(eval_command).parameters["modes"].default
    assert tuple(default.split(",")) == DEFAULT_MODES


def test_the_language_comes_from_dataset_json_and_picks_analyzer_and_encoder(
    tmp_path: Path,
) -> None:
    from modalfuse.evaluation.eval_index import eval_fields, for_language
    from modalfuse.settings import Settings

    (tmp_path / "dataset.json").write_text('{"language": "zh"}', encoding="utf-8")
    settings, language = for_language(tmp_path, Settings(data_dir=tmp_path))
    assert (language, settings.text_encoder) == ("zh", "bge-small-zh-v1.5")
    chosen = Settings(data_dir=tmp_path, text_encoder="/models/mine")
    assert for_language(tmp_path, chosen)[0].text_encoder == "/models/mine"  # a choice stands
    assert for_language(tmp_path, Settings(data_dir=tmp_path), "en")[1] == "en"
    analyzers = {f["name"]: f["analyzer"] for f in eval_fields(images=False, language="zh")
                 if f["type"] == "text"}  # fmt: skip
    assert analyzers == {"title": "chinese", "description": "chinese"}
    with pytest.raises(ConfigError, match="no analyzer for language 'fr'"):
        for_language(tmp_path, Settings(data_dir=tmp_path), "fr")
