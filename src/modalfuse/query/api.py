"""The HTTP API (`modalfuse serve`): `POST /search`, the index's merchandising rules
(`GET/POST /rules`, `DELETE /rules/{id}`), `GET /healthz`, `GET /readyz`, OpenAPI.

Bad input is a 4xx naming the field (422 for a bad request, 413 for a body or image over the
cap, 404 for an unknown index); an unreachable engine is 503; a search over the time limit 504.
Errors map to status codes by type. Nothing a client sends should produce a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from modalfuse.errors import (
    EncoderMismatch,
    EngineUnavailable,
    ImageTooLarge,
    IndexNotFound,
    InvalidInput,
    ModalfuseError,
    ModelLoadError,
    RuleNotFound,
    SearchTimeout,
)
from modalfuse.mappings.schema import ImageField
from modalfuse.query.fusion_config import FusionConfig
from modalfuse.query.links import with_image_urls
from modalfuse.query.ranking import store
from modalfuse.query.ranking.rules import Rule, RuleSet
from modalfuse.query.request import SearchRequest, SearchResponse, first_error
from modalfuse.query.retrievers import RETRIEVER_SPECS
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings


def _text_or_image(schema: dict[str, Any]) -> None:
    # What the search checks on its own: a query needs some text or an image.
    schema["anyOf"] = [{"required": ["text"]}, {"required": ["image_base64"]}]


class SearchBody(SearchRequest):
    """`SearchRequest` as JSON: the image travels base64-encoded."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, json_schema_extra=_text_or_image
    )
    index: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,100}$",
        description="Alias; defaults to MODALFUSE_INDEX.",
    )
    text: str | None = Field(
        default=None, pattern=r"\S", description="The query text (some non-space character)."
    )
    image: SkipJsonSchema[None] = Field(default=None, exclude=True)
    image_base64: str | None = Field(
        default=None,
        min_length=4,
        pattern=r"^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$|^(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$",
        json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/*"},
        description="The query image (JPEG, PNG, ...), base64-encoded.",
    )


def _error(status: int, kind: str, detail: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": kind, "field": field, "detail": detail}
    )


def create_api(
    settings: Settings,
    searcher: Searcher | None = None,
    *,
    fusion_config: FusionConfig | None = None,
) -> FastAPI:
    """The app. `fusion_config` fills the fusion settings a request leaves unset (before the
    index's own default)."""
    from modalfuse.query.querylog import QueryLogger

    if searcher is None:
        searcher = Searcher(settings)
        if settings.query_log:
            searcher.logger = QueryLogger(searcher.engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # At start-up, not on the first request: a missing provider fails the server, and the
        # first user does not wait for session start-up.
        await run_in_threadpool(searcher.warm_up)
        yield
        # The query log's last records are written before the engine goes.
        if searcher.logger is not None:
            await run_in_threadpool(searcher.logger.close)
        await run_in_threadpool(searcher.engine.close)

    app = FastAPI(
        lifespan=lifespan,
        title="modalfuse",
        version="1",
        description="Multimodal hybrid search: BM25 and vector retrieval fused (auto, RRF or "
        "score normalisation), then ranked like a shop: boosts, merchandising rules, collapse "
        "by variant group, diversity.",
    )
    app.state.searcher = searcher
    from modalfuse.query.page import page_router, static_files

    app.include_router(page_router(settings, searcher))
    app.mount("/static", static_files(), name="static")

    @app.middleware("http")
    async def limits(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return _error(413, "RequestTooLarge", f"body over {settings.max_request_bytes} bytes")
        guarded = request.url.path == "/search" or request.url.path.startswith("/rules")
        if guarded and settings.api_key is not None:
            given = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(given, settings.api_key.get_secret_value()):
                return _error(401, "Unauthorized", "missing or wrong X-API-Key header")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = first_error(exc)
        return _error(422, "InvalidRequest", message, field)

    @app.exception_handler(ModalfuseError)
    async def modalfuse_error(_: Request, exc: ModalfuseError) -> JSONResponse:
        field = getattr(exc, "field", None)
        if isinstance(exc, ImageTooLarge):
            return _error(413, type(exc).__name__, str(exc), field)
        if isinstance(exc, SearchTimeout):
            return _error(504, type(exc).__name__, str(exc))
        if isinstance(exc, EncoderMismatch):
            return _error(409, type(exc).__name__, str(exc), field)
        if isinstance(exc, RuleNotFound):
            return _error(404, type(exc).__name__, str(exc), field)
        if isinstance(exc, InvalidInput):
            return _error(422, type(exc).__name__, str(exc), field)
        if isinstance(exc, IndexNotFound):
            return _error(404, type(exc).__name__, str(exc))
        if isinstance(exc, EngineUnavailable | ModelLoadError):
            return _error(503, type(exc).__name__, str(exc))
        return _error(502, type(exc).__name__, str(exc))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await run_in_threadpool(searcher.ready)
        ok = not any(k.endswith("_error") for k in checks)
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, **checks})

    # The body's sub-models (filters) go to the document's components, where its references
    # point, so generated clients and fuzzers see the whole schema.
    body_schema = SearchBody.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    body_defs = body_schema.pop("$defs", {}) | {"SearchBody": body_schema}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in body_defs.items():
                schemas.setdefault(name, definition)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post(
        "/search",
        response_model=SearchResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/SearchBody"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["request"],
                            "properties": {
                                "request": {"$ref": "#/components/schemas/SearchBody"},
                                "image": {"type": "string", "format": "binary"},
                            },
                        },
                        "encoding": {"request": {"contentType": "application/json"}},
                    },
                },
            }
        },
    )
    async def search(request: Request) -> SearchResponse:
        req = await _parse(request, settings)
        if fusion_config is not None:
            req = fusion_config.apply(req)
        limit = settings.query_timeout_s
        # The thread cannot be killed: the search checks the deadline between its stages and
        # stops at the next one (no fetch, no log record) once the answer has been given up.
        deadline = time.monotonic() + limit
        try:
            response = await asyncio.wait_for(
                run_in_threadpool(searcher.search, req, deadline=deadline), timeout=limit
            )
        except TimeoutError:
            raise SearchTimeout(f"search took longer than {limit} s") from None
        images = searcher.schema(response.index).schema.of_type(ImageField)
        return with_image_urls(response, [f.name for f in images], index=req.index)

    def _index(index: str | None) -> str:
        return index or settings.index

    @app.get("/retrievers")
    async def retrievers() -> list[dict[str, Any]]:
        """The retrievers, from the one table of specs: what each needs from the query, the
        encoder and vector field it uses, and its vote under `auto` (the search page reads
        this to turn its modes into retriever lists)."""
        return [
            {
                "name": spec.name,
                "needs": spec.needs,
                "encoder": spec.encoder,
                "vector_role": spec.vector_role,
                "vote": spec.vote,
                "description": spec.describe(),
            }
            for spec in RETRIEVER_SPECS
        ]

    @app.get("/rules", response_model=RuleSet)
    async def list_rules(index: str | None = None) -> RuleSet:
        return await run_in_threadpool(store.rules_of, searcher.engine, _index(index))

    @app.post("/rules", response_model=RuleSet, status_code=201)
    async def add_rule(rule: Rule, index: str | None = None) -> RuleSet:
        """Add a rule to the index (or replace the rule of its id); returns the index's rules."""
        rules = await run_in_threadpool(store.add_rule, searcher.engine, _index(index), rule)
        searcher.forget(_index(index))
        return rules

    @app.delete("/rules/{rule_id}", response_model=RuleSet)
    async def remove_rule(rule_id: str, index: str | None = None) -> RuleSet:
        rules = await run_in_threadpool(store.remove_rule, searcher.engine, _index(index), rule_id)
        searcher.forget(_index(index))
        return rules

    return app


async def _parse(request: Request, settings: Settings) -> SearchRequest:
    """JSON (`image_base64`), or multipart: a `request` JSON part plus an `image` file part."""
    ctype = request.headers.get("content-type", "")
    image: bytes | None = None
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_part_size=settings.max_image_bytes + 1)
        raw = form.get("request") or "{}"
        upload = form.get("image")
        if upload is not None and not isinstance(upload, str):
            image = await upload.read(settings.max_image_bytes + 1)
        try:
            payload = json.loads(raw if isinstance(raw, str) else await raw.read())
        except json.JSONDecodeError as e:
            raise InvalidInput(f"the request part is not JSON: {e}", field="request") from e
    else:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInput(f"body is not JSON: {e}", field="body") from e
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object", field="body")
    encoded = payload.pop("image_base64", None)
    if encoded is not None:
        if not isinstance(encoded, str):
            raise InvalidInput("must be a base64 string", field="image_base64")
        if len(encoded) * 3 // 4 > settings.max_image_bytes:
            raise ImageTooLarge(
                f"image over the {settings.max_image_bytes}-byte cap", field="image"
            )
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput(f"not valid base64: {e}", field="image_base64") from e
    if image is not None and len(image) > settings.max_image_bytes:
        raise ImageTooLarge(f"image over the {settings.max_image_bytes}-byte cap", field="image")
    if "image" in payload:
        raise InvalidInput("send the image as image_base64, or as a multipart file", field="image")
    try:
        return SearchRequest.model_validate(payload | ({"image": image} if image else {}))
    except ValidationError as e:
        field, message = first_error(e)
        raise InvalidInput(message, field=field) from e
