"""`export_encoder`: source model -> validated encoder directory in the cache (reused when present)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modalfuse.errors import ExportError
from modalfuse.onnx_models import optimize
from modalfuse.onnx_models.cache import OPSET, cache_key, export_dir
from modalfuse.onnx_models.export import graphs
from modalfuse.onnx_models.export.sources import Source, resolve
from modalfuse.onnx_models.export.torch_models import Bundle, clip_bundle, text_bundle
from modalfuse.onnx_models.export.validate import VALIDATION_TEXTS, validate, validation_images
from modalfuse.onnx_models.manifest import MANIFEST_FILE, Dtype, Kind, Manifest, Pooling
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings

log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from modalfuse import __version__

    return {
        "modalfuse": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def export_encoder(
    model: str = "default",
    *,
    kind: Kind = "text",
    quantize: bool = False,
    fp16: bool = False,
    pooling: Pooling | None = None,
    settings: Settings,
    force: bool = False,
    opset: int = OPSET,
) -> Path:
    """Export `model` (a local HF directory, or `default`) and return the encoder directory.

    The directory is keyed by the source's content and the options; an existing valid one is
    returned as is. A new one is built in a scratch folder and renamed into place only after
    validation passed, so a failed or interrupted export never leaves a usable-looking directory.
    """
    if quantize and fp16:
        raise ExportError("choose --quantize int8 or --fp16, not both")
    dtype: Dtype = "int8" if quantize else "fp16" if fp16 else "fp32"
    source = resolve(model, kind)
    key = cache_key(source, dtype=dtype, opset=opset, pooling=pooling)
    target = export_dir(source, kind=kind, dtype=dtype, key=key, settings=settings)
    if (target / MANIFEST_FILE).is_file() and not force:
        return target

    fp32_dir = None
    if dtype != "fp32":
        fp32_dir = export_encoder(model, kind=kind, pooling=pooling, settings=settings, opset=opset)
    bundle = _bundle(source, kind, pooling)

    settings.models_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=settings.models_dir))
    try:
        bundle.save_preprocessors(scratch)
        for spec in bundle.graphs.values():
            if fp32_dir is None:
                graphs.torch_to_onnx(spec, scratch / spec.file, opset=opset)
                if bundle.optimizer_model_type:
                    optimize.fuse_transformer(scratch / spec.file, bundle.optimizer_model_type)
            elif dtype == "int8":
                optimize.quantize_int8(fp32_dir / spec.file, scratch / spec.file)
            else:
                graphs.convert_fp16(fp32_dir / spec.file, scratch / spec.file)
        manifest = _validated_manifest(
            scratch,
            bundle,
            source,
            dtype=dtype,
            opset=opset,
            key=key,
            settings=settings,
            fp32_dir=fp32_dir,
        )
        manifest.write(scratch)
        scratch.chmod(0o755)  # mkdtemp makes it private; other users' workers read the cache
        if force and target.exists():
            shutil.rmtree(target)
        try:
            scratch.rename(target)
        except OSError:
            # Another process published the same key first; its export is equally valid.
            if not (target / MANIFEST_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _bundle(source: Source, kind: Kind, pooling: Pooling | None) -> Bundle:
    if kind == "clip":
        return clip_bundle(source)
    if kind == "image":
        from modalfuse.onnx_models.export.aligned import aligned_bundle

        return aligned_bundle(source)
    return text_bundle(source, pooling=pooling)


def _validated_manifest(
    directory: Path,
    bundle: Bundle,
    source: Source,
    *,
    dtype: Dtype,
    opset: int,
    key: str,
    settings: Settings,
    fp32_dir: Path | None,
) -> Manifest:
    draft = dict(
        name=source.name,
        kind=source.kind,
        source=str(source.path),
        source_sha256=source.sha256(),
        architecture=source.architecture,
        dim=bundle.dim,
        opset=opset,
        dtype=dtype,
        text=bundle.text,
        image=bundle.image,
        aligned_to=bundle.aligned_to,
        versions=_versions(),
        cache_key=key,
    )
    # A provisional manifest lets the real runtime load the directory for validation.
    provisional = Manifest.model_validate(
        draft
        | {
            "validation": {
                "reference": "pending",
                "provider": "",
                "tolerance": {"max_abs_diff": 0, "min_cosine": 0},
                "max_abs_diff": 0,
                "min_cosine": 0,
                "graphs": {},
            }
        }
    )
    provisional.write(directory)
    ours = OnnxEncoder(directory, settings=settings)
    fp32 = OnnxEncoder(fp32_dir, settings=settings) if fp32_dir else None
    texts, images = list(VALIDATION_TEXTS), validation_images()
    runs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    fp32_runs: dict[str, Callable[[], Any]] = {}
    if bundle.reference_texts is not None:
        ref_texts = bundle.reference_texts
        runs["text"] = (lambda: ours.encode_texts(texts, batch_size=4), lambda: ref_texts(texts))
        if fp32:
            fp32_runs["text"] = lambda: fp32.encode_texts(texts, batch_size=4)
    if bundle.reference_images is not None:
        ref_images = bundle.reference_images
        runs["image"] = (
            lambda: ours.encode_images(images, batch_size=4),
            lambda: ref_images(images),
        )
        if fp32:
            fp32_runs["image"] = lambda: fp32.encode_images(images, batch_size=4)
    validation = validate(
        dtype=dtype,
        reference_name=bundle.reference_name,
        provider=ours.provider,
        runs=runs,
        fp32_runs=fp32_runs or None,
    )
    return Manifest.model_validate(draft | {"validation": validation})
