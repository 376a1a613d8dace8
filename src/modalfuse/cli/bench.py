"""`modalfuse bench ...`: the one front end of the benchmarks (speed and memory are measured
here, never in timed tests). Each prints a table, or with `--json` the whole result."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from modalfuse.cli.options import (
    EngineOpt,
    JsonFlag,
    LexicalFieldsOpt,
    WorkerPool,
    WorkerPoolOpt,
    common_request_fields,
    settings_for,
)
from modalfuse.sample import SAMPLE_DIR


class Quantization(StrEnum):
    none = "none"
    sq = "sq"


bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks: encoders, ingest, query, fusion, alignment."
)
FashionOpt = Annotated[
    Path,
    typer.Option(
        exists=True, file_okay=False, help="Fashion catalogue folder (default: the bundled sample)."
    ),
]
ScifactOpt = Annotated[
    Path | None, typer.Option(exists=True, file_okay=False, help="BEIR SciFact folder.")
]


def _show(result: dict[str, Any], as_json: bool, render: Any) -> None:
    print(json.dumps(result, indent=2) if as_json else render(result))


@bench_app.command("encoders")
def encoders(
    fashion: FashionOpt = SAMPLE_DIR,
    scifact: ScifactOpt = None,
    titles: Annotated[int, typer.Option(help="Catalogue titles to encode.")] = 2000,
    abstracts: Annotated[int, typer.Option(help="SciFact abstracts to encode.")] = 256,
    rounds: Annotated[int, typer.Option(help="Timed rounds; the median is reported.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Texts per encoder call.")] = 32,
    zh: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A Chinese judged set (taobao-cosmetics): measure only the prebuilt encoders, "
            "bge-small-zh-v1.5 against all-MiniLM-L6-v2, fp32 and int8 (no PyTorch).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Texts/s of PyTorch fp32, ORT fp32 and ORT int8, plus the int8 nDCG@10 change."""
    from modalfuse.benchmarks import encoders as bench

    if zh is not None:
        from modalfuse.benchmarks import chinese_encoders

        result = chinese_encoders.run(settings_for(), zh, rounds=rounds)
        _show(result, as_json, chinese_encoders.render)
        return
    result = bench.run(
        settings=settings_for(),
        fashion=fashion,
        scifact=scifact,
        titles=titles,
        abstracts=abstracts,
        rounds=rounds,
        batch_size=batch_size,
    )
    _show(result, as_json, bench.render)


@bench_app.command("ingest")
def ingest(
    fashion: FashionOpt = SAMPLE_DIR,
    fashion_limit: Annotated[int, typer.Option(help="Catalogue products to ingest.")] = 2000,
    scifact: ScifactOpt = None,
    scifact_limit: Annotated[int, typer.Option(help="SciFact abstracts to ingest.")] = 1000,
    batch_size: Annotated[int | None, typer.Option(help="Documents per task.")] = None,
    pool: WorkerPoolOpt = WorkerPool.prefork,
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core).")
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Timed rounds, each against the encoders just before it.")
    ] = 3,
    warmup: Annotated[
        int, typer.Option(min=0, help="Untimed documents through the whole path first.")
    ] = 500,
    node_warmup: Annotated[
        int,
        typer.Option(
            min=0,
            help="On a server engine, untimed writes of already-encoded documents after the "
            "warm-up, so the nodes' JIT settles as on a cluster that has run for a while "
            "(0: none).",
        ),
    ] = 0,
    engine: EngineOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """End-to-end ingest docs/s against raw encoder docs/s (the median of the rounds' ratios),
    and where the difference goes."""
    from modalfuse.benchmarks import ingest as bench

    result = bench.run(
        settings_for(engine),
        fashion=fashion,
        fashion_limit=fashion_limit,
        scifact=scifact,
        scifact_limit=scifact_limit,
        batch_size=batch_size,
        pool=pool.value,
        concurrency=concurrency,
        rounds=rounds,
        warmup=warmup,
        node_warmup=node_warmup,
    )
    _show(result, as_json, bench.render)


@bench_app.command("query")
def query(
    sizes: Annotated[str, typer.Option(help="Corpus sizes, comma-separated.")] = "10000,100000",
    queries: Annotated[int, typer.Option(help="Queries per mode.")] = 200,
    window: Annotated[int, typer.Option(help="Candidates per retriever.")] = 100,
    quantization: Annotated[
        Quantization, typer.Option(help="Vector quantisation in the index (OpenSearch: sq).")
    ] = Quantization.none,
    engine: EngineOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """p50/p95 of lexical, vector and hybrid (client- and, where the engine has it,
    server-side) retrieval, fusion alone, the ranking stages, and query encoding."""
    from modalfuse.benchmarks import query as bench

    try:
        parsed = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError as e:
        raise typer.BadParameter("expected sizes like 10000,100000", param_hint="--sizes") from e
    result = bench.run(
        settings_for(engine),
        sizes=parsed,
        queries=queries,
        window=window,
        quantization=quantization.value,
    )
    _show(result, as_json, bench.render)


@bench_app.command("plot")
def plot(
    results: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="`bench query --json` files.")
    ],
    out: Annotated[Path, typer.Option(help="Where the SVG goes.")] = Path("scale.svg"),
) -> None:
    """How latency, recall and build time grow with the corpus, one line per results file."""
    from modalfuse.benchmarks import plot as bench_plot

    try:
        loaded = [json.loads(p.read_text(encoding="utf-8")) for p in results]
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"not bench query JSON: {e}", param_hint="RESULTS") from e
    bench_plot.scale_plot(loaded, out)
    typer.echo(f"wrote {out}")


@bench_app.command("fusion")
def fusion(
    dataset: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="BEIR folder.")],
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the dev/test query split.")] = 0,
    engine: EngineOpt = None,
    lexical_fields: LexicalFieldsOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """nDCG@10 of each fusion rule on the same retrieved lists, on a dev and a test half."""
    from modalfuse.benchmarks import fusion_study as bench

    common = common_request_fields(lexical_fields)
    result = bench.run(dataset, split, settings_for(engine), seed=seed, common=common)
    _show(result, as_json, bench.render)


@bench_app.command("align-baselines")
def align_baselines(
    dataset: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="`dataset fashion` output.")
    ],
    catalog: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="The catalogue's products.jsonl.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """What the aligned image encoder is measured against: random and colour-histogram
    rankings on the same fashion splits."""
    from modalfuse.benchmarks import align_baselines as bench

    _show(bench.run(dataset, catalog), as_json, lambda r: json.dumps(r, indent=2))
