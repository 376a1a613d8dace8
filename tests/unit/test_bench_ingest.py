"""The ingest benchmark's pure parts: which round is reported, and how rounds are relabelled."""

from __future__ import annotations

import pytest

from modalfuse.benchmarks.ingest import median_round, relabelled
from modalfuse.errors import InvalidInput


def test_the_median_round_is_reported_whole() -> None:
    rounds = [{"ratio": 0.8, "n": 0}, {"ratio": 0.9, "n": 1}, {"ratio": 0.7, "n": 2}]
    assert median_round(rounds) == {"ratio": 0.8, "n": 0}
    # Of an even count, the upper of the two middle rounds.
    assert median_round([{"ratio": 0.9}, {"ratio": 0.7}]) == {"ratio": 0.9}
    assert median_round([{"ratio": 0.5}]) == {"ratio": 0.5}


def test_rounds_write_new_ids_and_cycle_short_inputs() -> None:
    docs = [{"id": "a", "title": "x"}, {"id": "b", "title": "y"}]
    assert relabelled(docs, "warm", 3) == [
        {"id": "warm0-a", "title": "x"},
        {"id": "warm1-b", "title": "y"},
        {"id": "warm2-a", "title": "x"},
    ]
    assert docs[0]["id"] == "a"  # the inputs are not changed


def test_zero_rounds_is_refused_with_the_reason() -> None:
    from modalfuse.benchmarks.ingest import run
    from modalfuse.settings import Settings

    with pytest.raises(InvalidInput, match="rounds: at least one"):
        run(Settings(), rounds=0)
