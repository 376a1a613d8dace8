"""PyTorch side of an export: the modules that become ONNX graphs, and their references.

Each graph includes pooling/projection and L2 normalisation, so the ONNX output is the final
embedding and any runtime (ours, or a Java client) needs no model-specific post-processing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models.export.sources import Source, sentence_config
from modalfuse.onnx_models.manifest import ImageConfig, Pooling, TextConfig

Array = np.ndarray[Any, Any]
BERT_FAMILY = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"})


class PooledTextModel(nn.Module):
    """A transformer encoder plus sentence-transformers-style pooling and normalisation."""

    def __init__(self, model: nn.Module, pooling: Pooling, normalize: bool) -> None:
        super().__init__()
        self.model: nn.Module = model
        self.pooling, self.normalize = pooling, normalize

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        kwargs = {"token_type_ids": extra[0]} if extra else {}
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            emb = hidden[:, 0]
        elif self.pooling == "max":
            emb = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
        else:
            emb = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(emb, p=2, dim=1) if self.normalize else emb


class ClipText(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: nn.Module = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        model: Any = self.model  # get_text_features is not on nn.Module's static type
        emb = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return nn.functional.normalize(emb, p=2, dim=1)


class ClipImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: nn.Module = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        return nn.functional.normalize(
            model.get_image_features(pixel_values=pixel_values), p=2, dim=1
        )


@dataclass
class GraphSpec:
    """One ONNX graph to write: a module, example inputs and the axes that stay dynamic."""

    file: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]


@dataclass
class Bundle:
    """Everything an export of one source produces, before any ONNX is written."""

    dim: int
    graphs: dict[str, GraphSpec]
    text: TextConfig | None
    image: ImageConfig | None
    reference_name: str
    save_preprocessors: Callable[[Path], None]
    reference_texts: Callable[[Sequence[str]], Array] | None = None
    reference_images: Callable[[Sequence[Image.Image]], Array] | None = None
    optimizer_model_type: str | None = None
    # Image-only encoders trained into a text encoder's space name that text encoder.
    aligned_to: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _tokenizer(source: Source) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source.path, use_fast=True)
    except Exception as e:
        raise ModelLoadError(f"{source.path}: cannot load its tokenizer: {e}") from e
    if not tok.is_fast:
        raise ModelLoadError(
            f"{source.path}: no fast tokenizer can be built (workers need tokenizer.json)"
        )
    return tok


def _text_examples(
    tok: Any, extra: bool
) -> tuple[tuple[torch.Tensor, ...], list[str], dict[str, dict[int, str]]]:
    enc = tok(
        ["an example input", "a second, longer example input"], padding=True, return_tensors="pt"
    )
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if extra else [])]
    example = tuple(enc[n] if n in enc else torch.zeros_like(enc["input_ids"]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"embedding": {0: "batch"}}
    return example, names, axes


def _max_len(tok: Any, config: Any, declared: int | None) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512))
    # model_max_length is a huge sentinel when a tokenizer does not know its model's limit.
    candidates = [v for v in (declared, tok.model_max_length, limit) if v and v <= limit]
    return int(min(candidates)) if candidates else limit


def text_bundle(source: Source, *, pooling: Pooling | None = None) -> Bundle:
    from transformers import AutoModel

    tok = _tokenizer(source)
    st = sentence_config(source.path)
    model = AutoModel.from_pretrained(source.path, attn_implementation="eager").eval()
    pool: Pooling = pooling or (st.pooling if st else "mean")
    normalize = st.normalize if st else True
    extra = "token_type_ids" in tok.model_input_names
    module = PooledTextModel(model, pool, normalize).eval()
    example, names, axes = _text_examples(tok, extra)
    max_len = _max_len(tok, model.config, st.max_seq_length if st else None)

    if st is not None and pooling is None:
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(str(source.path), device="cpu")
        st_model.max_seq_length = max_len

        def reference(texts: Sequence[str]) -> Array:
            return np.asarray(st_model.encode(list(texts), batch_size=8, normalize_embeddings=True))

        ref_name = "sentence-transformers SentenceTransformer.encode (PyTorch fp32)"
    else:

        def reference(texts: Sequence[str]) -> Array:
            enc = tok(
                list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
            with torch.no_grad():
                out = module(
                    *(enc[n] if n in enc else torch.zeros_like(enc["input_ids"]) for n in names)
                )
            return nn.functional.normalize(out, dim=1).numpy()

        ref_name = f"transformers AutoModel + {pool} pooling (PyTorch fp32)"

    return Bundle(
        dim=int(model.config.hidden_size),
        graphs={"text": GraphSpec("text.onnx", module, example, names, axes)},
        text=TextConfig(
            graph="text.onnx",
            max_seq_length=max_len,
            pad_token_id=int(tok.pad_token_id or 0),
            pooling=pool,
            extra_inputs=names[2:],
        ),
        image=None,
        reference_name=ref_name,
        save_preprocessors=lambda d: tok.backend_tokenizer.save(str(d / "tokenizer.json")),
        reference_texts=reference,
        optimizer_model_type="bert" if source.model_type in BERT_FAMILY else None,
    )


def image_config_from_processor(proc: Any, graph: str) -> ImageConfig:
    """Map a transformers image processor's settings onto our Pillow pre-processing."""
    size = proc.size if getattr(proc, "do_resize", True) else None
    crop = proc.crop_size if getattr(proc, "do_center_crop", False) else None
    shortest = size.get("shortest_edge") if size else None
    resize_to = (size["height"], size["width"]) if size and shortest is None else None
    return ImageConfig(
        graph=graph,
        resize_shortest_edge=shortest,
        resize_to=resize_to,
        crop_to=(crop["height"], crop["width"]) if crop else None,
        resample=int(proc.resample),
        rescale_factor=float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0,
        mean=tuple(proc.image_mean) if getattr(proc, "do_normalize", True) else (0.0, 0.0, 0.0),
        std=tuple(proc.image_std) if getattr(proc, "do_normalize", True) else (1.0, 1.0, 1.0),
    )


def clip_bundle(source: Source) -> Bundle:
    from transformers import AutoImageProcessor, AutoModel

    tok = _tokenizer(source)
    try:
        proc = AutoImageProcessor.from_pretrained(source.path, use_fast=False)
    except Exception as e:
        raise ModelLoadError(
            f"{source.path}: cannot load its image processor (preprocessor_config.json): {e}"
        ) from e
    model = AutoModel.from_pretrained(source.path, attn_implementation="eager").eval()
    text_module, image_module = ClipText(model).eval(), ClipImage(model).eval()
    example, names, axes = _text_examples(tok, extra=False)
    max_len = _max_len(tok, model.config.text_config, None)
    image_cfg = image_config_from_processor(proc, "image.onnx")
    side = image_cfg.crop_to or image_cfg.resize_to or (image_cfg.resize_shortest_edge,) * 2
    pixel_example = torch.randn(2, 3, int(side[0] or 224), int(side[1] or 224))

    def save(directory: Path) -> None:
        tok.backend_tokenizer.save(str(directory / "tokenizer.json"))
        proc.save_pretrained(directory)

    def ref_texts(texts: Sequence[str]) -> Array:
        enc = tok(
            list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        with torch.no_grad():
            out: torch.Tensor = text_module(enc["input_ids"], enc["attention_mask"])
        return out.numpy()

    def ref_images(images: Sequence[Image.Image]) -> Array:
        pixels = proc(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out: torch.Tensor = image_module(pixels)
        return out.numpy()

    return Bundle(
        dim=int(model.config.projection_dim),
        graphs={
            "text": GraphSpec("text.onnx", text_module, example, names, axes),
            "image": GraphSpec(
                "image.onnx",
                image_module,
                (pixel_example,),
                ["pixel_values"],
                {"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
            ),
        },
        text=TextConfig(
            graph="text.onnx",
            max_seq_length=max_len,
            pad_token_id=int(tok.pad_token_id if tok.pad_token_id is not None else 0),
            pooling="model",
        ),
        image=image_cfg,
        reference_name=f"transformers {source.architecture}.get_text_features / get_image_features "
        "with its tokenizer and CLIPImageProcessor (PyTorch fp32)",
        save_preprocessors=save,
        reference_texts=ref_texts,
        reference_images=ref_images,
    )
