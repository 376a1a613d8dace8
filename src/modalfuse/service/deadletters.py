"""Dead letters: publish them again once what made them fail is fixed."""

from __future__ import annotations

import json
from typing import Any

from modalfuse.engines.base import DeadLetterStore
from modalfuse.ingest.producer import Producer
from modalfuse.settings import Settings


def retry_dead_letters(
    engine: DeadLetterStore, settings: Settings, *, index: str | None = None
) -> dict[str, int]:
    """Publish every dead letter of `index` again (each as it arrived, so one that still cannot
    succeed is dead-lettered again with its reason), then remove the records published."""
    name = index or settings.index
    records = engine.dead_letters(name, limit=100_000)
    items: list[Any] = []
    for r in records:
        try:
            items.append(json.loads(r.message))
        except json.JSONDecodeError:
            items.append(r.message)
    Producer(settings).publish_all(items)
    removed = engine.drop_dead_letters(name, [r.id for r in records])
    return {"republished": len(items), "removed": removed}
