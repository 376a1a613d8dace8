"""Export validation: the exported encoder, run as workers run it, against the PyTorch reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from modalfuse.errors import ExportValidationError
from modalfuse.onnx_models.manifest import Dtype, GraphValidation, Tolerance, Validation

Array = np.ndarray[Any, Any]

# Stated tolerances, on L2-normalised embeddings. fp32 differs from PyTorch only by kernel
# rounding; int8 and fp16 trade accuracy for speed and are held to the cosine they must keep.
TOLERANCES: dict[Dtype, Tolerance] = {
    "fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.9999),
    "fp16": Tolerance(max_abs_diff=5e-3, min_cosine=0.999),
    "int8": Tolerance(max_abs_diff=0.1, min_cosine=0.96),
}

VALIDATION_TEXTS: tuple[str, ...] = (
    "",
    "a",
    "red summer dress",
    "Turtle Check Men Navy Blue Shirt",
    "Puma Men Grey T-shirt",
    "A man is eating food.",
    "0-dimensional biomaterials lack inductive properties.",
    "naïve café, ünïcödé ✓ — 日本語のテキスト and emoji 👗",
    "SHOUTING IN CAPITALS!!! 12345 ??? $$$",
    "Alterations of the architecture of cerebral white matter in the developing human brain can "
    "affect cortical development and result in functional disabilities.",
    # Longer than any model's window: checks that truncation matches the reference.
    " ".join(["the quick brown fox jumps over the lazy dog"] * 120),
    "\t tabs\nand\nnewlines  ",
)


def validation_images() -> list[Image.Image]:
    """Deterministic pictures of varied size, aspect ratio and content (no data files needed)."""
    rng = np.random.default_rng(1234)
    images = []
    for width, height in [(60, 80), (224, 224), (320, 200), (31, 47), (500, 120), (96, 96)]:
        y, x = np.mgrid[0:height, 0:width]
        gradient = np.stack(
            [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1
        )
        noise = rng.integers(0, 64, size=(height, width, 3))
        checker = ((x // 8 + y // 8) % 2 * 60)[..., None]
        images.append(Image.fromarray(np.clip(gradient + noise + checker, 0, 255).astype(np.uint8)))
    return images


def compare(ours: Array, reference: Array) -> tuple[float, float, float]:
    """(max abs diff, min cosine, mean cosine) row by row."""
    if ours.shape != reference.shape:
        raise ExportValidationError(
            f"output shape {ours.shape} != reference shape {reference.shape}"
        )
    ours64, ref64 = ours.astype(np.float64), reference.astype(np.float64)
    cos = (ours64 * ref64).sum(1) / (
        np.linalg.norm(ours64, axis=1) * np.linalg.norm(ref64, axis=1) + 1e-12
    )
    return float(np.abs(ours64 - ref64).max()), float(cos.min()), float(cos.mean())


def validate(
    *,
    dtype: Dtype,
    reference_name: str,
    provider: str,
    runs: dict[str, tuple[Callable[[], Array], Callable[[], Array]]],
    fp32_runs: dict[str, Callable[[], Array]] | None = None,
) -> Validation:
    """Compare each graph's output with its reference; raise when outside the tolerance.

    `runs` maps a graph name to (run ours, run reference); `fp32_runs` gives the fp32 export's
    output for reduced-precision exports, recorded as `min_cosine_to_fp32`.
    """
    tol = TOLERANCES[dtype]
    graphs: dict[str, GraphValidation] = {}
    for name, (ours_fn, ref_fn) in runs.items():
        ours = ours_fn()
        if not np.isfinite(ours).all():
            raise ExportValidationError(f"{name} graph produced NaN or inf")
        max_abs, min_cos, mean_cos = compare(ours, ref_fn())
        to_fp32 = compare(ours, fp32_runs[name]())[1] if fp32_runs else None
        graphs[name] = GraphValidation(
            inputs=len(ours),
            max_abs_diff=max_abs,
            min_cosine=min_cos,
            mean_cosine=mean_cos,
            min_cosine_to_fp32=to_fp32,
        )
    worst_abs = max(g.max_abs_diff for g in graphs.values())
    worst_cos = min(g.min_cosine for g in graphs.values())
    to_fp32_all = [
        g.min_cosine_to_fp32 for g in graphs.values() if g.min_cosine_to_fp32 is not None
    ]
    result = Validation(
        reference=reference_name,
        provider=provider,
        tolerance=tol,
        max_abs_diff=worst_abs,
        min_cosine=worst_cos,
        min_cosine_to_fp32=min(to_fp32_all) if to_fp32_all else None,
        graphs=graphs,
    )
    if worst_abs > tol.max_abs_diff or worst_cos < tol.min_cosine:
        raise ExportValidationError(
            f"{dtype} export misses its tolerance: max_abs_diff {worst_abs:.3g} "
            f"(allowed {tol.max_abs_diff:g}), min_cosine {worst_cos:.6f} (required "
            f">= {tol.min_cosine:g}); per graph: "
            + "; ".join(f"{n}: {g.max_abs_diff:.3g}/{g.min_cosine:.6f}" for n, g in graphs.items())
        )
    return result
