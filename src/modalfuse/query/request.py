"""The search request and response: what the Python API, the CLI and the HTTP API exchange."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modalfuse.engines.filters import Filter
from modalfuse.query.fusion import Method

RetrieverName = Literal["lexical", "text_vector", "text_to_image", "image"]
RETRIEVERS: tuple[RetrieverName, ...] = ("lexical", "text_vector", "text_to_image", "image")
MAX_WINDOW = 1000
# A retriever's weight: finite and not negative (0 switches the retriever's vote off).
Weight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


def first_error(error: Any) -> tuple[str | None, str]:
    """The first problem pydantic reported (a ValidationError or FastAPI's request error): its
    field as a dotted path (the body and dict-key markers left out) and its message."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"] if p not in ("body", "[key]")) or None
    return field, str(first["msg"]).removeprefix("Value error, ")


def check_weights(weights: dict[RetrieverName, float]) -> None:
    """Weights, when given, must leave at least one retriever with a say."""
    if weights and not any(w > 0 for w in weights.values()):
        raise ValueError("weights: at least one must be above 0")


class SearchRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    index: str | None = Field(default=None, description="Alias; defaults to MODALFUSE_INDEX.")
    text: str | None = None
    image: bytes | None = Field(default=None, description="Encoded image bytes (JPEG, PNG...).")
    filters: list[Filter] = Field(default_factory=list)
    retrievers: list[RetrieverName] | None = Field(
        default=None,
        min_length=1,
        description="Which retrievers run; default: every one the query and index allow.",
    )
    fusion: Method = Field(
        default="auto",
        description="auto (default: min-max, one vote per query embedding), rrf, minmax or zscore.",
    )
    weights: dict[RetrieverName, Weight] = Field(
        default_factory=dict,
        description="Per-retriever weight (finite, >= 0, at least one > 0); default 1 each.",
        # "At least one above 0": not an object whose every value is 0.
        json_schema_extra={"not": {"minProperties": 1, "additionalProperties": {"const": 0}}},
    )
    k: int = Field(default=60, ge=1, le=10_000, description="RRF rank constant.")
    window: int = Field(default=100, ge=1, le=MAX_WINDOW, description="Candidates per retriever.")
    from_: int = Field(
        default=0,
        ge=0,
        le=MAX_WINDOW - 1,
        alias="from",
        description="First hit; from + size <= window.",
    )
    size: int = Field(default=10, ge=1, le=100)
    explain: bool = False
    return_fields: bool = Field(
        default=True, description="False: ids and scores only (no stored fields are fetched)."
    )
    server_side: bool = Field(
        default=False, description="OpenSearch only: fuse in the cluster (hybrid query + pipeline)."
    )

    @model_validator(mode="after")
    def _window_covers_page(self) -> SearchRequest:
        if self.from_ + self.size > self.window:
            raise ValueError(
                f"from + size = {self.from_ + self.size} is beyond the window ({self.window}); "
                "raise window or page less deep"
            )
        if self.retrievers is not None and not self.retrievers:
            raise ValueError("retrievers, when given, must name at least one")
        check_weights(self.weights)
        return self


class RetrieverExplain(BaseModel):
    rank: int
    raw_score: float
    normalized: float | None = None
    contribution: float


class RetrieverVote(BaseModel):
    """The weight a retriever had in this query's fusion, and why."""

    weight: float
    why: str


class SearchHit(BaseModel):
    id: str
    score: float
    fields: dict[str, Any]
    explain: dict[str, RetrieverExplain] | None = None


class SearchResponse(BaseModel):
    index: str
    hits: list[SearchHit]
    total: int = Field(description="Distinct documents in the fused window.")
    retrievers: list[RetrieverName]
    fusion: Method
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    fusion_weights: dict[RetrieverName, RetrieverVote] | None = Field(
        default=None, description="With explain: each retriever's weight in the fusion, and why."
    )
