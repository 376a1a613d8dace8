"""`modalfuse ingest`, `modalfuse worker` and `modalfuse dlq`: the queue-fed write path."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from modalfuse.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
NameOpt = Annotated[str | None, typer.Option("--index", help="Alias name (default: settings).")]
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect, retry and purge dead letters.")
err = Console(stderr=True)


def _field_map(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise typer.BadParameter(f"expected SRC=DST, got {pair!r}", param_hint="--map")
        out[src] = dst
    return out


def ingest(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="JSONL documents or messages."),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Publish the bundled 2,000-product sample catalogue.")
    ] = False,
    index: NameOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Documents per task.")] = None,
    field_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="Rename a field: SRC=DST (e.g. _id=id text=description)."),
    ] = None,
    wait_: Annotated[
        bool, typer.Option("--wait", help="Wait until every document is indexed or dead-lettered.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Give up waiting after this many seconds.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Publish a JSONL file to the ingest queue, with a progress bar."""
    from modalfuse.ingest.producer import ingest_file, wait

    settings = Settings()
    if (file is None) == (not sample):
        raise typer.BadParameter("give a FILE or --sample (not both)", param_hint="FILE")
    if file is None:
        from modalfuse.sample import write_sample_jsonl

        file = settings.data_dir / "sample" / "products.jsonl"
        write_sample_jsonl(file)
    started = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("publishing", total=None)
        published, results = ingest_file(
            file,
            settings=settings,
            index=index,
            field_map=_field_map(field_map or []),
            batch_size=batch_size,
            on_published=lambda n: progress.advance(task, n),
        )
        summary: dict[str, object] = {"published": published, "batches": len(results)}
        if wait_:
            done = progress.add_task("indexing", total=published)
            totals = wait(results, timeout=timeout, on_batch=lambda n, _: progress.advance(done, n))
            summary |= totals
            if totals.get("indexed"):
                from modalfuse.engines import open_engine

                written_to = open_engine(settings)
                if written_to.needs_periodic_optimize:
                    # Rows written since the last optimize are outside the full-text index and
                    # scanned on every query: fold them in now the burst is over.
                    written_to.optimize(index or settings.index)
    elapsed = time.perf_counter() - started
    summary["elapsed_s"] = round(elapsed, 2)
    if wait_:
        summary["docs_per_s"] = round(published / elapsed, 1) if elapsed > 0 else 0.0
    lost = int(summary.get("dead_lettered", 0) or 0)  # type: ignore[call-overload]
    if lost:
        from modalfuse.engines import open_engine
        from modalfuse.ingest.deadletters import describe, reasons_of

        summary["dead_letter_reasons"] = reasons_of(
            open_engine(settings), index or settings.index, lost
        )
        err.print(describe(lost, summary["dead_letter_reasons"], total=published))  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(summary))
        return
    Console().print(" ".join(f"{k}={v}" for k, v in summary.items() if k != "dead_letter_reasons"))


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Worker processes (or threads); default: one per CPU core."),
    ] = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: settings).")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run an ingest worker: consume batches, encode, write, dead-letter what can never succeed."""
    from modalfuse.ingest.app import create_app, worker_argv

    settings = Settings()
    if pool not in ("prefork", "solo", "threads"):
        raise typer.BadParameter("must be prefork, solo or threads", param_hint="--pool")
    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    if settings.intra_op_threads == 0 and processes > 1:
        # Processes share the cores: each encoder gets its slice. Several one-thread sessions
        # beat one session on every core (measured: 1.0 vs 0.8 of the raw encoder's docs/s).
        threads = max(1, (os.cpu_count() or 1) // processes)
        settings = settings.model_copy(update={"intra_op_threads": threads})
    app = create_app(settings)
    names = [q.strip() for q in (queues or settings.ingest_queue).split(",") if q.strip()]
    app.worker_main(worker_argv(concurrency=processes, queues=names, pool=pool, loglevel=loglevel))


@dlq_app.command("list")
def dlq_list(
    index: NameOpt = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Dead-lettered messages with their error, field and reason."""
    from modalfuse.engines import open_engine

    settings = Settings()
    records = open_engine(settings).dead_letters(index or settings.index, limit=limit)
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in records], default=str, indent=2))
        return
    table = Table("time", "doc_id", "error", "field", "reason", "attempts")
    for r in records:
        table.add_row(
            r.time.isoformat(timespec="seconds"),
            r.doc_id or "-",
            r.error_type,
            r.field or "-",
            r.reason,
            str(r.attempts),
        )
    Console().print(table)


@dlq_app.command("retry")
def dlq_retry(index: NameOpt = None, as_json: JsonFlag = False) -> None:
    """Publish every dead-lettered message again (after fixing what made it fail)."""
    from modalfuse.engines import open_engine
    from modalfuse.ingest.producer import Producer

    settings = Settings()
    name = index or settings.index
    engine = open_engine(settings)
    records = engine.dead_letters(name, limit=100_000)
    items = []
    for r in records:
        try:
            items.append(json.loads(r.message))
        except json.JSONDecodeError:
            items.append(r.message)
    Producer(settings).publish_all(items)
    dropped = engine.drop_dead_letters(name, [r.id for r in records])
    result = {"republished": len(items), "removed": dropped}
    print(json.dumps(result) if as_json else " ".join(f"{k}={v}" for k, v in result.items()))


@dlq_app.command("purge")
def dlq_purge(
    index: NameOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this deletes the records.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete every dead letter of an index."""
    from modalfuse.engines import open_engine

    if not yes:
        raise typer.BadParameter("purging deletes the records; add --yes", param_hint="--yes")
    settings = Settings()
    removed = open_engine(settings).drop_dead_letters(index or settings.index)
    print(json.dumps({"removed": removed}) if as_json else f"removed={removed}")
