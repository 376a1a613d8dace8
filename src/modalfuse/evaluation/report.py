"""How `modalfuse eval` shows its figures: a terminal table, JSON, a bar chart, per-query rows."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table


def metric_names(k: int, deep: int = 100) -> list[str]:
    return [f"ndcg@{k}", f"recall@{k}", f"recall@{deep}", f"mrr@{k}"]


def table(modes: Mapping[str, Mapping[str, Any]], *, k: int, title: str) -> Table:
    names = metric_names(k)
    # Group-level figures, where the corpus carries styles and colours.
    names += [
        n
        for n in (f"group_ndcg@{k}", f"styles@{k}", f"colours@{k}")
        if any(n in m for m in modes.values())
    ]
    out = Table(title=title)
    out.add_column("mode")
    for name in names:
        out.add_column(name, justify="right")
    out.add_column("queries", justify="right")
    out.add_column("p50 ms", justify="right")
    best = {
        n: max((m.get(n, 0.0) for m in modes.values() if m.get("queries")), default=0.0)
        for n in names
    }
    for mode, figures in modes.items():
        if not figures.get("queries"):
            out.add_row(mode, *["-"] * len(names), "0", "-")
            continue
        cells = []
        for n in names:
            value = figures.get(n, 0.0)
            text = f"{value:.2f}" if n.startswith(("styles@", "colours@")) else f"{value:.4f}"
            cells.append(f"[bold]{text}[/]" if value == best[n] else text)
        out.add_row(mode, *cells, str(figures["queries"]), f"{figures.get('p50_ms', 0):.1f}")
    return out


def chart(modes: Mapping[str, Mapping[str, Any]], path: Path, *, k: int, title: str) -> Path:
    """Grouped bars: one group per metric, one bar per mode."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    names = metric_names(k)
    shown = [m for m, f in modes.items() if f.get("queries")]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 0.4 * len(shown)), 4.8))
    width = 0.8 / max(len(shown), 1)
    for i, mode in enumerate(shown):
        xs = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(names))]
        values = [float(modes[mode].get(n, 0.0)) for n in names]
        bars = ax.bar(xs, values, width, label=mode)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=6, padding=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    # Below the axes, so no bar is ever hidden behind it.
    ax.legend(fontsize=7, ncols=min(len(shown), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(
    out: Path,
    result: Mapping[str, Any],
    per_query: Sequence[Mapping[str, Any]],
    *,
    k: int,
    title: str,
) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with (out / "per_query.jsonl").open("w", encoding="utf-8") as f:
        for row in per_query:
            f.write(json.dumps(row) + "\n")
    files = {"results": str(out / "results.json"), "per_query": str(out / "per_query.jsonl")}
    if importlib.util.find_spec("matplotlib") is None:
        # Charts are an optional extra: the figures are all in results.json regardless.
        files["chart_skipped"] = "matplotlib is not installed (pip install 'modalfuse[charts]')"
        return files
    files["chart"] = str(chart(result["modes"], out / "chart.png", k=k, title=title))
    return files
