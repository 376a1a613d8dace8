"""Export-time code (needs the `export` extra: torch, transformers). Workers never import it.

`export_encoder` is imported on first use, so `modalfuse.onnx_models.export.sources` (torch-free)
can be imported alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modalfuse.onnx_models.export.pipeline import export_encoder

__all__ = ["export_encoder"]


def __getattr__(name: str) -> Any:
    if name == "export_encoder":
        from modalfuse.onnx_models.export.pipeline import export_encoder

        return export_encoder
    raise AttributeError(name)
