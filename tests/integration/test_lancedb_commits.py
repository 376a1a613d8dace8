"""Every commit to a LanceDB table survives a concurrent commit: writers, deletes, optimize()
(compaction, tombstone purge, ANN and full-text index builds), dead letters and the query log,
from several processes at once on one table. Conflicts are retried with backoff and counted."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modalfuse.engines.base import DeadLetter, Deletion, Document
from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.settings import Settings

DIM = 8
BATCH = 25
WRITERS = 3
PER_WRITER = 300
SEEDED = 200  # written before the race; the deleter removes the even ones during it


def _settings(uri: str) -> Settings:
    # A low ANN threshold so that optimize() builds vector indices while the writers commit.
    return Settings(lancedb_uri=uri, lancedb_ann_threshold=256, tombstone_retention_s=0)


def _docs(prefix: str, ids: range, version: int) -> list[Document]:
    rng = np.random.default_rng(len(prefix) + ids.start)
    return [
        Document(
            id=f"{prefix}-{i}",
            version=version,
            fields={"title": f"{prefix} item {i} red dress", "price": float(i)},
            vectors={"text_vector": rng.standard_normal(DIM).astype(np.float32)},
        )
        for i in ids
    ]


def _run(role: str, uri: str, worker: int, out: Any) -> None:
    eng = LanceDBEngine(_settings(uri))
    failed: list[str] = []
    try:
        if role == "writer":
            for start in range(0, PER_WRITER, BATCH):
                docs = _docs(f"w{worker}", range(start, start + BATCH), 1)
                result = eng.upsert("race", docs)
                if result.failed or len(result.written) != BATCH:
                    failed.append(f"upsert {start}: {result.failed[:1]}")
                # The same batch again at a newer version: an update racing the others.
                again = eng.upsert("race", _docs(f"w{worker}", range(start, start + BATCH), 2))
                if again.failed:
                    failed.append(f"re-upsert {start}: {again.failed[:1]}")
        elif role == "deleter":
            for start in range(0, SEEDED, 2 * BATCH):
                gone = [
                    Deletion(id=f"seed-{i}", version=5) for i in range(start, start + 2 * BATCH, 2)
                ]
                result = eng.delete("race", gone)
                if result.failed:
                    failed.append(f"delete {start}: {result.failed[:1]}")
        elif role == "optimizer":
            for _ in range(6):
                eng.optimize("race")
        elif role == "sidestores":
            for n in range(12):
                now = datetime.now(UTC)
                record = DeadLetter(id=f"dl-{worker}-{n}", index="race", doc_id=str(n),
                                    message="{}", error_type="InvalidDocument", field="title",
                                    reason="test", attempts=1, time=now)  # fmt: skip
                eng.dead_letter("race", [record])
                eng.append_query_log([_log_record(now, n)])
            eng.drop_dead_letters("race", [f"dl-{worker}-0"])
    except Exception:
        failed.append(traceback.format_exc())
    out.put({"role": role, "failed": failed, "retries": eng.commit_retries})
    eng.close()


def _log_record(now: datetime, n: int) -> Any:
    return {
        "time": now, "index": "race", "query": f"q{n}", "has_image": False, "filters": "[]",
        "retrievers": ["lexical"], "fusion": "auto", "latency_ms": "{}", "total_ms": 1.0,
        "hits": 1, "top_ids": ["a"], "zero_results": False, "top_contributors": ["lexical"],
    }  # fmt: skip


def test_concurrent_writers_deletes_and_optimize_lose_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "lancedb")
    schema = resolve(parse_schema(load_schema().model_dump() | {"name": "race"}), {"text": DIM})
    with LanceDBEngine(_settings(uri)) as parent:
        parent.create(schema)
        assert len(parent.upsert("race", _docs("seed", range(SEEDED), 1)).written) == SEEDED
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    roles = [("writer", w) for w in range(WRITERS)]
    roles += [("deleter", 0), ("optimizer", 0), ("sidestores", 0), ("sidestores", 1)]
    procs = [ctx.Process(target=_run, args=(role, uri, w, out)) for role, w in roles]
    for p in procs:
        p.start()
    reports = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    failures = [f for r in reports for f in r["failed"]]
    assert failures == [], "\n".join(failures)  # zero failed batches, in every role
    with LanceDBEngine(_settings(uri)) as final:
        final.optimize("race")
        table = final._table("race")
        rows = table.search().select(["id", "_version", "_deleted"]).limit(None).to_list()
        live = sorted(r["id"] for r in rows if not r["_deleted"])
        expected = sorted(
            [f"w{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)]
            + [f"seed-{i}" for i in range(1, SEEDED, 2)]
        )
        assert live == expected  # every id present once, every deleted one gone
        assert {r["_version"] for r in rows if r["id"].startswith("w")} == {2}
        letters = final.dead_letters("race", limit=1000)
        assert len(letters) == 2 * 12 - 2
        assert len(final.recent_queries(limit=1000)) == 2 * 12
    print("commit retries:", [(r["role"], r["retries"]) for r in reports])
