"""Locked-text alignment: train an image tower into a frozen text encoder's embedding space.

The text side never changes: each product name is embedded once with the exported ONNX text
encoder. The image tower learns, with a symmetric InfoNCE loss over in-batch negatives and a
learned temperature, to put a product's picture next to its name. Items sharing a name are
positives for each other (catalogues repeat names), never negatives. Augmentations keep
colour (random crops and horizontal flips only), because colour is what users search for.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from modalfuse.errors import ConfigError, InvalidDocument
from modalfuse.onnx_models import registry
from modalfuse.onnx_models.align import data
from modalfuse.onnx_models.align.model import ImageTower, TowerConfig, save_checkpoint
from modalfuse.onnx_models.manifest import ImageConfig, read_manifest
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings

Array = NDArray[np.float32]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AlignConfig:
    catalog: Path
    out: Path
    text_field: str = "productDisplayName"
    image_field: str = "image"
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    # Held-out figures and the exported weights come from an exponential moving average of the
    # weights: single contrastive steps at a low temperature swing the raw weights, the average
    # does not.
    ema_decay: float = 0.99
    grad_clip: float = 1.0
    patience: int = 4
    seed: int = 0
    widths: tuple[int, ...] = (32, 64, 128, 256)
    height: int = 80
    width: int = 60
    limit: int | None = None  # train on the first N items only (smoke tests)
    time_budget_s: float | None = None  # stop after the epoch that crosses it

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("align needs epochs >= 1 and batch_size >= 2")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def augment(x: torch.Tensor, gen: torch.Generator, min_area: float = 0.7) -> torch.Tensor:
    """Random resized crops (70-100% of the area, same aspect) and horizontal flips. No colour
    jitter: a hue shift would teach the tower that a red dress may be blue."""
    n, _, height, width = x.shape
    out = torch.empty_like(x)
    scales = torch.empty(n).uniform_(min_area, 1.0, generator=gen).sqrt()
    for i in range(n):
        h, w = max(int(height * scales[i]), 8), max(int(width * scales[i]), 8)
        top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
        left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
        crop = x[i : i + 1, :, top : top + h, left : left + w]
        out[i] = nn.functional.interpolate(
            crop, size=(height, width), mode="bilinear", align_corners=False
        )[0]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def contrastive_loss(
    images: torch.Tensor, texts: torch.Tensor, names: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE; rows and columns sharing a name id share the target mass."""
    logits = logit_scale.exp() * images @ texts.T
    same = (names[:, None] == names[None, :]).float()
    to_text = -(same / same.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    to_image = -(same / same.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (to_text + to_image) / 2


def retrieval(image_vecs: Array, text_vecs: Array, names: NDArray[np.int64]) -> dict[str, float]:
    """Text -> image recall on the held-out set: for each distinct name, is an image of that
    name among the top k? (R@k, k = 1, 5, 10.)"""
    unique, first = np.unique(names, return_index=True)
    scores = text_vecs[first] @ image_vecs.T  # (distinct names, images)
    order = np.argsort(-scores, axis=1)[:, :10]
    hit_rank = np.array(
        [
            next((r for r, j in enumerate(row) if names[j] == n), 99)
            for n, row in zip(unique, order, strict=True)
        ]
    )
    return {f"r@{k}": float((hit_rank < k).mean()) for k in (1, 5, 10)}


def embed_images(tower: ImageTower, pixels: torch.Tensor, batch: int = 512) -> Array:
    tower.eval()
    with torch.no_grad():
        parts = [tower(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    return torch.cat(parts).numpy()


def _held_out(
    model: ImageTower,
    pixels: torch.Tensor,
    texts: torch.Tensor,
    names: NDArray[np.int64],
    logit_scale: torch.Tensor,
) -> dict[str, float]:
    vecs = embed_images(model, pixels)
    with torch.no_grad():
        loss = float(
            contrastive_loss(torch.from_numpy(vecs), texts, torch.from_numpy(names), logit_scale)
        )
    return {"val_loss": loss, **retrieval(vecs, texts.numpy(), names)}


def _rank_key(figures: dict[str, Any]) -> tuple[float, float]:
    """Held-out name -> image recall first (what search needs), the loss breaks ties."""
    return (figures["r@1"] + figures["r@5"] + figures["r@10"], -figures["val_loss"])


def train(
    config: AlignConfig,
    settings: Settings,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Train, keep the best epoch by held-out recall, save the checkpoint, export and validate
    it as an encoder. Returns the figures (also written into the checkpoint's config)."""
    from modalfuse.onnx_models.export import export_encoder

    started = time.perf_counter()
    gen = seed_everything(config.seed)
    torch.set_num_threads(settings.intra_op_threads or torch.get_num_threads())
    items = data.read_catalog(
        config.catalog, text_field=config.text_field, image_field=config.image_field
    )
    train_items, held = data.split(items)
    if config.limit is not None:
        train_items = train_items[: config.limit]
        held = held[: max(config.limit // 5, 2)]
    if len(held) < 2 or len(train_items) < 2:
        raise InvalidDocument(
            f"{config.catalog}: too few items for a training and a held-out split "
            f"({len(train_items)} / {len(held)})",
            field=config.image_field,
        )

    text_dir = registry.text_encoder_dir(settings)
    text_manifest = read_manifest(text_dir)
    text_encoder = OnnxEncoder(text_dir, settings=settings)
    image_config = ImageConfig(
        graph="image.onnx",
        resize_to=(config.height, config.width),
        resample=3,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    tower_config = TowerConfig(
        dim=text_manifest.dim,
        height=config.height,
        width=config.width,
        widths=config.widths,
        aligned_to=text_manifest.name,
        aligned_to_sha256=text_manifest.source_sha256,
        text_field=config.text_field,
        mean=image_config.mean,
        std=image_config.std,
    )

    def prepare(subset: list[data.Item]) -> tuple[torch.Tensor, torch.Tensor, NDArray[np.int64]]:
        pix, kept = data.pixels(
            subset,
            image_config,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )
        texts = [subset[i].text for i in kept]
        vecs = text_encoder.encode_texts(texts)
        return (
            torch.from_numpy(pix).contiguous(memory_format=torch.channels_last),
            torch.from_numpy(vecs),
            data.name_ids(texts),
        )

    train_pix, train_txt, train_names = prepare(train_items)
    val_pix, val_txt, val_names = prepare(held)
    prepared_s = time.perf_counter() - started

    tower = ImageTower(tower_config).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = torch.optim.swa_utils.AveragedModel(
        tower,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay),
        use_buffers=True,
    )
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    optimizer = torch.optim.AdamW(
        [
            {"params": tower.parameters(), "weight_decay": config.weight_decay},
            {"params": [logit_scale], "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    steps_per_epoch = max(len(train_pix) // config.batch_size, 1)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(steps_per_epoch, total_steps // 10 + 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total_steps - warmup, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    names_t = torch.from_numpy(train_names)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    stale = 0
    task = progress.add_task("aligning", total=total_steps) if progress is not None else None
    for epoch in range(1, config.epochs + 1):
        tower.train()
        order = torch.randperm(len(train_pix), generator=gen)
        losses = []
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            pixels = augment(train_pix[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = contrastive_loss(tower(pixels), train_txt[idx], names_t[idx], logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(tower.parameters(), config.grad_clip)
            optimizer.step()
            ema.update_parameters(tower)
            scheduler.step()
            with torch.no_grad():
                logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            if progress is not None:
                progress.advance(task)
        averaged: ImageTower = ema.module  # type: ignore[assignment]
        # Both the raw and the averaged weights are scored; the better one is this epoch's.
        scored = {
            name: _held_out(model, val_pix, val_txt, val_names, logit_scale)
            for name, model in (("raw", tower), ("ema", averaged))
        }
        chosen = max(scored, key=lambda n: _rank_key(scored[n]))
        figures_of = scored[chosen]
        row = {
            "epoch": epoch,
            "train_loss": round(float(np.mean(losses)), 4),
            "weights": chosen,
            **{k: round(v, 4) for k, v in figures_of.items()},
            "temperature": round(float(1 / logit_scale.detach().exp()), 4),
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if best is None or _rank_key(row) > _rank_key(best):
            model = tower if chosen == "raw" else averaged
            best, best_state, stale = row, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
        if config.time_budget_s and time.perf_counter() - started > config.time_budget_s:
            break
    assert best is not None and best_state is not None
    tower.load_state_dict(best_state)
    train_s = time.perf_counter() - started
    figures = {
        "catalog": str(config.catalog),
        "train_items": len(train_pix),
        "held_out_items": len(val_pix),
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "best_weights": best["weights"],
        "held_out": {k: best[k] for k in ("val_loss", "r@1", "r@5", "r@10")},
        "seed": config.seed,
        "prepare_s": round(prepared_s, 1),
        "train_s": round(train_s, 1),
        "threads": torch.get_num_threads(),
        "history": history,
    }
    checkpoint = config.out / "checkpoint"
    if checkpoint.exists():
        shutil.rmtree(checkpoint)
    save_checkpoint(
        checkpoint,
        tower.to(memory_format=torch.contiguous_format),
        {
            "name": config.out.name,
            "image": image_config.model_dump(mode="json"),
            "training": figures,
        },
    )
    exported = export_encoder(str(checkpoint), kind="image", settings=settings)
    encoder = config.out / "encoder"
    if encoder.exists():
        shutil.rmtree(encoder)
    shutil.copytree(exported, encoder)
    manifest = read_manifest(encoder)
    return figures | {
        "checkpoint": str(checkpoint),
        "encoder": str(encoder),
        "export_validation": {
            "reference": manifest.validation.reference,
            "max_abs_diff": manifest.validation.max_abs_diff,
            "min_cosine": manifest.validation.min_cosine,
        },
        "total_s": round(time.perf_counter() - started, 1),
    }
