"""The one settings class. Every value can be set by a `MODALFUSE_<NAME>` environment variable.

Settings are passed in explicitly (`Settings()` at the edge, then handed down); nothing below
the CLI reads the environment on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "modalfuse"


class Settings(BaseSettings):
    """modalfuse configuration. Defaults suit one machine with the embedded engine and broker."""

    model_config = SettingsConfigDict(env_prefix="MODALFUSE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Root for the embedded engine, the embedded broker's folders and the model cache.",
    )
    index: str = Field(default="products", description="Default index (alias) name.")
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where exported encoders live; defaults to <data_dir>/models.",
    )
    text_encoder: str = Field(
        default="default",
        description="Text encoder source: 'default' (all-MiniLM-L6-v2) or a local model directory.",
    )
    execution_provider: Provider = Field(
        default="auto",
        description="onnxruntime provider: auto tries TensorRT, then CUDA, then CPU.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime decide."
    )
    encode_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts or images per inference batch."
    )
    max_image_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest accepted encoded image, in bytes."
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Largest accepted decoded image (width x height): guards against decompression bombs.",
    )

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"
