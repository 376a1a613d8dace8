"""Export bundle for an image tower trained by `modalfuse align`.

Its reference is the PyTorch tower on the pre-processing it was trained with (the runtime's
Pillow resize and normalisation), so validation checks the graph, exactly as for other encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modalfuse.onnx_models.align.model import load_checkpoint
from modalfuse.onnx_models.export.sources import Source
from modalfuse.onnx_models.export.torch_models import Array, Bundle, GraphSpec
from modalfuse.onnx_models.manifest import ImageConfig
from modalfuse.onnx_models.runtime.image import preprocess


def aligned_bundle(source: Source) -> Bundle:
    tower = load_checkpoint(source.path)
    config = tower.config
    image_config = ImageConfig.model_validate(source.config["image"])

    def reference(images: Sequence[Image.Image]) -> Array:
        with torch.no_grad():
            out: torch.Tensor = tower(torch.from_numpy(preprocess(list(images), image_config)))
        return np.asarray(out.numpy())

    def save(directory: Path) -> None:
        (directory / "TRAINING.json").write_text(
            (source.path / "align_config.json").read_text(encoding="utf-8"), encoding="utf-8"
        )

    return Bundle(
        dim=config.dim,
        graphs={
            "image": GraphSpec(
                "image.onnx",
                tower,
                (torch.randn(2, 3, config.height, config.width),),
                ["pixel_values"],
                {"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
            )
        },
        text=None,
        image=image_config,
        reference_name=f"PyTorch {source.architecture} on the training pre-processing (fp32)",
        save_preprocessors=save,
        reference_images=reference,
        aligned_to=config.aligned_to,
    )
