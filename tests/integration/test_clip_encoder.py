"""The CLIP path on a tiny random CLIP: two graphs, each usable alone, real pre-processing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modalfuse.errors import InvalidImage
from modalfuse.onnx_models.export.validate import TOLERANCES
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings
from tests.conftest import SAMPLE

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]


def test_both_towers_validated_against_transformers(tiny_clip: Path) -> None:
    m = read_manifest(tiny_clip)
    assert (m.kind, m.dim, m.architecture) == ("clip", 16, "CLIPModel")
    assert set(m.validation.graphs) == {"text", "image"}
    assert "CLIPImageProcessor" in m.validation.reference
    assert m.validation.min_cosine >= TOLERANCES["fp32"].min_cosine
    assert m.image is not None and m.image.crop_to == (32, 32)


def test_each_graph_runs_alone(tiny_clip: Path, tmp_path: Path, settings: Settings) -> None:
    only_image = tmp_path / "only-image"
    shutil.copytree(tiny_clip, only_image)
    (only_image / "text.onnx").unlink()
    paths = sorted(SAMPLE.joinpath("images").iterdir())[:5]
    vecs = OnnxEncoder(only_image, settings=settings).encode_images(paths)
    full = OnnxEncoder(tiny_clip, settings=settings)
    np.testing.assert_allclose(vecs, full.encode_images(paths), atol=1e-6)
    assert full.encode_texts(["the red dress", "a blue shirt"]).shape == (2, 16)


def test_images_from_paths_bytes_and_pil_agree(tiny_clip: Path, settings: Settings) -> None:
    path = sorted(SAMPLE.joinpath("images").iterdir())[0]
    enc = OnnxEncoder(tiny_clip, settings=settings)
    out = enc.encode_images([path, path.read_bytes(), Image.open(path)])
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_a_non_image_names_its_position(tiny_clip: Path, settings: Settings) -> None:
    enc = OnnxEncoder(tiny_clip, settings=settings)
    good = sorted(SAMPLE.joinpath("images").iterdir())[0]
    with pytest.raises(InvalidImage, match=r"images\[1\]: not an image"):
        enc.encode_images([good, b"<html>404</html>"])
