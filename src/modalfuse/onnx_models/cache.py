"""Where an export lives in the model cache: a pure function of the source and the options.

Torch-free, so a worker can find an existing export without importing the export stack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from modalfuse.onnx_models.export.sources import Source
from modalfuse.onnx_models.manifest import Dtype, Kind, Pooling
from modalfuse.settings import Settings

EXPORT_FORMAT = "modalfuse-export-1"
OPSET = 17  # LayerNormalization is native from 17; old enough for every TensorRT in use


def cache_key(source: Source, *, dtype: Dtype, opset: int, pooling: Pooling | None) -> str:
    parts = [EXPORT_FORMAT, source.kind, dtype, str(opset), pooling or "", source.sha256()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def export_dir(source: Source, *, kind: Kind, dtype: Dtype, key: str, settings: Settings) -> Path:
    return settings.models_dir / f"{source.name}-{kind}-{dtype}-{key[:12]}"
