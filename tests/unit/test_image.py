import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modalfuse.errors import InvalidImage
from modalfuse.onnx_models.manifest import ImageConfig
from modalfuse.onnx_models.runtime.image import load_image, preprocess, resize_shape
from tests.conftest import SAMPLE


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_real_jpeg_loads_as_rgb() -> None:
    img = load_image(
        SAMPLE.joinpath("images").iterdir().__next__(), max_bytes=1_000_000, max_pixels=4_000_000
    )
    assert img.mode == "RGB" and img.size == (60, 80)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html><body>not found</body></html>", "not an image"),
        (b"", "not an image"),
        (sorted(SAMPLE.joinpath("images").iterdir())[0].read_bytes()[:700], "corrupt image"),
    ],
)
def test_non_images_are_refused_with_the_field(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImage, match=rf"^doc\.image: {reason}") as e:
        load_image(data, field="doc.image", max_bytes=1_000_000, max_pixels=4_000_000)
    assert e.value.field == "doc.image"


def test_decompression_bombs_are_refused_before_decoding() -> None:
    over_our_cap = _png((2_500, 2_000), mode="1")  # 5 Mpx in a few kB, under Pillow's own limit
    with pytest.raises(InvalidImage, match="2500x2000 exceeds 4000000 pixels"):
        load_image(over_our_cap, max_bytes=1_000_000, max_pixels=4_000_000)
    bomb = _png((10_000, 10_000), mode="1")  # 100 Mpx: Pillow itself objects while opening
    assert len(bomb) < 100_000
    with pytest.raises(InvalidImage, match="decompression bomb refused"):
        load_image(bomb, max_bytes=1_000_000, max_pixels=4_000_000)


def test_byte_cap_and_format_allow_list(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage, match="byte cap"):
        load_image(b"x" * 2_000_001, max_bytes=1_000_000, max_pixels=4_000_000)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PPM")
    with pytest.raises(InvalidImage, match="format PPM is not accepted"):
        load_image(buf.getvalue(), max_bytes=1_000_000, max_pixels=4_000_000)
    with pytest.raises(InvalidImage, match="cannot read"):
        load_image(tmp_path / "missing.jpg", max_bytes=1_000_000, max_pixels=4_000_000)


def test_resize_shape_matches_transformers_rule() -> None:
    assert resize_shape(60, 80, 224) == (224, 298)
    assert resize_shape(80, 60, 224) == (298, 224)
    assert resize_shape(50, 50, 32) == (32, 32)


def test_preprocess_shape_and_normalisation() -> None:
    cfg = ImageConfig(graph="g", resize_to=(8, 4), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = preprocess([Image.new("RGB", (20, 10), (255, 0, 128))], cfg)
    assert out.shape == (1, 3, 8, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)
