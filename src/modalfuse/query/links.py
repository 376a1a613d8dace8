"""What the HTTP API answers for an image field: the URL the client fetches the image from
(`/images/{id}`, served under the same checks as ingest), not where it lies on the server.
A source that is already an http(s) URL is left as it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from modalfuse.images.sources import source_kind
from modalfuse.query.request import SearchResponse


def image_url(doc_id: str, index: str | None) -> str:
    query = f"?{urlencode({'index': index})}" if index else ""
    return f"/images/{quote(doc_id, safe='')}{query}"


def _linked(doc_id: str, fields: dict[str, Any], names: Sequence[str], index: str | None) -> Any:
    out = dict(fields)
    for name in names:
        value = out.get(name)
        if isinstance(value, str) and value and source_kind(value) == "path":
            out[name] = image_url(doc_id, index)
    return out


def with_image_urls(
    response: SearchResponse, image_fields: Sequence[str], *, index: str | None
) -> SearchResponse:
    """The response with every local image path of its hits and variants as its image URL."""
    if not image_fields:
        return response
    hits = []
    for hit in response.hits:
        variants = None
        if hit.variants is not None:
            variants = [
                v.model_copy(update={"fields": _linked(v.id, v.fields, image_fields, index)})
                for v in hit.variants
            ]
        fields = _linked(hit.id, hit.fields, image_fields, index)
        hits.append(hit.model_copy(update={"fields": fields, "variants": variants}))
    return response.model_copy(update={"hits": hits})
