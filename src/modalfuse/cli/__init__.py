"""The `modalfuse` command line. Each command builds `Settings()` once and passes it down."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from modalfuse.cli.align import align as align_command
from modalfuse.cli.dashboards import dashboards_app
from modalfuse.cli.evaluate import dataset_app, eval_command
from modalfuse.cli.index import index_app
from modalfuse.cli.ingest import dlq_app
from modalfuse.cli.ingest import ingest as ingest_command
from modalfuse.cli.ingest import worker as worker_command
from modalfuse.cli.rules import rules_app
from modalfuse.cli.search import search as search_command
from modalfuse.cli.search import serve as serve_command
from modalfuse.cli.setup import setup as setup_command
from modalfuse.errors import ModalfuseError
from modalfuse.settings import EngineName, Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multimodal hybrid search.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: encoders, ingest, query.")
app.add_typer(bench_app, name="bench")
app.add_typer(index_app, name="index")
app.add_typer(dlq_app, name="dlq")
app.add_typer(rules_app, name="rules")
app.command("ingest")(ingest_command)
app.command("worker")(worker_command)
app.command("search")(search_command)
app.command("serve")(serve_command)
app.command("eval")(eval_command)
app.command("align")(align_command)
app.command("setup")(setup_command)
app.add_typer(dataset_app, name="dataset")
app.add_typer(dashboards_app, name="dashboards")
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
EngineOption = Annotated[
    EngineName | None,
    typer.Option("--engine", help="lancedb or opensearch (default: MODALFUSE_ENGINE)."),
]


@app.command()
def export(
    model: Annotated[
        str, typer.Option(help="Local Hugging Face model directory, or 'default'.")
    ] = "default",
    kind: Annotated[
        str,
        typer.Option(
            help="text; clip (CLIP/SigLIP: text and vision towers); image (a `modalfuse align` "
            "checkpoint)."
        ),
    ] = "text",
    quantize: Annotated[
        str | None, typer.Option(help="int8: onnxruntime dynamic quantisation.")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 weights (for GPU providers).")] = False,
    pooling: Annotated[str | None, typer.Option(help="Override pooling: mean, cls or max.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-export even when cached.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export an encoder to ONNX, validate it against PyTorch, and print its manifest."""
    from modalfuse.onnx_models.export import export_encoder
    from modalfuse.onnx_models.manifest import read_manifest

    if kind not in ("text", "clip", "image"):
        raise typer.BadParameter("must be text, clip or image", param_hint="--kind")
    if quantize not in (None, "int8"):
        raise typer.BadParameter("only int8 is supported", param_hint="--quantize")
    if pooling not in (None, "mean", "cls", "max"):
        raise typer.BadParameter("must be mean, cls or max", param_hint="--pooling")
    directory = export_encoder(
        model,
        kind=kind,  # type: ignore[arg-type]
        quantize=quantize == "int8",
        fp16=fp16,
        pooling=pooling,  # type: ignore[arg-type]
        settings=Settings(),
        force=force,
    )
    manifest = read_manifest(directory)
    if as_json:
        print(
            json.dumps(manifest.model_dump(mode="json") | {"directory": str(directory)}, indent=2)
        )
        return
    v = manifest.validation
    out = Console()
    out.print(
        f"[bold]{manifest.name}[/] ({manifest.kind}, {manifest.dtype}, dim {manifest.dim}) -> {directory}"
    )
    out.print(f"validated against {v.reference} on {v.provider}")
    out.print(
        f"max_abs_diff {v.max_abs_diff:.3g} (<= {v.tolerance.max_abs_diff:g}), "
        f"min_cosine {v.min_cosine:.6f} (>= {v.tolerance.min_cosine:g})"
    )
    if v.min_cosine_to_fp32 is not None:
        out.print(f"min cosine to the fp32 export: {v.min_cosine_to_fp32:.6f}")
    if manifest.text:
        out.print(
            f"text: {manifest.text.pooling} pooling, truncates at {manifest.text.max_seq_length} tokens"
        )


@bench_app.command("encoders")
def bench_encoders(
    fashion: Annotated[Path | None, typer.Option(help="Fashion catalogue folder (titles).")] = None,
    scifact: Annotated[
        Path | None, typer.Option(help="BEIR SciFact folder (abstracts, nDCG).")
    ] = None,
    titles: int = 2000,
    abstracts: int = 256,
    rounds: int = 3,
    batch_size: int = 32,
    as_json: JsonFlag = False,
) -> None:
    """Texts/s of PyTorch fp32, ORT fp32 and ORT int8, plus the int8 nDCG@10 change."""
    from modalfuse.benchmarks import encoders

    result = encoders.run(
        settings=Settings(),
        fashion=fashion,
        scifact=scifact,
        titles=titles,
        abstracts=abstracts,
        rounds=rounds,
        batch_size=batch_size,
    )
    print(json.dumps(result, indent=2) if as_json else encoders.render(result))


@bench_app.command("ingest")
def bench_ingest(
    fashion: Annotated[int, typer.Option(help="Sample products to ingest.")] = 2000,
    scifact: Annotated[Path | None, typer.Option(help="BEIR SciFact folder.")] = None,
    scifact_limit: Annotated[int, typer.Option(help="SciFact abstracts to ingest.")] = 1000,
    batch_size: Annotated[int | None, typer.Option(help="Documents per task.")] = None,
    engine: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """End-to-end ingest docs/s against raw encoder docs/s, and where the difference goes."""
    from modalfuse.benchmarks import ingest as bench

    result = bench.run(
        Settings() if engine is None else Settings(engine=engine),
        fashion=fashion,
        scifact=scifact,
        scifact_limit=scifact_limit,
        batch_size=batch_size,
    )
    print(json.dumps(result, indent=2) if as_json else bench.render(result))


@bench_app.command("query")
def bench_query(
    sizes: Annotated[str, typer.Option(help="Corpus sizes, comma-separated.")] = "10000,100000",
    queries: Annotated[int, typer.Option(help="Queries per mode.")] = 200,
    window: Annotated[int, typer.Option(help="Candidates per retriever.")] = 100,
    engine: EngineOption = None,
    as_json: JsonFlag = False,
) -> None:
    """p50/p95 of lexical, vector and hybrid (client- and, where the engine has it,
    server-side) retrieval, fusion alone, and query encoding."""
    from modalfuse.benchmarks import query as bench

    result = bench.run(
        Settings() if engine is None else Settings(engine=engine),
        sizes=tuple(int(s) for s in sizes.split(",") if s.strip()),
        queries=queries,
        window=window,
    )
    print(json.dumps(result, indent=2) if as_json else bench.render(result))


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Run the steps and exit.")] = False,
    host: Annotated[str, typer.Option(help="Where to serve the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
    as_json: JsonFlag = False,
) -> None:
    """The main job on the embedded default: export, index, ingest through the queue, search, serve."""
    from modalfuse.cli.demo import run_demo

    run_demo(Settings(), serve=not no_serve, as_json=as_json, host=host, port=port)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ModalfuseError as e:
        # soft_wrap: one error stays one line, however narrow the terminal (and for grep).
        # Text, not markup: a message may hold brackets ("fields[3]", a user's "[red]").
        line = Text.assemble(("error:", "red"), f" {type(e).__name__}: {e}")
        err.print(line, soft_wrap=True, highlight=False)
        sys.exit(2)
