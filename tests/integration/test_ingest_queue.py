"""Queue-fed ingest end to end: real brokers, real worker processes, real engine and encoders."""

from __future__ import annotations

import base64
import io
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modalfuse.engines.base import KnnQuery, LexicalQuery
from modalfuse.ingest.producer import Producer, ingest_file, wait
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings
from tests.integration.ingest_support import (
    RABBITMQ,
    REDIS,
    catalogue_file,
    create_index,
    kill,
    require_broker,
    wait_for,
    worker,
)

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]
FIELDS = {"title": 2.0, "description": 1.0}


def base_settings(root: Path, models: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=root,
        model_cache_dir=models,
        intra_op_threads=1,
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
        **extra,
    )


@pytest.fixture(scope="module")
def embedded(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, minilm_fp32: Path, tiny_clip: Path
) -> Any:
    """One worker on the embedded broker, with MiniLM for text and a tiny CLIP for images."""
    root = tmp_path_factory.mktemp("embedded")
    s = base_settings(root, settings.models_dir, image_encoder=str(tiny_clip))
    dims = {"text": 384, "image": read_manifest(tiny_clip).dim}
    with worker(s, log=root / "worker.log") as proc:
        yield s, dims, proc


def test_catalogue_with_images_through_the_embedded_broker(
    embedded: Any, tmp_path: Path, tiny_clip: Path
) -> None:
    s, dims, _ = embedded
    engine = create_index(s, "e2e", dims)
    path, ids = catalogue_file(tmp_path / "cat", 200)
    published, results = ingest_file(path, settings=s, index="e2e", batch_size=32)
    assert published == 200 and len(results) == 7
    totals = wait(results, timeout=300)
    assert totals == {
        "indexed": 200, "stale": 0, "dead_lettered": 0, "retried": 0, "commit_retries": 0
    }  # fmt: skip
    stats = engine.stats("e2e")
    assert stats.documents == 200 and stats.vector_fields == {
        "text_vector": 384,
        "image_vector": dims["image"],
    }
    hits = engine.lexical("e2e", LexicalQuery(text="watch", fields=FIELDS, k=5))
    assert hits and all(h.id in ids for h in hits)
    # The stored image vector is the encoder's output for that very image: search by it.
    some = ids[17]
    image = tmp_path / "cat" / "images" / f"{some}.jpg"
    [query] = OnnxEncoder(tiny_clip, settings=s).encode_images([image])
    top = engine.knn("e2e", KnnQuery(field="image_vector", vector=query, k=1))
    assert top[0].id == some and top[0].score == pytest.approx(1.0, abs=1e-4)
    assert (top[0].source or {})["image"] == str(image)


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_poison_is_dead_lettered_and_the_good_documents_are_indexed(
    embedded: Any, tmp_path: Path
) -> None:
    s, dims, proc = embedded
    engine = create_index(s, "poison", dims)
    good = [{"id": f"good-{i}", "title": f"Plain cotton shirt {i}"} for i in range(5)]
    good.append(
        {"id": "good-img", "title": "Shirt with a picture", "image": data_uri(png((16, 16)))}
    )
    poison = [
        ("{this is not json", "message", "not JSON"),
        ({"title": "no id at all"}, "id", "Field required"),
        ({"id": "p-type", "price": "cheap"}, "fields.price", "expected a number"),
        ({"id": "p-unknown", "colour_name": "red"}, "fields.colour_name", "not a field of index"),
        ({"id": "p-corrupt", "image": data_uri(b"\x89PNG\r\n\x1a\n garbage")}, "fields.image", ""),
        (
            {"id": "p-bomb", "image": data_uri(png((12_000, 12_000), mode="1"))},
            "fields.image",
            "exceeds",
        ),
        (
            {"id": "p-loop", "image": "http://127.0.0.1:9/a.jpg"},
            "fields.image",
            "non-public address",
        ),
        (
            {"id": "p-meta", "image": "http://169.254.169.254/latest/meta-data/"},
            "fields.image",
            "non-public",
        ),
        (
            {"id": "p-escape", "image": "/etc/passwd"},
            "fields.image",
            "outside the allowed image roots",
        ),
    ]
    lines = [json.dumps(d) for d in good[:3]]
    lines += [p if isinstance(p, str) else json.dumps(p) for p, _, _ in poison]
    lines += [json.dumps(d) for d in good[3:]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    published, results = ingest_file(path, settings=s, index="poison", batch_size=64)
    assert published == len(lines) and len(results) == 1  # one batch: poison beside the good
    totals = wait(results, timeout=300)
    assert totals == {
        "indexed": 6, "stale": 0, "dead_lettered": len(poison), "retried": 0, "commit_retries": 0
    }  # fmt: skip
    assert proc.poll() is None  # the worker kept going
    assert engine.stats("poison").documents == 6
    letters = engine.dead_letters("poison", limit=100)
    assert len(letters) == len(poison)
    by_doc = {r.doc_id: r for r in letters}
    for raw, field, reason in poison:
        doc_id = raw.get("id") if isinstance(raw, dict) else None
        record = by_doc[doc_id] if doc_id else next(r for r in letters if r.field == field)
        assert record.field == field, (raw, record)
        assert reason in record.reason, (raw, record.reason)
        assert record.attempts == 1 and record.error_type in ("InvalidDocument", "InvalidImage")
    assert json.loads(by_doc["p-type"].message)["fields"] == {"price": "cheap"}


def test_a_delete_then_a_stale_upsert_leaves_the_document_deleted(embedded: Any) -> None:
    s, dims, _ = embedded
    engine = create_index(s, "versions", dims)
    producer = Producer(s)
    steps = [
        {
            "op": "upsert",
            "index": "versions",
            "id": "d1",
            "version": 2,
            "fields": {"title": "Linen qqvers"},
        },
        {"op": "delete", "index": "versions", "id": "d1", "version": 3},
        {
            "op": "upsert",
            "index": "versions",
            "id": "d1",
            "version": 1,
            "fields": {"title": "Old qqvers"},
        },
    ]
    outcomes = [wait([(1, producer.publish([step]))], timeout=120) for step in steps]
    assert [o["indexed"] for o in outcomes] == [1, 1, 0] and outcomes[2]["stale"] == 1
    assert engine.lexical("versions", LexicalQuery(text="qqvers", fields=FIELDS)) == []
    assert engine.stats("versions").documents == 0


@pytest.mark.service
@pytest.mark.parametrize("broker", [RABBITMQ, REDIS], ids=["rabbitmq", "redis"])
def test_real_brokers(broker: str, tmp_path: Path, settings: Settings, minilm_fp32: Path) -> None:
    require_broker(broker)
    queue = f"modalfuse.test.{uuid.uuid4().hex[:8]}"
    s = base_settings(tmp_path / "data", settings.models_dir, broker_url=broker, ingest_queue=queue)
    engine = create_index(s, "brokered", {"text": 384})
    path, ids = catalogue_file(tmp_path / "cat", 100, with_images=False)
    with worker(s, log=tmp_path / "worker.log"):
        producer = Producer(s)
        published, results = ingest_file(path, settings=s, index="brokered", producer=producer)
        totals = wait(results, timeout=300)
        with producer.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    assert published == 100 and totals["indexed"] == 100 and totals["dead_lettered"] == 0
    assert engine.stats("brokered").documents == 100
    hits = engine.lexical("brokered", LexicalQuery(text="shirt", fields=FIELDS, k=3))
    assert hits and all(h.id in ids for h in hits)


def test_kill_9_mid_run_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, settings: Settings, minilm_fp32: Path
) -> None:
    s = base_settings(tmp_path / "data", settings.models_dir, ingest_batch_size=32)
    engine = create_index(s, "crash", {"text": 384})
    path, ids = catalogue_file(tmp_path / "cat", 2000, with_images=False)
    published, results = ingest_file(path, settings=s, index="crash")
    assert published == 2000
    log = tmp_path / "worker.log"
    with worker(s, log=log) as first:
        unacked = s.broker_root / "unacked"

        def mid_run() -> bool:
            return engine.stats("crash").documents >= 300 and any(unacked.iterdir())

        wait_for(mid_run, timeout=300, what="300 documents and a batch in flight")
        kill(first, signal.SIGKILL)
    done_before = engine.stats("crash").documents
    assert done_before < 2000, "the worker finished before it could be killed"
    orphans = list((s.broker_root / "unacked").iterdir())
    assert orphans, "a killed worker leaves its in-flight batch unacknowledged"
    broker = s.broker_root

    def drained() -> bool:
        return not any((broker / "queue").iterdir()) and not any((broker / "unacked").iterdir())

    with worker(s, log=log):
        totals = wait(results, timeout=600)
        # A batch the killed worker had finished (its result stored) but not acked is delivered
        # again after every result is in: the worker must still take it and ack it, not leave it.
        wait_for(drained, timeout=120, what="the queue and the unacked folder to empty")
    assert engine.stats("crash").documents == 2000
    table = engine._table("crash")
    stored = table.search().select(["id"]).limit(None).to_list()
    assert sorted(r["id"] for r in stored) == sorted(ids)  # exactly the submitted, once each
    assert engine.dead_letters("crash") == []
    assert totals["dead_lettered"] == 0
    assert drained(), "a graceful stop leaves nothing unacknowledged"
    print(f"killed after {done_before} of 2000; {len(orphans)} batch(es) redelivered")


def test_cli_ingest_wait_json_and_dead_letters(embedded: Any, tmp_path: Path) -> None:
    import subprocess

    from tests.cli_support import CLI, env_for

    s, dims, _ = embedded
    create_index(s, "clidocs", dims)
    path = tmp_path / "docs.jsonl"
    docs = [{"id": f"c{i}", "title": f"Blue denim jacket {i}"} for i in range(3)]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n{oops\n", encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env_for(s), capture_output=True, text=True, timeout=300, check=False
        )

    proc = cli("ingest", str(path), "--index", "clidocs", "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {k: summary[k] for k in ("published", "indexed", "dead_lettered")} == {
        "published": 4,
        "indexed": 3,
        "dead_lettered": 1,
    }
    assert summary["elapsed_s"] > 0 and summary["docs_per_s"] > 0
    # The loss is never silent: counted with its reason in the JSON and on screen.
    [reason] = summary["dead_letter_reasons"]
    assert (reason["field"], reason["count"], reason["error_type"]) == (
        "message",
        1,
        "InvalidDocument",
    )
    assert "1 of 4 document(s) dead-lettered" in proc.stderr
    letters = json.loads(cli("dlq", "list", "--index", "clidocs", "--json").stdout)
    assert [(r["field"], r["message"]) for r in letters] == [("message", "{oops")]
    assert json.loads(cli("dlq", "purge", "--index", "clidocs", "--yes", "--json").stdout) == {
        "removed": 1
    }
