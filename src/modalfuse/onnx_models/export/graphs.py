"""Writing ONNX graphs: torch.onnx export, transformer graph fusion, int8 and fp16 variants."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from modalfuse.errors import ExportError
from modalfuse.onnx_models.cache import OPSET
from modalfuse.onnx_models.export.torch_models import GraphSpec

log = logging.getLogger(__name__)


def torch_to_onnx(spec: GraphSpec, path: Path, *, opset: int = OPSET) -> None:
    """Trace `spec.module` into `path` with batch (and sequence) axes left dynamic."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated in favour of torch.export, but its BERT graphs
            # are the ones onnxruntime's transformer fusions recognise (fused attention is where
            # most of the CPU speed comes from), so we keep it while it exists.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            # CLIP's end-of-text gather warns about negative indices; its indices are argmax
            # positions, never negative, and validation would catch a wrong gather anyway.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                spec.module,
                spec.example,
                str(path),
                dynamo=False,
                input_names=spec.input_names,
                output_names=["embedding"],
                dynamic_axes=spec.dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed for {path.name}: {e}") from e


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations for GPU providers; inputs and outputs stay fp32/int64."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    except Exception as e:
        raise ExportError(f"fp16 conversion failed for {src.name}: {e}") from e
