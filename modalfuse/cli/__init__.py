"""The `modalfuse` command line. Each command builds `Settings()` once and passes it down."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modalfuse.errors import ModalfuseError
from modalfuse.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multimodal hybrid search.")
bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks (encoders; ingest and query come later)."
)
app.add_typer(bench_app, name="bench")
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@app.command()
def export(
    model: Annotated[
        str, typer.Option(help="Local Hugging Face model directory, or 'default'.")
    ] = "default",
    kind: Annotated[
        str, typer.Option(help="text, or clip (CLIP/SigLIP: text and vision towers).")
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

    if kind not in ("text", "clip"):
        raise typer.BadParameter("must be text or clip", param_hint="--kind")
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
        fashion=fashion or encoders.SHARED / "fashion",
        scifact=scifact or encoders.SHARED / "scifact",
        titles=titles,
        abstracts=abstracts,
        rounds=rounds,
        batch_size=batch_size,
    )
    print(json.dumps(result, indent=2) if as_json else encoders.render(result))


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Run the steps and exit.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The main job on the embedded default: export encoders, encode the sample catalogue."""
    from modalfuse.cli.demo import run_demo

    del no_serve  # nothing is served until the query layer lands; the steps always exit
    run_demo(Settings(), as_json=as_json)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ModalfuseError as e:
        err.print(f"[red]error:[/] {type(e).__name__}: {e}")
        sys.exit(2)
