"""Text pre-processing with the model's own fast tokenizer (tokenizers, no transformers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from modalfuse.errors import InvalidText, ModelLoadError
from modalfuse.onnx_models.manifest import TextConfig


def coerce_text(value: object, *, field: str) -> str:
    """A str that the tokenizer can take; bytes must be UTF-8. Errors name the field."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidText(
                f"not valid UTF-8 ({e.reason} at byte {e.start}: {raw[e.start : e.start + 4]!r})",
                field=field,
            ) from e
    if not isinstance(value, str):
        raise InvalidText(f"expected text, got {type(value).__name__}", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidText(f"contains a lone surrogate at position {e.start}", field=field) from e
    return value


class TextPreprocessor:
    def __init__(self, directory: Path, config: TextConfig) -> None:
        path = directory / config.tokenizer_file
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path}: cannot load tokenizer: {e}") from e
        # Padding is done per batch below; truncation keeps the model inside its position table.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=config.max_seq_length)
        self.config = config

    def tokenize(self, texts: Sequence[object]) -> list[Encoding]:
        clean = [coerce_text(t, field=f"texts[{i}]") for i, t in enumerate(texts)]
        return list(self._tokenizer.encode_batch(clean))

    def pad(self, encodings: Sequence[Encoding]) -> dict[str, np.ndarray[Any, Any]]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.config.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.config.extra_inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds
