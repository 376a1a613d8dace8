"""The search page `modalfuse serve` shows at `/`, and the two reads it needs besides `/search`:
a product's image (`/images/{id}`) and facet values for the filter menus (`/facets`).

Static files only (HTML, JS, CSS from `query/static/`), nothing from a CDN. Images are served
from the reference stored with the document, through the same guards as ingest: a path must lie
under the allowed image roots, a URL goes through the address-checked fetcher.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from modalfuse.errors import IndexNotFound, InvalidInput
from modalfuse.mappings.schema import ImageField, KeywordField
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
MAX_FACET_FIELDS = 8


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)


def page_router(settings: Settings, searcher: Searcher) -> APIRouter:
    router = APIRouter()
    http: dict[str, Any] = {}

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/images/{doc_id:path}", responses={200: {"content": {"image/jpeg": {}}}})
    async def image(doc_id: str, index: str | None = None) -> Response:
        """The image stored with a document (404 when it has none)."""
        data, media_type = await run_in_threadpool(_image_bytes, doc_id, index)
        return Response(
            content=data, media_type=media_type, headers={"Cache-Control": "max-age=3600"}
        )

    def _image_bytes(doc_id: str, index: str | None) -> tuple[bytes, str]:
        from PIL import Image

        from modalfuse.images import sources as images
        from modalfuse.images.roots import read_roots
        from modalfuse.onnx_models.runtime.image import load_image

        name = index or settings.index
        fields = searcher.schema(name).schema.of_type(ImageField)
        source = searcher.engine.fetch(name, [doc_id]).get(doc_id)
        if source is None:
            raise IndexNotFound(f"no document {doc_id!r} in {name!r}")
        ref = next((source[f.name] for f in fields if isinstance(source.get(f.name), str)), None)
        if ref is None:
            raise IndexNotFound(f"document {doc_id!r} has no image")
        if "client" not in http:
            http["client"] = images.http_client(settings)
        data = images.read_source(
            ref, settings=settings, roots=read_roots(settings), client=http["client"]
        )
        # The same checks as ingest (format, pixel cap) before anything reaches a browser.
        load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        with Image.open(io.BytesIO(data)) as probe:
            return data, MEDIA_TYPES.get(probe.format or "", "application/octet-stream")

    @router.get("/facets")
    async def facets(
        index: str | None = None,
        field: Annotated[list[str] | None, Query()] = None,
        size: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Most frequent values of keyword fields (default: every keyword field), for filters."""
        name = index or settings.index

        def run() -> dict[str, Any]:
            schema = searcher.schema(name).schema
            keywords = [f.name for f in schema.of_type(KeywordField)]
            wanted = field or keywords
            unknown = [f for f in wanted if f not in keywords]
            if unknown:
                raise InvalidInput(
                    f"not keyword fields of {name!r}: {unknown}; known: {keywords}", field="field"
                )
            if len(wanted) > MAX_FACET_FIELDS:
                raise InvalidInput(f"at most {MAX_FACET_FIELDS} fields", field="field")
            counts = searcher.engine.facets(name, wanted, size=size)
            return {
                "index": name,
                "facets": {f: [{"value": v, "count": c} for v, c in counts[f]] for f in wanted},
            }

        return await run_in_threadpool(run)

    return router
