"""Encoders: export to ONNX (`modalfuse.onnx_models.export`, needs the `export` extra) and
run on onnxruntime (`modalfuse.onnx_models.runtime`, what workers import)."""

from modalfuse.onnx_models.manifest import Manifest, read_manifest
from modalfuse.onnx_models.runtime.encoder import Encoder, OnnxEncoder

__all__ = ["Encoder", "Manifest", "OnnxEncoder", "read_manifest"]
