"""Our Pillow/numpy pre-processing against transformers' own processors, on real product photos."""

from typing import Any

import numpy as np
import pytest
from PIL import Image

from modalfuse.onnx_models.runtime.image import preprocess
from tests.conftest import SAMPLE

pytestmark = pytest.mark.needs_export
TOLERANCE = 1e-5  # float rounding only: both resize with the same Pillow call


def _photos(n: int = 24) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLE.joinpath("images").iterdir())[:n]]


@pytest.mark.parametrize(
    "kwargs", [{}, {"size": {"shortest_edge": 64}, "crop_size": {"height": 48, "width": 64}}]
)
def test_matches_clip_image_processor(kwargs: dict[str, Any]) -> None:
    from transformers import CLIPImageProcessor

    from modalfuse.onnx_models.export.torch_models import image_config_from_processor

    proc = CLIPImageProcessor(**kwargs)
    photos = [*_photos(), Image.new("RGB", (300, 120), (10, 200, 30))]
    ours = preprocess(photos, image_config_from_processor(proc, "image.onnx"))
    theirs = proc(images=photos, return_tensors="np")["pixel_values"]
    assert ours.shape == theirs.shape
    assert float(np.abs(ours - theirs).max()) < TOLERANCE


def test_matches_siglip_style_fixed_resize() -> None:
    from transformers import SiglipImageProcessor

    from modalfuse.onnx_models.export.torch_models import image_config_from_processor

    proc = SiglipImageProcessor(size={"height": 96, "width": 96})
    photos = _photos(8)
    ours = preprocess(photos, image_config_from_processor(proc, "image.onnx"))
    theirs = proc(images=photos, return_tensors="np")["pixel_values"]
    assert float(np.abs(ours - theirs).max()) < TOLERANCE
