"""Which retrievers a query runs: a pure function of the request, the index's schema and which
encoders this process has. Each retriever that cannot run says why."""

from __future__ import annotations

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import ResolvedSchema, ResolvedVector, TextField
from modalfuse.query.request import RetrieverName, SearchRequest
from modalfuse.query.retrievers import RETRIEVER_SPECS, SPECS, PlannedRetriever


def vector_for(schema: ResolvedSchema, role: str) -> ResolvedVector | None:
    """The index's vector field filled by the `role` encoder (text or image), if any."""
    for vec in schema.vectors.values():
        if vec.field.encoder == role:
            return vec
    return None


def lexical_fields(schema: ResolvedSchema, names: list[str] | None) -> list[TextField]:
    """The text fields a lexical search reads: the request's, each a text field of the index
    (in the schema's order), else every text field."""
    text = schema.schema.text_fields
    if names is None:
        return text
    known = {f.name for f in text}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(
            f"not a text field of the index: {', '.join(map(repr, unknown))}; its text fields "
            f"are {', '.join(sorted(known)) or 'none'}",
            field="lexical_fields",
        )
    return [f for f in text if f.name in names]


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
    carried = {"text": bool(text), "image": bool(req.image)}
    why: dict[RetrieverName, str | None] = {}
    for spec in RETRIEVER_SPECS:
        reason: str | None = None
        if not carried[spec.needs]:
            reason = f"the query has no {spec.needs}"
        elif spec.vector_role is None:
            if not schema.schema.text_fields:
                reason = "the index has no text fields"
        elif vector_for(schema, spec.vector_role) is None:
            reason = f"the index has no {spec.vector_role} vector field"
        elif spec.encoder == "image" and not image_encoder:
            reason = "no image encoder is configured"
        elif spec.encoder == "text_to_image":
            reason = text_side_problem
        why[spec.name] = reason
    # An index without image vectors says so for both image retrievers, query or not.
    if vector_for(schema, "image") is None:
        why["text_to_image"] = why["image"] = "the index has no image vector field"
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


def planned(names: list[RetrieverName], schema: ResolvedSchema) -> list[PlannedRetriever]:
    """The chosen retrievers with the vector field each searches (`plan` checked they exist)."""
    out = []
    for name in names:
        spec = SPECS[name]
        vec = vector_for(schema, spec.vector_role) if spec.vector_role else None
        out.append(PlannedRetriever(spec=spec, field=vec.field.name if vec else None))
    return out
