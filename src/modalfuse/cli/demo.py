"""`modalfuse demo`: the main job, end to end, on the embedded default or the engine in settings.

Export the text encoder (cached), create the index (LanceDB unless MODALFUSE_ENGINE says
otherwise), start a worker on the broker in settings (the embedded one by default), ingest the
bundled sample catalogue through the queue with a progress bar, run a few example queries with
their explanation, then serve the HTTP API (or exit with `--no-serve`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from modalfuse.settings import Settings

QUERIES = ("red summer dress", "navy blue shirt for men", "black leather handbag", "running shoes")
DEMO_INDEX = "products"


def run_demo(
    settings: Settings, *, serve: bool, as_json: bool, host: str, port: int
) -> dict[str, Any]:
    from modalfuse.engines import open_engine
    from modalfuse.query.request import SearchRequest
    from modalfuse.query.searcher import Searcher
    from modalfuse.sample import SAMPLE_DIR, write_sample_jsonl
    from modalfuse.service.indexes import create_index
    from modalfuse.service.ingest import WorkerSpec, ingest_and_wait

    console = Console(stderr=True)
    # The demo replaces the index it uses: `products` in the embedded store, unless
    # MODALFUSE_INDEX names another (do that on a shared cluster).
    index = settings.index if "index" in settings.model_fields_set else DEMO_INDEX
    settings = settings.model_copy(update={"index": index})
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with console.status("exporting the text encoder (cached after the first run)"):
        searcher = Searcher(settings)
        searcher.warm_up()
    timings["encoders_s"] = time.perf_counter() - started

    step = time.perf_counter()
    # The worker opens its own connection; never share one across processes.
    with open_engine(settings) as engine:
        create_index(engine, settings, name=index, replace=True)  # from the sample again
    demo_dir = settings.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    path = demo_dir / "products.jsonl"
    count = write_sample_jsonl(path)
    with Progress(console=console) as progress:
        task = progress.add_task("ingesting the sample catalogue through the queue", total=count)
        # The sample's photos folder is registered as an image root in the data directory, so
        # `modalfuse serve` started later from another shell shows them too.
        report = ingest_and_wait(
            path,
            settings,
            index=index,
            worker=WorkerSpec(log=demo_dir / "worker.log"),
            timeout=600,
            image_roots=[SAMPLE_DIR],
            on_batch=lambda n: progress.advance(task, n),
        )
    timings["ingest_s"] = time.perf_counter() - step
    searcher.forget(index)

    examples: dict[str, list[dict[str, Any]]] = {}
    for query in QUERIES:
        response = searcher.search(SearchRequest(text=query, size=5, explain=True))
        examples[query] = _rows(response)
    # "More like this": the first product found for the first query, searched by its photo.
    first = next(iter(examples.values()), [])
    image_ref = (
        searcher.engine.fetch(index, [first[0]["id"]]).get(first[0]["id"], {}).get("image")
        if first
        else None
    )
    if image_ref and searcher.image_search_available(index):
        like = searcher.search(
            SearchRequest(image=Path(image_ref).read_bytes(), size=5, explain=True)
        )
        examples[f"photo of {first[0]['title']} (more like this)"] = _rows(like)
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "engine": settings.engine,
        "index": index,
        "documents": report.published,
        "indexed": report.indexed,
        "dead_lettered": report.dead_lettered,
        "retried": report.retried,
        "commit_retries": report.commit_retries,
        "dead_letter_reasons": report.dead_letter_reasons,
        "docs_per_s": report.docs_per_s,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "examples": examples,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _show(summary)
    if serve:
        import uvicorn

        from modalfuse.query.api import create_api

        Console().print(
            f"\nsearch page at [bold]http://{host}:{port}/[/] (API docs at /docs); Ctrl-C stops"
        )
        uvicorn.run(create_api(settings, searcher), host=host, port=port, log_level="warning")
    else:
        searcher.close()
    return summary


def _rows(response: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": hit.id,
            "title": hit.fields.get("title", ""),
            "score": round(hit.score, 5),
            "ranks": {name: part.rank for name, part in (hit.explain or {}).items()},
        }
        for hit in response.hits
    ]


def _show(summary: dict[str, Any]) -> None:
    from modalfuse.ingest.deadletters import describe

    out = Console()
    out.print(
        f"indexed {summary['indexed']} of {summary['documents']} products through the queue "
        f"in {summary['timings']['ingest_s']:.1f}s ({summary['docs_per_s']} docs/s)"
    )
    if summary["dead_lettered"]:
        out.print(
            describe(
                summary["dead_lettered"],
                summary["dead_letter_reasons"],
                total=summary["documents"],
            ),
            style="bold red",
            markup=False,
        )
    for query, hits in summary["examples"].items():
        out.print(f"\n[bold]{query}[/]")
        for hit in hits:
            ranks = ", ".join(f"{name} #{rank}" for name, rank in hit["ranks"].items())
            out.print(f"  {hit['score']:.4f}  {hit['id']:>6}  {hit['title']}  ({ranks})")
    out.print(f"\ndone in {summary['timings']['total_s']:.1f}s")
