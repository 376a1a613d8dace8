"""Which retrievers a query runs: a pure function of the request, the index's schema and which
encoders this process has. Each retriever that cannot run says why."""

from __future__ import annotations

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import ResolvedSchema, ResolvedVector
from modalfuse.query.request import RetrieverName, SearchRequest


def vector_for(schema: ResolvedSchema, role: str) -> ResolvedVector | None:
    """The index's vector field filled by the `role` encoder (text or image), if any."""
    for vec in schema.vectors.values():
        if vec.field.encoder == role:
            return vec
    return None


def why_not(
    req: SearchRequest,
    schema: ResolvedSchema,
    text: str,
    *,
    image_encoder: bool,
    text_side_problem: str | None,
) -> dict[RetrieverName, str | None]:
    """Per retriever: None when it can run for this query and index, else the reason.
    `text_side_problem` is None when the image model has a text side here."""
    why: dict[RetrieverName, str | None] = {
        "lexical": None if text else "the query has no text",
        "text_vector": None if text else "the query has no text",
        "text_to_image": None if text else "the query has no text",
        "image": None if req.image else "the query has no image",
    }
    if not schema.schema.text_fields:
        why["lexical"] = "the index has no text fields"
    if vector_for(schema, "text") is None:
        why["text_vector"] = "the index has no text vector field"
    if vector_for(schema, "image") is None:
        why["text_to_image"] = why["image"] = "the index has no image vector field"
    else:
        if why["image"] is None and not image_encoder:
            why["image"] = "no image encoder is configured"
        if why["text_to_image"] is None and text_side_problem is not None:
            why["text_to_image"] = text_side_problem
    return why


def plan(req: SearchRequest, available: dict[RetrieverName, str | None]) -> list[RetrieverName]:
    """The requested retrievers (each checked), or every one that applies."""
    if req.retrievers is None:
        chosen = [name for name, reason in available.items() if reason is None]
        if not chosen:
            raise InvalidInput("no retriever applies to this query and index", field="retrievers")
        return chosen
    for name in req.retrievers:
        if available[name] is not None:
            raise InvalidInput(f"{name!r} cannot run: {available[name]}", field="retrievers")
    return list(dict.fromkeys(req.retrievers))
