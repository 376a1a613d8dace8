"""The search request and response: what the Python API, the CLI and the HTTP API exchange."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modalfuse.engines.filters import Filter
from modalfuse.query.fusion import Method
from modalfuse.query.ranking.models import Boost, Collapse, Diversify, check_weights_bound
from modalfuse.query.retrievers import RETRIEVERS, RetrieverName

__all__ = ["RETRIEVERS", "RetrieverName"]
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
    lexical_fields: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="The text fields lexical search reads, with their schema boosts; default: "
        "every text field. Vector fields still embed what their schema says.",
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
    # Ranking after fusion (docs/ranking.md): None takes the index's default ranking.
    boosts: list[Boost] | None = Field(
        default=None,
        max_length=32,
        description="Boosts on signals and filters after fusion: final = relevance x "
        "clamp(1 + sum(weight x factor), 0, 2); default: the index's.",
    )
    collapse: Collapse | None = Field(
        default=None, description="One hit per value of a keyword field, with its variants."
    )
    diversify: Diversify | None = Field(
        default=None, description="MMR over the ranked candidates (lambda in [0, 1])."
    )
    rules: bool = Field(default=True, description="Apply the index's merchandising rules.")
    facets: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Keyword fields whose values are counted over the ranked window.",
    )
    facets_after_collapse: bool = Field(
        default=True, description="With collapse: count groups (True) or every hit (False)."
    )

    @field_validator("boosts")
    @classmethod
    def _boost_bound(cls, boosts: list[Any] | None) -> list[Any] | None:
        if boosts:
            check_weights_bound(boosts, "boosts")
        return boosts

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


class BoostExplain(BaseModel):
    boost: str
    value: float | None = Field(description="What the boost read (1/0 for a filter).")
    factor: float = Field(description="f in [0, 1].")
    weight: float
    term: float = Field(description="weight x factor.")
    rule: str | None = Field(default=None, description="The rule it came from, if any.")


class RankingExplain(BaseModel):
    """A hit through the stages after fusion: `final = relevance x multiplier`, with
    `multiplier = clamp(1 + sum(terms), 0, 2)`."""

    relevance: float
    multiplier: float
    boosts: list[BoostExplain]
    final: float
    pinned_by: str | None = None
    group: str | None = None
    group_size: int = 1
    mmr_penalty: float | None = None
    positions: dict[str, int] = Field(description="1-based position after each stage.")


class Variant(BaseModel):
    id: str
    score: float
    fields: dict[str, Any] = Field(default_factory=dict)


class SearchHit(BaseModel):
    id: str
    score: float
    fields: dict[str, Any]
    explain: dict[str, RetrieverExplain] | None = None
    pinned: int | None = Field(default=None, description="The position a rule pinned it at.")
    group: str | None = Field(default=None, description="With collapse: its group's value.")
    variants: list[Variant] | None = Field(
        default=None, description="With collapse: other members of its group (up to inner)."
    )
    ranking: RankingExplain | None = None


class SearchResponse(BaseModel):
    index: str
    hits: list[SearchHit]
    total: int = Field(description="Hits in the ranked window (groups under collapse).")
    total_counts: Literal["documents", "groups"] = "documents"
    retrievers: list[RetrieverName]
    fusion: Method
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    fusion_weights: dict[RetrieverName, RetrieverVote] | None = Field(
        default=None, description="With explain: each retriever's weight in the fusion, and why."
    )
    rules: list[str] = Field(default_factory=list, description="The rules that fired.")
    stages: list[str] = Field(default_factory=list, description="The stages that ran.")
    facets: dict[str, list[tuple[str, int]]] | None = None
