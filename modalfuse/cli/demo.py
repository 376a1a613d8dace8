"""`modalfuse demo`: until ingest and search land, export the encoders, encode the bundled
sample catalogue, and show nearest products for a few queries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
QUERIES = ("red summer dress", "navy blue shirt for men", "black leather handbag", "running shoes")


def run_demo(settings: Settings, *, as_json: bool) -> dict[str, Any]:
    from modalfuse.onnx_models.export import export_encoder

    console = Console(stderr=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with console.status("exporting encoders (cached after the first run)"):
        text_dir = export_encoder(settings.text_encoder, settings=settings)
        int8_dir = export_encoder(settings.text_encoder, settings=settings, quantize=True)
    timings["export_s"] = time.perf_counter() - started

    products = [
        json.loads(line)
        for line in (SAMPLE / "products.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    titles = [p["productDisplayName"] for p in products]
    encoder = OnnxEncoder(int8_dir, settings=settings)
    step = time.perf_counter()
    vectors = np.empty((len(titles), encoder.dim), dtype=np.float32)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("encoding sample catalogue", total=len(titles))
        for start in range(0, len(titles), 256):
            vectors[start : start + 256] = encoder.encode_texts(titles[start : start + 256])
            progress.advance(task, len(titles[start : start + 256]))
    timings["encode_s"] = time.perf_counter() - step

    examples = {}
    for query, qvec in zip(QUERIES, encoder.encode_texts(list(QUERIES)), strict=True):
        scores = vectors @ qvec
        top = np.argsort(-scores)[:5]
        examples[query] = [
            {"id": products[i]["id"], "title": titles[i], "score": round(float(scores[i]), 4)}
            for i in top
        ]
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "encoders": {"text_fp32": str(text_dir), "text_int8": str(int8_dir)},
        "documents": len(titles),
        "docs_per_s": round(len(titles) / timings["encode_s"], 1),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "examples": examples,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out = Console()
        out.print(
            f"encoded {len(titles)} product titles at {summary['docs_per_s']} docs/s (int8, {encoder.provider})"
        )
        for query, hits in examples.items():
            out.print(f"\n[bold]{query}[/]")
            for hit in hits:
                out.print(f"  {hit['score']:.3f}  {hit['id']:>6}  {hit['title']}")
        out.print(
            f"\ndone in {timings['total_s']:.1f}s. Ingest, the index and the search page arrive with later releases."
        )
    return summary
