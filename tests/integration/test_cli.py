"""The `modalfuse` console script as a user runs it (a subprocess, real exports)."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
from pathlib import Path

import pytest

from modalfuse.sample import SAMPLE_DIR
from modalfuse.settings import Settings
from tests.cli_support import CLI
from tests.integration.browser_support import check_served_images

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]


def _run(args: list[str], settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"MODALFUSE_DATA_DIR": str(settings.data_dir)} | env
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=environ, timeout=600, check=False
    )


def test_export_json_for_the_default_text_model(settings: Settings, minilm_fp32: Path) -> None:
    proc = _run(["export", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["directory"] == str(minilm_fp32)
    assert doc["validation"]["max_abs_diff"] <= 1e-4 and doc["validation"]["min_cosine"] >= 0.9999
    assert doc["text"]["max_seq_length"] == 256


def test_export_json_for_a_tiny_clip(
    settings: Settings, tiny_clip_source: Path, tiny_clip: Path
) -> None:
    proc = _run(["export", "--model", str(tiny_clip_source), "--kind", "clip", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "clip" and doc["validation"]["min_cosine"] >= 0.9999
    assert set(doc["validation"]["graphs"]) == {"text", "image"}


def test_errors_are_one_clear_line(settings: Settings, tmp_path: Path, minilm_fp32: Path) -> None:
    proc = _run(["export", "--model", str(tmp_path / "nowhere")], settings)
    assert (
        proc.returncode == 2 and "ModelLoadError" in proc.stderr and "does not exist" in proc.stderr
    )
    proc = _run(["export", "--quantize", "int4"], settings)
    assert proc.returncode == 2 and "--quantize" in proc.stderr and "int8" in proc.stderr
    proc = _run(["demo", "--no-serve", "--json"], settings, MODALFUSE_EXECUTION_PROVIDER="tensorrt")
    assert proc.returncode == 2
    assert (
        "ProviderUnavailable" in proc.stderr
        and "available: " in proc.stderr
        and "CPUExecutionProvider" in proc.stderr
    )


@pytest.mark.browser
def test_demo_ingests_through_the_queue_and_searches(
    settings: Settings, minilm_fp32: Path, tmp_path: Path
) -> None:
    env = {
        "MODALFUSE_DATA_DIR": str(tmp_path),
        "MODALFUSE_MODEL_CACHE_DIR": str(settings.models_dir),
    }
    proc = _run(["demo", "--no-serve", "--json"], settings, **env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["documents"], doc["indexed"], doc["dead_lettered"]) == (2000, 2000, 0)
    top = doc["examples"]["red summer dress"][0]
    assert "dress" in top["title"].lower()
    assert set(top["ranks"]) <= {"lexical", "text_vector", "text_to_image"}
    # The bundled aligned image encoder makes photos searchable: more like the first product.
    (like,) = [k for k in doc["examples"] if k.startswith("photo of ")]
    assert doc["examples"][like] and set(doc["examples"][like][0]["ranks"]) == {"image"}
    again = _run(["demo", "--no-serve", "--json"], settings, **env)  # a second run starts afresh
    assert json.loads(again.stdout)["indexed"] == 2000
    # Ranking from the command line on the demo's index: a rule, collapse, a boost, diversity.
    added = _run(
        ["rules", "add", "--id", "w", "--query", "black watch", "--pin", "1579@1", "--json"],
        settings,
        **env,
    )
    assert added.returncode == 0, added.stderr
    assert [r["id"] for r in json.loads(added.stdout)["rules"]] == ["w"]
    ranked = _run(
        [
            "search",
            "black watch",
            "--collapse",
            "style",
            "--boost",
            "field:year:linear:0.2",
            "--diversify",
            "0.7",
            "--facet",
            "colour",
            "--json",
        ],
        settings,
        **env,
    )
    assert ranked.returncode == 0, ranked.stderr
    body = json.loads(ranked.stdout)
    assert body["rules"] == ["w"] and body["hits"][0]["id"] == "1579"
    assert body["hits"][0]["pinned"] == 1 and body["total_counts"] == "groups"
    assert body["stages"] == ["retrieve", "fuse", "rank", "collapse", "diversify", "page"]
    groups = [h["group"] for h in body["hits"]]
    assert len(groups) == len(set(groups)) and body["facets"]["colour"]
    bad = _run(["search", "watch", "--boost", "field:title:log1p:0.2"], settings, **env)
    assert bad.returncode == 2 and "not a signal field" in bad.stderr
    missing = _run(["search", "--image", str(tmp_path / "missing.jpg")], settings, **env)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "cannot read" in missing.stderr and "--image" in missing.stderr
    removed = _run(["rules", "remove", "--id", "w", "--json"], settings, **env)
    assert json.loads(removed.stdout) == {"rules": []}
    # An index's default ranking applies to searches that set none, until it is cleared.
    config = tmp_path / "ranking.json"
    config.write_text('{"collapse": {"field": "style"}}')
    stored = _run(
        ["index", "set-ranking", "--ranking-config", str(config), "--json"], settings, **env
    )
    assert json.loads(stored.stdout)["ranking"] == {
        "boosts": [],
        "collapse": {"field": "style", "inner": 0},
    }
    plain = json.loads(_run(["search", "black watch", "--json"], settings, **env).stdout)
    assert plain["total_counts"] == "groups" and "collapse" in plain["stages"]
    _run(["index", "set-ranking", "--clear"], settings, **env)
    # The newcomer's path: `serve` started later, from another shell, shows the demo's photos.
    check_served_images(os.environ | env)
    plain = json.loads(_run(["search", "black watch", "--json"], settings, **env).stdout)
    assert plain["total_counts"] == "documents" and "collapse" not in plain["stages"]


def test_index_create_dry_run_prints_the_exact_opensearch_body(
    settings: Settings, minilm_fp32: Path
) -> None:
    from modalfuse.mappings.opensearch import index_body
    from modalfuse.mappings.schema import load_schema, resolve, with_models

    proc = _run(["index", "create", "--engine", "opensearch", "--dry-run", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    # The vector fields name the encoders that fill them (recorded in the index's schema).
    named = with_models(load_schema(), {"text": "all-MiniLM-L6-v2", "image": "fashion-aligned"})
    assert json.loads(proc.stdout) == index_body(resolve(named, {"text": 384, "image": 384}))
    without = _run(
        ["index", "create", "--engine", "opensearch", "--dry-run", "--json"],
        settings,
        MODALFUSE_IMAGE_ENCODER="none",
    )
    text_only = with_models(load_schema(), {"text": "all-MiniLM-L6-v2"})
    assert json.loads(without.stdout) == index_body(resolve(text_only, {"text": 384}))
    assert "image_vector left out: no image encoder is configured" in without.stderr


def test_index_lifecycle_on_lancedb(settings: Settings, minilm_fp32: Path, tmp_path: Path) -> None:
    env = {"MODALFUSE_LANCEDB_URI": str(tmp_path / "db"), "MODALFUSE_INDEX": "cli-shop"}
    first = _run(["index", "create", "--index", "cli-shop", "--json"], settings, **env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"skipped": None} == {
        "engine": "lancedb",
        "alias": "cli-shop",
        "created": "cli-shop-v1",
        "alias_target": "cli-shop-v1",
        "vector_fields": {"text_vector": 384, "image_vector": 384},
        "skipped": None,
    }
    second = _run(["index", "create", "--index", "cli-shop"], settings, **env)
    assert "swap when ready" in second.stdout
    swap = _run(["index", "swap", "--to", "cli-shop-v2", "--drop-old", "--json"], settings, **env)
    assert json.loads(swap.stdout) == {
        "alias": "cli-shop",
        "previous": "cli-shop-v1",
        "current": "cli-shop-v2",
        "dropped": "cli-shop-v1",
    }
    stats = json.loads(_run(["index", "stats", "--json"], settings, **env).stdout)
    assert (stats["index"], stats["documents"], stats["versions"]) == (
        "cli-shop-v2",
        0,
        ["cli-shop-v2"],
    )
    refused = _run(["index", "drop", "--index", "cli-shop"], settings, **env)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    dropped = _run(["index", "drop", "--index", "cli-shop", "--yes", "--json"], settings, **env)
    assert json.loads(dropped.stdout) == {"dropped": ["cli-shop-v2"]}
    missing = _run(["index", "stats"], settings, **env)
    assert missing.returncode == 2 and "IndexNotFound" in missing.stderr


def test_index_create_rejects_a_bad_schema(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: s\nfields:\n  - {name: t, type: text}\n"
        "  - {name: v, type: vector, encoder: audio, sources: [t]}\n",
        encoding="utf-8",
    )
    proc = _run(["index", "create", "--schema", str(bad), "--dry-run"], settings)
    assert proc.returncode == 2
    assert (
        "SchemaError" in proc.stderr
        and "field 'v'" in proc.stderr
        and "unknown encoder 'audio'" in proc.stderr
    )


def test_setup_is_idempotent_on_lancedb(
    settings: Settings, minilm_fp32: Path, tmp_path: Path
) -> None:
    env = {"MODALFUSE_LANCEDB_URI": str(tmp_path / "db")}
    first = _run(["setup", "--json"], settings, **env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "engine": "lancedb",
        "index": "products",
        "created": "products-v1",
        "alias_target": "products-v1",
        "pipelines": [],
    }
    second = json.loads(_run(["setup", "--json"], settings, **env).stdout)
    assert second["created"] is None and second["alias_target"] == "products-v1"


def test_dashboards_export_is_the_shipped_file(settings: Settings) -> None:
    proc = _run(["dashboards", "export"], settings)
    assert proc.returncode == 0, proc.stderr
    shipped = Path(str(importlib.resources.files("modalfuse.mappings") / "dashboards.ndjson"))
    assert proc.stdout == shipped.read_text()
    renamed = _run(["dashboards", "export", "--index", "shop"], settings)
    assert '"title": "shop-deadletter"' in renamed.stdout


def test_align_command_trains_and_exports(
    settings: Settings, minilm_fp32: Path, tmp_path: Path
) -> None:
    sample = SAMPLE_DIR / "products.jsonl"
    proc = _run(
        [
            "align",
            "--catalog",
            str(sample),
            "--limit",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--out",
            str(tmp_path / "tower"),
            "--json",
        ],
        settings,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["epochs_run"] == 2 and Path(doc["encoder"], "image.onnx").is_file()
    assert "epoch 1:" in proc.stderr
    exported = _run(["export", "--kind", "image", "--model", doc["checkpoint"], "--json"], settings)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads(exported.stdout)
    assert manifest["kind"] == "image" and manifest["aligned_to"] == "all-MiniLM-L6-v2"
