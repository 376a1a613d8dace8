"""What dead letters say, summed up: so a count of lost documents is never shown without why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from modalfuse.engines.base import DeadLetter, DeadLetterStore
from modalfuse.errors import ModalfuseError

TOP_REASONS = 5


def common_reasons(records: Sequence[DeadLetter], top: int = TOP_REASONS) -> list[dict[str, Any]]:
    """The most common kinds of failure (error type and field), most frequent first, each with
    its count and one example reason."""
    kinds = Counter((r.error_type, r.field) for r in records)
    example = {(r.error_type, r.field): r.reason for r in reversed(records)}
    return [
        {"error_type": kind, "field": field, "count": n, "example": example[(kind, field)]}
        for (kind, field), n in kinds.most_common(top)
    ]


def reasons_of(engine: DeadLetterStore, index: str, count: int) -> list[dict[str, Any]]:
    """`common_reasons` over the newest `count` dead letters of `index` (none when count is 0
    or the store cannot be read: the count itself is still reported by the caller)."""
    if count <= 0:
        return []
    try:
        return common_reasons(engine.dead_letters(index, limit=count))
    except ModalfuseError:
        return []


def describe(count: int, reasons: Sequence[dict[str, Any]], *, total: int | None = None) -> str:
    """One screen paragraph: how many were lost and why."""
    of = f" of {total}" if total is not None else ""
    lines = [f"{count}{of} document(s) dead-lettered (never indexed):"]
    for r in reasons:
        field = f" on {r['field']!r}" if r["field"] else ""
        lines.append(f"  {r['count']:>6} x {r['error_type']}{field}, e.g. {r['example']}")
    if count:
        lines.append(
            "  `modalfuse dlq list` shows them; `modalfuse dlq retry` publishes them again"
        )
    return "\n".join(lines)
