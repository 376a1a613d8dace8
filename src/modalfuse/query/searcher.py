"""`Searcher.search(SearchRequest) -> SearchResponse`: encode, retrieve, fuse, page, explain.

Retrievers, each filtered inside the engine's search:
- `lexical`: BM25 over the schema's text fields with their boosts;
- `text_vector`: the query text through the text encoder, kNN on the text vector field;
- `text_to_image`: the query text through the image model's text side (a CLIP text tower, or
  the text encoder an aligned image encoder was trained against), kNN on the image vector field;
- `image`: the query image through the image encoder, kNN on the image vector field.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self, TypeVar

from modalfuse.engines import open_engine
from modalfuse.engines.base import (
    Engine,
    Hit,
    KnnQuery,
    LexicalQuery,
    SubSearch,
)
from modalfuse.engines.filters import check_filters, matches
from modalfuse.errors import InvalidInput, ModalfuseError, SearchTimeout
from modalfuse.mappings.analysis import lexical_target, pre_analyzed
from modalfuse.mappings.schema import ResolvedSchema, check_model
from modalfuse.onnx_models.pool import EncoderPool
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.onnx_models.runtime.image import load_image
from modalfuse.query import fusion, planner
from modalfuse.query.fusion_config import FusionConfig
from modalfuse.query.hits import as_hit
from modalfuse.query.querylog import QueryLogger
from modalfuse.query.ranking import plan as ranking_plan
from modalfuse.query.ranking.plan import RankingPlan, plan_ranking
from modalfuse.query.ranking.stages import Candidate
from modalfuse.query.request import (
    RetrieverName,
    RetrieverVote,
    SearchRequest,
    SearchResponse,
)
from modalfuse.query.retrievers import SPECS, PlannedRetriever, vote_groups
from modalfuse.query.server_side import fused_in_engine, server_side_response
from modalfuse.query.stored import IndexSettings
from modalfuse.settings import Settings

T = TypeVar("T")


class Searcher:
    """Holds the engine and the encoders (loaded once, on first use) for many searches."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        logger: QueryLogger | None = None,
        encoders: EncoderPool | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self._engine = engine
        # An engine passed in belongs to the caller; one opened here is closed by `close()`.
        self._owns_engine = engine is None
        self.encoders = encoders or EncoderPool(self.settings)
        self.indices = IndexSettings(lambda: self.engine)
        # Per thread: the API runs searches on a pool, each with its own deadline.
        self._local = threading.local()
        self.logger = logger

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.settings)
        return self._engine

    def close(self) -> None:
        """Flush the query log and close the engine this searcher opened."""
        if self.logger is not None:
            self.logger.close()
        if self._engine is not None and self._owns_engine:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoders ------------------------------------------------------------------------

    def _encoder(self, role: str) -> OnnxEncoder | None:
        return self.encoders.get(role)

    def _required(self, role: str) -> OnnxEncoder:
        return self.encoders.require(role)

    def schema(self, index: str) -> ResolvedSchema:
        return self.indices.schema(index)

    def fusion_defaults(self, index: str) -> FusionConfig | None:
        return self.indices.fusion(index)

    def forget(self, index: str) -> None:
        """Read an index's schema and stored settings again (after this process changed them)."""
        self.indices.forget(index)

    # -- planning ------------------------------------------------------------------------

    def plan(self, req: SearchRequest, schema: ResolvedSchema, text: str) -> list[RetrieverName]:
        """The retrievers to run (`planner.plan`, given the encoders this process has)."""
        needs_image_side = text and planner.vector_for(schema, "image") is not None
        available = planner.why_not(
            req,
            schema,
            text,
            image_encoder=self._encoder("image") is not None,
            text_side_problem=(
                self.encoders.text_side_problem()
                if needs_image_side and self._encoder("text_to_image") is None
                else None
            ),
        )
        return planner.plan(req, available)

    # -- the search ----------------------------------------------------------------------

    def _prepare(
        self, req: SearchRequest, timings: dict[str, float], warnings: list[str]
    ) -> tuple[SearchRequest, str, str, list[PlannedRetriever], RankingPlan, list[SubSearch]]:
        """Defaults applied, input checked, retrievers and ranking planned, query encoded: the
        request as it runs, its index, the (cut) query text, the planned retrievers, the
        ranking plan and one sub-search per retriever."""
        index = req.index or self.settings.index
        schema = self.schema(index)
        defaults = self.fusion_defaults(index)
        if defaults is not None:
            req = defaults.apply(req)
        text = (req.text or "").strip()
        if len(text) > self.settings.max_query_chars:
            warnings.append(
                f"query text cut from {len(text)} to {self.settings.max_query_chars} characters"
            )
            text = text[: self.settings.max_query_chars]
        if not text and not req.image:
            raise InvalidInput("empty query: give text, an image, or both", field="text")
        check_filters(schema.schema, list(req.filters))
        planner.lexical_fields(schema, req.lexical_fields)  # checked even where lexical won't run
        names = self.plan(req, schema, text)
        unknown = set(req.weights) - set(names)
        if unknown:
            raise InvalidInput(
                f"weights for retrievers that do not run: {sorted(unknown)}", field="weights"
            )
        req, ranking = self._ranking(req, index, schema, text, warnings)
        chosen = planner.planned(names, schema)
        subs = self._sub_searches(req, schema, text, chosen, ranking.fields(), timings)
        return req, index, text, chosen, ranking, subs

    def _ranking(
        self,
        req: SearchRequest,
        index: str,
        schema: ResolvedSchema,
        text: str,
        warnings: list[str],
    ) -> tuple[SearchRequest, RankingPlan]:
        return plan_ranking(
            req,
            schema,
            text,
            defaults=None if req.server_side else self.indices.ranking(index),
            rules=self.indices.rules(index),
            warnings=warnings,
        )

    def retrieve(self, req: SearchRequest) -> dict[RetrieverName, list[Hit]]:
        """Each planned retriever's ranked list (top `window`), before fusion: what `search`
        fuses, for callers that fuse many ways offline (`modalfuse eval --tune`)."""
        self._local.deadline = None
        req, index, _, chosen, _, subs = self._prepare(req, {}, [])
        lists = self.engine.search_many(index, subs)
        return {p.name: hits for p, hits in zip(chosen, lists, strict=True)}

    def search(self, req: SearchRequest, *, deadline: float | None = None) -> SearchResponse:
        """`deadline` (time.monotonic): past it, the search stops before its next stage with
        SearchTimeout (what the API's time limit uses to cancel a search it gave up on)."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        self._local.deadline = deadline
        warnings: list[str] = []
        req, index, text, chosen, ranking, subs = self._prepare(req, timings, warnings)
        names = [p.name for p in chosen]
        if req.server_side:
            hits = self._timed(
                timings,
                "retrieve",
                lambda: fused_in_engine(self.engine, req, index, names, subs, warnings),
            )
            return server_side_response(req, index, names, hits, timings, warnings, started)
        lists = self._timed(timings, "retrieve", lambda: self.engine.search_many(index, subs))
        groups = self.embedding_groups(names)
        by_name: dict[str, list[Hit]] = dict(zip(names, lists, strict=True))
        fused = self._timed(
            timings,
            "fuse",
            lambda: fusion.fuse(
                by_name,
                method=req.fusion,
                rank_constant=req.k,
                weights={str(k): v for k, v in req.weights.items()},
                window=req.window,
                groups=groups,
            ),
        )
        # The stage fields came back with the hits; the first list's copy of a document is kept.
        stage_fields: dict[str, dict[str, Any]] = {}
        for hits in lists:
            for h in hits:
                if h.source and h.id not in stage_fields:
                    stage_fields[h.id] = h.source
        pinned = self._pinned_outside(index, req, ranking, {f.id for f in fused})
        refs = {h.id: h.ref for hits in lists for h in hits if h.ref is not None}
        on = [req.diversify.on] if req.diversify is not None else []
        ranked = ranking_plan.run(
            ranking,
            fused,
            stage_fields,
            from_=req.from_,
            size=req.size,
            pinned_extra=pinned,
            timed=lambda stage, fn: self._timed(timings, stage, fn),
            load=lambda ids: self.engine.fetch(index, ids, refs, fields=on),
        )
        # Fields for the page only (and its variants): the retrievers returned ids and scores.
        sources: dict[str, dict[str, Any]] = {}
        if req.return_fields:
            wanted = [c.id for hit in ranked.hits for c in (hit, *hit.variants)]
            sources = self._timed(timings, "fetch", lambda: self.engine.fetch(index, wanted, refs))
        page = [
            as_hit(c, sources, req.explain, collapsed=req.collapse is not None) for c in ranked.hits
        ]
        timings["total"] = (time.perf_counter() - started) * 1000
        response = SearchResponse(
            index=index,
            hits=page,
            total=ranked.total,
            total_counts="groups" if req.collapse is not None else "documents",
            retrievers=names,
            fusion=req.fusion,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            warnings=warnings,
            fusion_weights=self.votes(req, names, groups, by_name) if req.explain else None,
            rules=[r.id for r in ranking.rules],
            stages=["retrieve", "fuse", *ranking.stages, "page"],
            facets=ranked.facets,
        )
        if self.logger is not None:
            self.logger.record(req, response, text)
        return response

    def _pinned_outside(
        self, index: str, req: SearchRequest, ranking: RankingPlan, present: set[str]
    ) -> dict[str, Candidate]:
        """Pinned documents the retrievers did not return: fetched, and kept only where they
        pass the request's filters (a pin never shows what the filters exclude)."""
        missing = [i for i in ranking.pinned_ids if i not in present]
        if not missing:
            return {}
        found = self.engine.fetch(index, missing)
        return {
            doc_id: Candidate(id=doc_id, relevance=0.0, score=0.0, fields=dict(fields))
            for doc_id, fields in found.items()
            if all(matches(f, fields) for f in req.filters)
        }

    def _sub_searches(
        self,
        req: SearchRequest,
        schema: ResolvedSchema,
        text: str,
        chosen: list[PlannedRetriever],
        fields: tuple[str, ...],
        timings: dict[str, float],
    ) -> list[SubSearch]:
        filters = list(req.filters)
        vectors: dict[str, Any] = {}
        roles = {p.spec.encoder for p in chosen}
        for p in chosen:
            # An index filled by one encoder is never searched with another's vectors.
            if p.field is not None and p.spec.encoder in ("text", "image"):
                encoder_name = self._required(p.spec.encoder).manifest.name
                check_model(schema.vectors[p.field].field, encoder_name)
        if "text" in roles or "text_to_image" in roles:
            encoder = self._required("text")
            vectors["text"] = self._timed(
                timings, "encode_text", lambda: encoder.encode_texts([text])[0]
            )
        if "text_to_image" in roles:
            side = self._required("text_to_image")
            if side is self._encoder("text"):
                vectors["text_to_image"] = vectors["text"]
            else:
                vectors["text_to_image"] = self._timed(
                    timings, "encode_text_to_image", lambda: side.encode_texts([text])[0]
                )
        if "image" in roles:
            image = load_image(
                req.image or b"",
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
                field="image",
            )
            encoder = self._required("image")
            vectors["image"] = self._timed(
                timings, "encode_image", lambda: encoder.encode_images([image])[0]
            )
        subs: list[SubSearch] = []
        for p in chosen:
            if p.spec.encoder is None:
                # Analysed as the index's fields are: pre-analysed fields through their tokens.
                searched = planner.lexical_fields(schema, req.lexical_fields)
                query_text, boosts = lexical_target(
                    text, {f.name: f.boost for f in searched}, pre_analyzed(searched)
                )
                subs.append(
                    LexicalQuery(
                        text=query_text,
                        fields=boosts,
                        k=req.window,
                        filters=filters,
                        source=False,
                        returned=fields,
                    )
                )
                continue
            assert p.field is not None  # plan() checked the index has it
            subs.append(
                KnnQuery(
                    field=p.field,
                    vector=vectors[p.spec.encoder],
                    k=req.window,
                    filters=filters,
                    ef_search=schema.vectors[p.field].field.hnsw.ef_search,
                    source=False,
                    returned=fields,
                )
            )
        return subs

    def embedding_groups(self, names: Sequence[RetrieverName]) -> dict[str, str]:
        """Which query embedding drives each retriever: `text_to_image` shares the text one when
        the image encoder is aligned to the text encoder (a CLIP text tower is its own)."""
        shared = "text_to_image" not in names or self.encoders.shares_text_embedding()
        return vote_groups(
            [PlannedRetriever(spec=SPECS[n], field=None) for n in names], shared_text_tower=shared
        )

    @staticmethod
    def votes(
        req: SearchRequest,
        names: Sequence[RetrieverName],
        groups: Mapping[str, str],
        lists: Mapping[str, Sequence[Hit]],
    ) -> dict[RetrieverName, RetrieverVote]:
        """Each retriever's weight in this query's fusion, and why (for explain)."""
        weights = {str(k): v for k, v in req.weights.items()}
        if req.fusion == "auto":
            window = fusion.truncated(lists, req.window)
            votes = fusion.auto_votes(list(names), groups, weights, window)
            return {n: RetrieverVote(weight=votes[n].weight, why=votes[n].why) for n in names}
        return {
            n: RetrieverVote(
                weight=weights.get(n, 1.0),
                why=f"{req.fusion}: a fixed weight ({'requested' if n in weights else 'default'})",
            )
            for n in names
        }

    def image_search_available(self, index: str) -> bool:
        """Whether a query image can be searched: the index has image vectors and an image
        encoder is configured."""
        return planner.vector_for(self.schema(index), "image") is not None and (
            self._encoder("image") is not None
        )

    def warm_up(self) -> str:
        """Load the encoders and run each once now, so a provider or model problem fails before
        any work starts, and the first query does not pay for session start-up and the first
        run's allocations. Returns the text encoder's provider."""
        text = self._required("text")
        text.encode_texts(["warm up"])
        image = self._encoder("image")
        if image is not None:
            from PIL import Image

            image.encode_images([Image.new("RGB", (60, 80), "white")])
        return text.provider

    def _timed(self, timings: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise SearchTimeout(f"search stopped before {stage}: past its time limit")
        started = time.perf_counter()
        try:
            return fn()
        finally:
            timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - started) * 1000

    def ready(self) -> dict[str, Any]:
        """What /readyz reports: the engine answers and the encoders load."""
        checks: dict[str, Any] = {}
        try:
            checks["index"] = self.engine.stats(self.settings.index).documents
        except ModalfuseError as e:
            checks["index_error"] = f"{type(e).__name__}: {e}"
        try:
            self._required("text")
            checks["text_encoder"] = True
        except ModalfuseError as e:
            checks["encoder_error"] = f"{type(e).__name__}: {e}"
        return checks
