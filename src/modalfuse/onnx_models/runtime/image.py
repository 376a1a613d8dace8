"""Image loading (guarded) and pre-processing with Pillow and numpy.

The pre-processing reproduces transformers' CLIPImageProcessor (resize shortest edge, bicubic,
centre crop, rescale, normalise) without importing transformers in workers; the unit tests hold
it to the real processor on real product photos.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from modalfuse.errors import ImageTooLarge, InvalidImage
from modalfuse.onnx_models.manifest import ImageConfig

ImageInput = Image.Image | bytes | Path
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})


def load_image(
    source: ImageInput,
    *,
    max_bytes: int,
    max_pixels: int,
    field: str = "image",
) -> Image.Image:
    """Decode `source` into an RGB image, refusing what is not a reasonable picture."""
    if isinstance(source, Image.Image):
        if source.width * source.height > max_pixels:
            raise InvalidImage(
                f"{source.width}x{source.height} exceeds {max_pixels} pixels", field=field
            )
        # convert() copies even when the mode is already RGB; decoded uploads mostly are.
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, Path):
        try:
            size = source.stat().st_size
            if size > max_bytes:
                raise ImageTooLarge(f"{size} bytes exceeds the {max_bytes}-byte cap", field=field)
            data = source.read_bytes()
        except OSError as e:
            raise InvalidImage(f"cannot read {source}: {e.strerror or e}", field=field) from e
    elif isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        raise InvalidImage(
            f"expected image bytes, a path or a PIL image, got {type(source).__name__}", field=field
        )
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{len(data)} bytes exceeds the {max_bytes}-byte cap", field=field)
    return _decode(data, max_pixels=max_pixels, field=field)


def _decode(data: bytes, *, max_pixels: int, field: str) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse on our own cap.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or "unknown"
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(
                        f"format {fmt} is not accepted (allowed: {', '.join(sorted(ALLOWED_FORMATS))})",
                        field=field,
                    )
                # The header gives the size before any pixel is decoded: stop bombs here.
                if probe.width * probe.height > max_pixels:
                    raise InvalidImage(
                        f"{probe.width}x{probe.height} exceeds {max_pixels} pixels", field=field
                    )
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return img.convert("RGB")
        except InvalidImage:
            raise
        except UnidentifiedImageError as e:
            raise InvalidImage("not an image (unrecognised bytes)", field=field) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InvalidImage(f"decompression bomb refused: {e}", field=field) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise InvalidImage(f"corrupt image: {e}", field=field) from e


def resize_shape(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """(width, height) with the short side at `shortest_edge`, as transformers computes it."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if width <= height else (new_long, shortest_edge)


def preprocess(
    images: Sequence[Image.Image], config: ImageConfig
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """RGB images -> float32 (n, 3, H, W) ready for the vision graph."""
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    resample = Image.Resampling(config.resample)
    batch = []
    for img in images:
        rgb = img.convert("RGB")
        if config.resize_shortest_edge is not None:
            rgb = rgb.resize(
                resize_shape(*rgb.size, config.resize_shortest_edge), resample=resample
            )
        elif config.resize_to is not None:
            height, width = config.resize_to
            rgb = rgb.resize((width, height), resample=resample)
        arr = np.asarray(rgb)
        if config.crop_to is not None:
            ch, cw = config.crop_to
            top, left = (arr.shape[0] - ch) // 2, (arr.shape[1] - cw) // 2
            arr = arr[max(top, 0) : max(top, 0) + ch, max(left, 0) : max(left, 0) + cw]
        scaled = (arr.astype(np.float64) * config.rescale_factor).astype(np.float32)
        batch.append(((scaled - mean) / std).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)
