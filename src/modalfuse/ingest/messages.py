"""The ingest message: what producers publish, in any language, as JSON.

    {"format": 1, "op": "upsert", "index": "products", "id": "42", "version": 1732270000000000000,
     "fields": {"title": "Red dress", "image": "https://shop.example/42.jpg", "price": 19.9}}

`version` orders writes to one document: the highest wins, everywhere (`external_gte` on
OpenSearch, the same rule on LanceDB). Producers set it; the Python producer uses the publish
time in nanoseconds. A message without one is stamped when the worker first parses it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modalfuse.engines.base import DeadLetter
from modalfuse.errors import InvalidDocument

FORMAT = 1
# A producer line that was not a JSON object travels as {UNPARSED: <line>, "index": ...}, so the
# worker dead-letters it, with its reason, in the right index's dead-letter store.
UNPARSED = "unparsed"
MAX_ID_CHARS = 512
MAX_FIELDS = 256


def now_version() -> int:
    return time.time_ns()


class IngestMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    op: Literal["upsert", "delete"] = "upsert"
    index: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,100}$")
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    version: int = Field(default_factory=now_version, ge=0, lt=2**63)
    fields: dict[str, Any] = Field(default_factory=dict, max_length=MAX_FIELDS)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if any(ord(c) < 32 for c in value):
            raise ValueError("control characters are not allowed in an id")
        return value

    @field_validator("fields")
    @classmethod
    def _no_fields_on_delete(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        if info.data.get("op") == "delete" and value:
            raise ValueError("a delete carries no fields")
        return value


def parse_message(raw: Any, *, max_bytes: int) -> IngestMessage:
    """A message from its JSON text or decoded dict; errors name the field at fault."""
    if isinstance(raw, str | bytes):
        if len(raw) > max_bytes:
            raise InvalidDocument(
                f"message is {len(raw)} bytes, over the {max_bytes}-byte cap", field="message"
            )
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidDocument(f"not JSON: {e}", field="message") from e
    elif len(json.dumps(raw, default=str)) > max_bytes:
        raise InvalidDocument(f"message is over the {max_bytes}-byte cap", field="message")
    if not isinstance(raw, dict):
        raise InvalidDocument(f"expected a JSON object, got {type(raw).__name__}", field="message")
    try:
        return IngestMessage.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "message"
        raise InvalidDocument(str(first["msg"]).removeprefix("Value error, "), field=field) from e


def raw_id(raw: Any) -> str | None:
    """The document id of a message that may not even parse, for the dead-letter record."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        return str(raw["id"])
    return None


def index_of(raw: Any, default: str) -> str:
    """The index a message (parsed or not) is meant for; `default` when it names none."""
    index = raw.get("index") if isinstance(raw, dict) else None
    return index if isinstance(index, str) and index else default


def dead_letter(
    item: Any, error: BaseException, *, index: str, attempts: int, doc_id: str | None = None
) -> DeadLetter:
    """The dead-letter record of a message that can never succeed: which field, and why."""
    message = item if isinstance(item, str) else json.dumps(item, default=str, ensure_ascii=False)
    return DeadLetter(
        id=uuid.uuid4().hex,
        index=index,
        doc_id=doc_id if doc_id is not None else raw_id(item),
        message=message,
        error_type=type(error).__name__,
        field=getattr(error, "field", None),
        reason=str(error),
        attempts=attempts,
        time=datetime.now(UTC),
    )
