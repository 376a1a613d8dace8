import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modalfuse.onnx_models.batching import encode_in_order, length_sorted_batches


def test_batches_group_similar_lengths_longest_first() -> None:
    assert length_sorted_batches([3, 10, 1, 7, 10], 2) == [[1, 4], [3, 0], [2]]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        length_sorted_batches([1], 0)


@given(
    st.lists(st.integers(min_value=0, max_value=50), max_size=60),
    st.integers(min_value=1, max_value=9),
)
def test_every_index_once_and_order_restored(lengths: list[int], batch_size: int) -> None:
    batches = length_sorted_batches(lengths, batch_size)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= batch_size for b in batches)
    # Each row's "embedding" is its own length, so any reordering would show.
    out = encode_in_order(
        lengths,
        lengths,
        batch_size,
        lambda items: np.array([[x, -x] for x in items], dtype=np.float32).reshape(-1, 2),
        2,
    )
    assert out[:, 0].tolist() == [float(x) for x in lengths]
