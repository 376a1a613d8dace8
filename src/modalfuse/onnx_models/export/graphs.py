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


def fuse_transformer(path: Path, model_type: str) -> None:
    """Rewrite the graph in place with onnxruntime's transformer fusions (attention, layer norm)."""
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(str(path), model_type=model_type, num_heads=0, hidden_size=0)
        optimized.save_model_to_file(str(path))
    except Exception as e:
        raise ExportError(
            f"onnxruntime transformer optimisation failed for {path.name}: {e}"
        ) from e
    log.info("fused %s: %s", path.name, optimized.get_fused_operator_statistics())


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation: weights int8 offline, activations quantised per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference, so
        # tensors it cannot type are declared float, which every such tensor here is.
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            # Per-channel scales: transformer weight matrices have outlier output channels, and
            # one scale per tensor cost MiniLM ~0.05 cosine on short inputs (0.87 worst case).
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as e:
        raise ExportError(f"int8 quantisation failed for {src.name}: {e}") from e


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations for GPU providers; inputs and outputs stay fp32/int64."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    except Exception as e:
        raise ExportError(f"fp16 conversion failed for {src.name}: {e}") from e
