"""`modalfuse align` on a few dozen real catalogue images: the loss falls, the export validates,
and the result runs as an image encoder whose vectors live in the text encoder's space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modalfuse.onnx_models.align.data import is_held_out, name_ids, read_catalog, split
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings
from tests.conftest import SAMPLE

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]


def test_held_out_split_is_a_fixed_tenth() -> None:
    items = read_catalog(
        SAMPLE / "products.jsonl", text_field="productDisplayName", image_field="image"
    )
    train, held = split(items)
    assert len(train) + len(held) == len(items) >= 1990
    assert 0.07 < len(held) / len(items) < 0.13
    assert all(is_held_out(i.id) for i in held) and not any(is_held_out(i.id) for i in train)
    assert name_ids(["A b", "a B", "c"]).tolist() == [0, 0, 1]


def test_align_smoke_loss_falls_and_exports(
    settings: Settings, minilm_fp32: Path, tmp_path: Path
) -> None:
    from modalfuse.onnx_models.align.train import AlignConfig, train

    config = AlignConfig(
        catalog=SAMPLE / "products.jsonl",
        out=tmp_path / "aligned",
        epochs=4,
        batch_size=16,
        limit=48,
        patience=10,
        widths=(8, 16, 32, 64),
    )
    result = train(config, settings)
    losses = [row["train_loss"] for row in result["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9, losses
    assert result["train_items"] == 48 and result["held_out_items"] >= 2
    manifest = read_manifest(Path(result["encoder"]))
    assert manifest.kind == "image" and manifest.aligned_to == "all-MiniLM-L6-v2"
    assert manifest.dim == 384 and manifest.text is None
    assert manifest.validation.max_abs_diff <= 1e-4
    training = json.loads((Path(result["checkpoint"]) / "align_config.json").read_text())
    assert training["training"]["best_epoch"] == result["best_epoch"]
    encoder = OnnxEncoder(Path(result["encoder"]), settings=settings)
    vectors = encoder.encode_images(
        [SAMPLE / "images" / "10007.jpg", SAMPLE / "images" / "10053.jpg"]
    )
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
