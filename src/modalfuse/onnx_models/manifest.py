"""The encoder manifest: what a worker needs to know to run an exported encoder directory.

An encoder is a directory holding ONNX graph(s), tokenizer / image-processor files and
`manifest.json`. Workers read only this directory; nothing is downloaded at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modalfuse.errors import ModelLoadError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

Kind = Literal["text", "clip", "image"]
Pooling = Literal["mean", "cls", "max", "model"]
Dtype = Literal["fp32", "int8", "fp16"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tolerance(_Frozen):
    max_abs_diff: float
    min_cosine: float


class GraphValidation(_Frozen):
    """Figures for one graph, measured on a fixed input set against the PyTorch reference."""

    inputs: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    # int8 / fp16 exports also record how far they moved from the fp32 export.
    min_cosine_to_fp32: float | None = None


class Validation(_Frozen):
    """Worst case over all graphs at top level, so `validation.min_cosine` is one number."""

    reference: str
    provider: str
    tolerance: Tolerance
    max_abs_diff: float
    min_cosine: float
    min_cosine_to_fp32: float | None = None
    graphs: dict[str, GraphValidation]
    # Checks that need no reference (prebuilt encoders): unit norm, paraphrase margin, ...
    checks: dict[str, float] = Field(default_factory=dict)


class TextConfig(_Frozen):
    graph: str
    max_seq_length: int = Field(description="Longer inputs are truncated to this many tokens.")
    pad_token_id: int
    pooling: Pooling
    tokenizer_file: str = "tokenizer.json"
    # Inputs the graph takes besides input_ids / attention_mask (BERT's token_type_ids).
    extra_inputs: list[str] = Field(default_factory=list)


class ImageConfig(_Frozen):
    """Pre-processing that mirrors the model's Hugging Face image processor."""

    graph: str
    resize_shortest_edge: int | None = None
    resize_to: tuple[int, int] | None = Field(default=None, description="(height, width)")
    crop_to: tuple[int, int] | None = Field(default=None, description="(height, width)")
    resample: int = 3  # PIL bicubic, CLIP's choice
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Manifest(_Frozen):
    format_version: int = FORMAT_VERSION
    name: str
    kind: Kind
    source: str
    source_sha256: str
    architecture: str
    dim: int
    normalize: bool = True
    opset: int
    dtype: Dtype
    text: TextConfig | None = None
    image: ImageConfig | None = None
    aligned_to: str | None = Field(
        default=None, description="Text encoder whose space an image-only encoder was trained into."
    )
    validation: Validation
    versions: dict[str, str]
    cache_key: str

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(
            f"{directory}: not an encoder directory ({MANIFEST_FILE} missing)"
        ) from e
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: unreadable manifest: {e}") from e
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: manifest format {raw.get('format_version')!r}, this modalfuse reads "
            f"{FORMAT_VERSION}; re-run `modalfuse export`"
        )
    return Manifest.model_validate(raw)
