"""How query cost grows with the corpus: `bench query --json` results drawn side by side.

Each results file is one engine and quantisation at one or more sizes; files of the same engine
and quantisation are one line. Panels: p50 and p95 per mode, the vector mode's recall@10 against
brute force, and the time to build the index.

    modalfuse bench plot os-*.json lancedb-*.json --out docs/img/scale.svg
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from modalfuse.errors import ConfigError

MODES = ("lexical", "vector", "hybrid")


def series(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per line label ("opensearch", "opensearch sq", ...), its sizes' figures by size."""
    lines: dict[str, dict[int, dict[str, Any]]] = {}
    for result in results:
        label = result.get("engine", "?")
        if result.get("quantization", "none") != "none":
            label += f" {result['quantization']}"
        if result.get("refine_factor"):
            label += f" refine {result['refine_factor']}"
        for figures in result.values():
            if isinstance(figures, dict) and "documents" in figures:
                lines.setdefault(label, {})[int(figures["documents"])] = figures
    if not lines:
        raise ConfigError("no `bench query --json` sizes in the results given")
    return {label: [by[s] for s in sorted(by)] for label, by in sorted(lines.items())}


def scale_plot(results: list[dict[str, Any]], out: Path) -> Path:
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("plotting needs matplotlib (pip install 'modalfuse[charts]')")
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable
    import matplotlib.pyplot as plt

    lines = series(results)
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.5))
    for label, points in lines.items():
        docs = [p["documents"] for p in points]
        for ax, mode in zip(axes[:3], MODES, strict=True):
            (line,) = ax.plot(docs, [p[mode]["p50_ms"] for p in points], "o-", label=label)
            ax.plot(docs, [p[mode]["p95_ms"] for p in points], "x--", color=line.get_color())
        axes[3].plot(docs, [p["recall_at_10"] for p in points], "o-", label=label)
        axes[4].plot(docs, [p["build_s"] for p in points], "o-", label=label)
    titles = [f"{m}: p50 (o) / p95 (x), ms" for m in MODES]
    titles += ["vector recall@10 vs brute force", "index build, s"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("documents")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[4].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
