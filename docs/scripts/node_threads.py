"""The CPU seconds of the local nodes' threads between two snapshots, grouped by the thread's
name as Linux keeps it (15 characters: every OpenSearch thread reads "opensearch[...", the JVM's
own are "C2 CompilerThre", "GC Thread#0", "G1 Conc#0", ...), so the JIT and the collector show
beside the nodes' own work (docs/opensearch.md).

    pids=$(pgrep -f 'opensearch-2.19.1/cluster/node-[0-9]/config' | tr '\\n' ' ')
    python docs/scripts/node_threads.py snap /tmp/a.json $pids
    ...  # the load to measure, e.g. docs/scripts/node_cpu_replay.py
    python docs/scripts/node_threads.py snap /tmp/b.json $pids
    python docs/scripts/node_threads.py diff /tmp/a.json /tmp/b.json
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path


def snapshot(pids: list[str]) -> dict[str, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = defaultdict(float)
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                comm = (task / "comm").read_text().strip()
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended between listing and reading
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[re.sub(r"\d+", "#", comm)] += (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    if sys.argv[1] == "snap":
        Path(sys.argv[2]).write_text(json.dumps(snapshot(sys.argv[3:])))
        return
    before = json.loads(Path(sys.argv[2]).read_text())
    after = json.loads(Path(sys.argv[3]).read_text())
    spent = {k: v - before.get(k, 0.0) for k, v in after.items()}
    total = sum(spent.values()) or 1.0
    print(f"total {sum(spent.values()):.2f} CPU-s")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{s:7.2f} {100 * s / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
