"""The catalogue for alignment: records, the fixed held-out split, pixels and text targets.

Torch-free, so the evaluation datasets can take the same held-out split without the export extra.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modalfuse.errors import InvalidDocument, ModalfuseError
from modalfuse.jsonl import read_records
from modalfuse.onnx_models.manifest import ImageConfig
from modalfuse.onnx_models.runtime.image import load_image, preprocess

HOLDOUT_BUCKETS = 10  # one bucket of ten: 10% of the catalogue


def is_held_out(doc_id: str) -> bool:
    """The fixed validation split: a hash of the id, so it never moves when the file is
    re-ordered or grows, and every tool (align, eval) agrees on it."""
    digest = hashlib.sha256(f"modalfuse-holdout:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Item:
    id: str
    text: str
    image: Path
    record: dict[str, Any]


def read_catalog(path: Path, *, text_field: str, image_field: str) -> list[Item]:
    """Records with a non-empty text and an image file; relative image paths resolve against
    the catalogue's folder. Records missing either are skipped (they cannot be aligned)."""
    items = []
    for number, record in read_records(path):
        text = str(record.get(text_field) or "").strip()
        image = record.get(image_field)
        if not text or not isinstance(image, str) or not image:
            continue
        image_path = Path(image) if Path(image).is_absolute() else path.parent / image
        if image_path.is_file():
            items.append(
                Item(id=str(record.get("id", number)), text=text, image=image_path, record=record)
            )
    if not items:
        raise InvalidDocument(
            f"{path}: no record has both {text_field!r} and a readable {image_field!r}",
            field=text_field,
        )
    return items


def split(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """(train, held out)."""
    train = [it for it in items if not is_held_out(it.id)]
    held = [it for it in items if is_held_out(it.id)]
    return train, held


def pixels(
    items: Sequence[Item], config: ImageConfig, *, max_bytes: int, max_pixels: int
) -> tuple[NDArray[np.float32], list[int]]:
    """Normalised (n, 3, H, W) pixels through the *runtime* pre-processing, so training sees
    exactly what workers will feed the exported graph; plus the indices that loaded."""
    arrays = []
    kept = []
    for i, item in enumerate(items):
        try:
            image = load_image(item.image, max_bytes=max_bytes, max_pixels=max_pixels)
        except ModalfuseError:
            continue  # a corrupt thumbnail is skipped, not fatal to a training run
        arrays.append(preprocess([image], config)[0])
        kept.append(i)
    return np.stack(arrays), kept


def name_ids(texts: Sequence[str]) -> NDArray[np.int64]:
    """Equal texts share an id: in-batch items with the same name are positives, not negatives."""
    seen: dict[str, int] = {}
    return np.asarray([seen.setdefault(t.lower(), len(seen)) for t in texts], dtype=np.int64)
