"""Length-sorted batching: pad little, then give results back in the caller's order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, stable for ties).

    Longest first makes the first batch the most expensive, so a memory problem shows at once.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def encode_in_order(
    items: Sequence[T],
    lengths: Sequence[int],
    batch_size: int,
    encode_batch: Callable[[list[T]], np.ndarray[Any, Any]],
    dim: int,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Encode `items` in length-sorted batches and return rows in the original order."""
    out = np.empty((len(items), dim), dtype=np.float32)
    for batch in length_sorted_batches(lengths, batch_size):
        out[batch] = encode_batch([items[i] for i in batch])
    return out
