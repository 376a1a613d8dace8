"""The nodes' CPU seconds for writing the same fashion documents at the pace `bench ingest`
writes them, with whatever index settings the environment gives (docs/opensearch.md). The
documents are encoded once before anything is timed, so only the nodes work while it measures:
the nodes' share, without the encoders' noise.

    # the cluster exports of docs/opensearch.md, then
    .venv/bin/python docs/scripts/node_cpu_replay.py --docs 2000 --rate 200 --repeat 3
    MODALFUSE_OPENSEARCH_LOAD_REFRESH_INTERVAL=-1 \
        .venv/bin/python docs/scripts/node_cpu_replay.py --docs 2000 --rate 200 --repeat 3

Each repeat loads a new index, ends the load as `ingest --wait` does (`finish_load`), and drops
it. Printed per repeat: the nodes' CPU seconds during the writes and during the finish.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from modalfuse.benchmarks.ingest import RawEncoders, encoded, fashion_docs
from modalfuse.engines import open_engine
from modalfuse.engines.base import BulkLoads, NodeCpu
from modalfuse.service.indexes import create_index
from modalfuse.settings import Settings


def cpu(engine: NodeCpu) -> float:
    return sum(engine.node_cpu_s().values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="documents per second")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    batch = settings.ingest_batch_size
    docs = fashion_docs(args.docs, images=settings.image_encoder is not None)
    raw = RawEncoders(settings)
    with open_engine(settings) as engine:
        assert isinstance(engine, NodeCpu), "a server engine: MODALFUSE_ENGINE=opensearch"
        written = None
        for n in range(args.repeat):
            index = f"node-cpu-replay-{os.getpid()}-{n}"
            create_index(engine, settings, name=index)
            try:
                written = written or encoded(engine, index, docs, raw)
                before, started = cpu(engine), time.perf_counter()
                for i in range(0, len(written), batch):
                    failed = engine.upsert(index, written[i : i + batch]).failed
                    assert not failed, failed[0]
                    # The benchmark's pace: the nodes idle between batches as they do there.
                    wait = started + (i + batch) / args.rate - time.perf_counter()
                    time.sleep(max(0.0, wait))
                # Process stats are sampled once a second.
                time.sleep(1.1)
                wrote = cpu(engine)
                restored = engine.finish_load(index) if isinstance(engine, BulkLoads) else {}
                time.sleep(1.1)
                finished = cpu(engine)
            finally:
                engine.drop(index)
            print(
                json.dumps(
                    {
                        "docs": len(written),
                        "rate": args.rate,
                        "nodes_cpu_s_writes": round(wrote - before, 2),
                        "nodes_cpu_s_finish": round(finished - wrote, 2),
                        "settings_restored": restored,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
