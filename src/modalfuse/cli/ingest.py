"""`modalfuse ingest`, `modalfuse worker` and `modalfuse dlq`: the queue-fed write path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from modalfuse.cli.options import (
    EngineOpt,
    IndexOpt,
    JsonFlag,
    WorkerPool,
    WorkerPoolOpt,
    YesFlag,
    confirm,
    settings_for,
)

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
    index: IndexOpt = None,
    engine: EngineOpt = None,
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
    from modalfuse.ingest.deadletters import describe
    from modalfuse.sample import SAMPLE_DIR, write_sample_jsonl
    from modalfuse.service.ingest import ingest_and_wait

    settings = settings_for(engine)
    if (file is None) == (not sample):
        raise typer.BadParameter("give a FILE or --sample (not both)", param_hint="FILE")
    roots: list[Path] = []
    if file is None:
        file = settings.data_dir / "sample" / "products.jsonl"
        write_sample_jsonl(file)
        roots.append(SAMPLE_DIR)
    with Progress(console=err, transient=True) as progress:
        published = progress.add_task("publishing", total=None)
        indexed = progress.add_task("indexing", total=None, visible=wait_)
        report = ingest_and_wait(
            file,
            settings,
            index=index,
            wait_for=wait_,
            timeout=timeout,
            batch_size=batch_size,
            field_map=_field_map(field_map or []),
            image_roots=roots,
            on_published=lambda n: progress.advance(published, n),
            on_batch=lambda n: progress.advance(indexed, n),
        )
    summary = report.model_dump(exclude={"stage_s", "waited", "index"})
    if not wait_:
        summary = {k: summary[k] for k in ("published", "batches", "elapsed_s")}
    if report.dead_lettered:
        err.print(
            describe(report.dead_lettered, report.dead_letter_reasons, total=report.published)
        )
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
    pool: WorkerPoolOpt = WorkerPool.prefork,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    engine: EngineOpt = None,
) -> None:
    """Run an ingest worker: consume batches, encode, write, dead-letter what can never succeed."""
    from modalfuse.ingest.worker import run_worker

    run_worker(
        settings_for(engine),
        concurrency=concurrency,
        queues=(queues or "").split(","),
        pool=pool.value,
        loglevel=loglevel,
    )


@dlq_app.command("list")
def dlq_list(
    index: IndexOpt = None,
    engine: EngineOpt = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Dead-lettered messages with their error, field and reason."""
    from modalfuse.engines import open_engine

    settings = settings_for(engine)
    with open_engine(settings) as eng:
        records = eng.dead_letters(index or settings.index, limit=limit)
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
def dlq_retry(index: IndexOpt = None, engine: EngineOpt = None, as_json: JsonFlag = False) -> None:
    """Publish every dead-lettered message again (after fixing what made it fail)."""
    from modalfuse.engines import open_engine
    from modalfuse.service.deadletters import retry_dead_letters

    settings = settings_for(engine)
    with open_engine(settings) as eng:
        result = retry_dead_letters(eng, settings, index=index)
    print(json.dumps(result) if as_json else " ".join(f"{k}={v}" for k, v in result.items()))


@dlq_app.command("purge")
def dlq_purge(
    index: IndexOpt = None,
    engine: EngineOpt = None,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete every dead letter of an index."""
    from modalfuse.engines import open_engine

    confirm(yes, "purging deletes the records")
    settings = settings_for(engine)
    with open_engine(settings) as eng:
        removed = eng.drop_dead_letters(index or settings.index)
    print(json.dumps({"removed": removed}) if as_json else f"removed={removed}")
