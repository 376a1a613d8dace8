"""`modalfuse align`: train an image encoder into the text encoder's space, export it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from modalfuse.cli.options import settings_for

err = Console(stderr=True)


def align(
    catalog: Annotated[Path, typer.Option(help="Catalogue JSONL (one product per line).")],
    text_field: Annotated[str, typer.Option(help="Field holding the product name.")] = (
        "productDisplayName"
    ),
    image_field: Annotated[
        str, typer.Option(help="Field holding the image path (relative to the catalogue).")
    ] = "image",
    text_encoder: Annotated[
        str | None,
        typer.Option(help="Text encoder to align to: 'default' or a model/encoder directory."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="At most this many epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (in-batch negatives).")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine decay).")] = 2e-3,
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without held-out gain.")
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed for weights, order and augmentation.")] = 0,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N items only (smoke tests).")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option(help="Stop after the epoch that passes this many seconds.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Writes checkpoint/ and encoder/ here.")] = Path(
        "aligned-image-encoder"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Figures as JSON on stdout.")] = False,
) -> None:
    """Locked-text alignment: a small CNN learns to embed product images next to the frozen
    text embeddings of their names (symmetric InfoNCE, learned temperature, held-out early
    stopping), then is exported to ONNX and validated like any encoder."""
    from modalfuse.onnx_models.align.train import AlignConfig, train

    settings = settings_for()
    if text_encoder is not None:
        settings = settings.model_copy(update={"text_encoder": text_encoder})
    config = AlignConfig(
        catalog=catalog,
        out=out,
        text_field=text_field,
        image_field=image_field,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        limit=limit,
        time_budget_s=time_budget,
    )
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err) as progress:

        def on_epoch(row: dict[str, object]) -> None:
            progress.console.print(
                f"epoch {row['epoch']}: train loss {row['train_loss']}, held-out loss "
                f"{row['val_loss']}, name->image R@1 {row['r@1']} R@5 {row['r@5']} "
                f"R@10 {row['r@10']}, T {row['temperature']} ({row['weights']} weights)"
            )

        result = train(config, settings, on_epoch=on_epoch, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    held = result["held_out"]
    Console().print(
        f"best epoch {result['best_epoch']} of {result['epochs_run']}: held-out name->image "
        f"R@1 {held['r@1']}, R@5 {held['r@5']}, R@10 {held['r@10']}; "
        f"exported and validated (max abs diff {result['export_validation']['max_abs_diff']:.2g})"
        f" -> {result['encoder']}\nuse it: MODALFUSE_IMAGE_ENCODER={result['encoder']}"
    )
