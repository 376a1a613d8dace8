"""JSON Lines, read one way everywhere: numbered lines, blank lines skipped, and errors that name
the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modalfuse.errors import InvalidDocument


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON, or the raw text when a line does not parse). For the producer,
    which publishes bad lines too so that the worker dead-letters them with their reason."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                yield number, line.rstrip("\n")


def read_records(
    path: Path, *, required: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every line; a line that is not a JSON object (or lacks the
    `required` key) raises `InvalidDocument` naming `path:line`."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidDocument(f"{path}:{number}: not JSON: {e}", field="line") from e
            if not isinstance(record, dict):
                raise InvalidDocument(f"{path}:{number}: expected a JSON object", field="line")
            if required is not None and required not in record:
                raise InvalidDocument(
                    f"{path}:{number}: expected an object with {required!r}", field=required
                )
            yield number, record


def records(path: Path) -> list[dict[str, Any]]:
    """Every object in the file (`read_records` without the line numbers)."""
    return [record for _, record in read_records(path)]
