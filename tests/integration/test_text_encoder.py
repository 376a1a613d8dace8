"""all-MiniLM-L6-v2 exported here with torch.onnx, once per session, and run on onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalfuse.errors import InvalidText, UnsupportedModality
from modalfuse.onnx_models.export.validate import TOLERANCES
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.encoder import Encoder, OnnxEncoder
from modalfuse.settings import Settings

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]


def test_manifest_records_the_export(minilm_torch: Path) -> None:
    m = read_manifest(minilm_torch)
    assert (m.name, m.kind, m.dim, m.dtype, m.architecture) == (
        "all-MiniLM-L6-v2",
        "text",
        384,
        "fp32",
        "BertModel",
    )
    assert m.text is not None and (m.text.pooling, m.text.max_seq_length) == ("mean", 256)
    v = m.validation
    assert "SentenceTransformer" in v.reference
    assert (
        v.max_abs_diff <= TOLERANCES["fp32"].max_abs_diff
        and v.min_cosine >= TOLERANCES["fp32"].min_cosine
    )
    assert v.graphs["text"].inputs >= 10


def test_matches_sentence_transformers_on_unseen_titles(
    minilm_torch: Path, settings: Settings, sample_products: list[dict[str, str]]
) -> None:
    from sentence_transformers import SentenceTransformer

    titles = [p["productDisplayName"] for p in sample_products[:200]]
    ours = OnnxEncoder(minilm_torch, settings=settings).encode_texts(titles)
    ref = SentenceTransformer(read_manifest(minilm_torch).source, device="cpu").encode(
        titles, normalize_embeddings=True
    )
    assert ours.dtype == np.float32 and ours.shape == (200, 384)
    assert float(np.abs(ours - ref).max()) < 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batched_order_equals_one_by_one(minilm_torch: Path, settings: Settings) -> None:
    enc = OnnxEncoder(minilm_torch, settings=settings)
    texts = [
        "short",
        "a much longer text about navy blue shirts and red dresses " * 3,
        "",
        "mid length text here",
        "x",
    ]
    batched = enc.encode_texts(texts, batch_size=2)
    single = np.vstack([enc.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert isinstance(enc, Encoder)


def test_long_texts_are_truncated_at_the_model_window(
    minilm_torch: Path, settings: Settings
) -> None:
    enc = OnnxEncoder(minilm_torch, settings=settings)
    words = ["word"] * 1000
    a, b = enc.encode_texts(
        [" ".join(words), " ".join([*words[:300], "completely", "different", "tail"])]
    )
    assert float(a @ b) > 0.9999  # both cut at 256 tokens, well before the tails differ


def test_bad_texts_fail_with_the_index(minilm_torch: Path, settings: Settings) -> None:
    enc = OnnxEncoder(minilm_torch, settings=settings)
    with pytest.raises(InvalidText, match=r"texts\[1\]: not valid UTF-8"):
        enc.encode_texts(["fine", b"\xff\xfe bad"])  # type: ignore[list-item]
    with pytest.raises(UnsupportedModality, match="no image graph"):
        enc.encode_images([b"..."])
    assert enc.encode_texts([]).shape == (0, 384)


def test_io_binding_path_gives_the_same_vectors(minilm_torch: Path, settings: Settings) -> None:
    texts = ["red summer dress", "Puma Men Grey T-shirt"]
    plain = OnnxEncoder(minilm_torch, settings=settings, io_binding=False).encode_texts(texts)
    bound = OnnxEncoder(minilm_torch, settings=settings, io_binding=True).encode_texts(texts)
    np.testing.assert_allclose(plain, bound, atol=1e-6)


def test_cache_is_reused_and_keyed_by_options(
    minilm_torch: Path, minilm_torch_int8: Path, settings: Settings
) -> None:
    from modalfuse.onnx_models.export import export_encoder

    before = (minilm_torch / "manifest.json").stat().st_mtime_ns
    assert export_encoder(settings=settings) == minilm_torch
    assert (minilm_torch / "manifest.json").stat().st_mtime_ns == before  # found, not redone
    assert minilm_torch_int8 != minilm_torch
    assert not [
        p for p in settings.models_dir.iterdir() if p.name.startswith(".")
    ]  # no scratch left


def test_int8_is_validated_and_close_to_fp32(
    minilm_torch_int8: Path, minilm_torch: Path, settings: Settings
) -> None:
    m = read_manifest(minilm_torch_int8)
    assert m.dtype == "int8"
    assert m.validation.min_cosine >= TOLERANCES["int8"].min_cosine
    assert m.validation.min_cosine_to_fp32 is not None and m.validation.min_cosine_to_fp32 >= 0.96
    titles = ["Nike Men Black Sports Shoes", "Lino Perros Women Beige Handbag"]
    int8 = OnnxEncoder(minilm_torch_int8, settings=settings).encode_texts(titles)
    fp32 = OnnxEncoder(minilm_torch, settings=settings).encode_texts(titles)
    assert float((int8 * fp32).sum(1).min()) > 0.98
    assert (minilm_torch_int8 / "text.onnx").stat().st_size < (
        minilm_torch / "text.onnx"
    ).stat().st_size / 3


def test_fp16_export_validates(settings: Settings, minilm_torch: Path) -> None:
    from modalfuse.onnx_models.export import export_encoder

    m = read_manifest(export_encoder(settings=settings, fp16=True))
    assert m.dtype == "fp16" and m.validation.min_cosine >= TOLERANCES["fp16"].min_cosine
