"""Export-time code (needs the `export` extra: torch, transformers). Workers never import it."""

from modalfuse.onnx_models.export.pipeline import export_encoder

__all__ = ["export_encoder"]
