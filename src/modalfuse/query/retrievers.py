"""The retrievers, as one table of specs: what each needs from the query, which encoder role
encodes the query for it, which vector field it searches and whose vote it casts under `auto`.
The planner, the searcher, the request model and the explain output all read this table."""

from __future__ import annotations

import dataclasses
from typing import Literal

from modalfuse.mappings.schema import EncoderRole

RetrieverName = Literal["lexical", "text_vector", "text_to_image", "image"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrieverSpec:
    name: RetrieverName
    # What the query must carry for it to run.
    needs: Literal["text", "image"]
    # The encoder role that turns the query into a vector (None: BM25, no encoder).
    encoder: Literal["text", "text_to_image", "image"] | None
    # The index's vector field it searches: the one filled by this encoder role.
    vector_role: EncoderRole | None
    # Under `auto`, the query embedding that drives it (one vote per embedding).
    vote: str
    # The vote it casts instead when the image model encodes text with a tower of its own (a
    # CLIP text tower), so that its embedding is not the text encoder's.
    own_tower_vote: str | None = None
    # Under `auto`, its vote counts in proportion to how much the other votes corroborate its
    # top hits (fusion.corroboration): BM25, whose term matches go wrong without a sign of it.
    corroborated: bool = False

    def describe(self) -> str:
        if self.vector_role is None:
            return f"BM25 over the text fields (needs query {self.needs})"
        return (
            f"kNN of the query {self.needs} ({self.encoder} encoder) on the "
            f"{self.vector_role} vector field"
        )


RETRIEVER_SPECS: tuple[RetrieverSpec, ...] = (
    RetrieverSpec(
        name="lexical",
        needs="text",
        encoder=None,
        vector_role=None,
        vote="lexical",
        corroborated=True,
    ),
    RetrieverSpec(
        name="text_vector", needs="text", encoder="text", vector_role="text", vote="text"
    ),
    RetrieverSpec(
        name="text_to_image",
        needs="text",
        encoder="text_to_image",
        vector_role="image",
        vote="text",
        own_tower_vote="clip text",
    ),
    RetrieverSpec(name="image", needs="image", encoder="image", vector_role="image", vote="image"),
)
SPECS: dict[str, RetrieverSpec] = {s.name: s for s in RETRIEVER_SPECS}
RETRIEVERS: tuple[RetrieverName, ...] = tuple(s.name for s in RETRIEVER_SPECS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlannedRetriever:
    """A retriever chosen for one query: its spec and the index field it searches (None for
    lexical, which searches every text field with its boost)."""

    spec: RetrieverSpec
    field: str | None

    @property
    def name(self) -> RetrieverName:
        return self.spec.name


def vote_groups(planned: list[PlannedRetriever], *, shared_text_tower: bool) -> dict[str, str]:
    """Which query embedding drives each planned retriever (auto's vote groups)."""
    return {
        p.name: p.spec.vote
        if shared_text_tower or p.spec.own_tower_vote is None
        else p.spec.own_tower_vote
        for p in planned
    }
