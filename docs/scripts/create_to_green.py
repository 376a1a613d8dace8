"""The nodes' CPU seconds a new index's creation costs, in its parts: `create_index` itself,
then until every copy has started (green), 3 s after, and a drop with 3 s after it
(docs/opensearch.md). Its figures there were taken before `create` waited for every copy;
since it does, that cost lands in the first column.

    # the cluster exports of docs/opensearch.md, then
    .venv/bin/python docs/scripts/create_to_green.py
"""

from __future__ import annotations

import time

from modalfuse.engines import open_engine
from modalfuse.engines.base import NodeCpu
from modalfuse.service.indexes import create_index
from modalfuse.settings import Settings


def main() -> None:
    settings = Settings()
    with open_engine(settings) as engine:
        assert isinstance(engine, NodeCpu), "a server engine is needed"

        def cpu() -> float:
            return sum(engine.node_cpu_s().values())

        client = engine.client  # type: ignore[attr-defined]
        for i in range(4):
            time.sleep(3)
            c0, t0 = cpu(), time.perf_counter()
            index = create_index(engine, settings, name=f"create-to-green-{i}").created
            c1, t1 = cpu(), time.perf_counter()
            client.cluster.health(index=index, wait_for_status="green")
            c2, t2 = cpu(), time.perf_counter()
            time.sleep(3)
            c3 = cpu()
            engine.drop(f"create-to-green-{i}")
            time.sleep(3)
            print(
                f"create {c1 - c0:.2f} ({t1 - t0:.2f} s)  to green {c2 - c1:.2f} "
                f"({t2 - t1:.2f} s)  3 s after {c3 - c2:.2f}  drop + 3 s {cpu() - c3:.2f}"
            )


if __name__ == "__main__":
    main()
