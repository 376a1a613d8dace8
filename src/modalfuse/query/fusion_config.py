"""A fusion configuration: the settings `modalfuse eval --tune` finds, written as a file that
`search`, `serve` and `eval` take (`--fusion-config`), and that can be made an index's default
(`modalfuse index set-fusion`).

Precedence, highest first: what a request sets explicitly, the `--fusion-config` file, the
index's default, the built-in defaults (auto, k = 60, weights 1, window 100).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modalfuse.errors import ConfigError, InvalidInput
from modalfuse.query.fusion import Method
from modalfuse.query.request import (
    MAX_WINDOW,
    RetrieverName,
    SearchRequest,
    Weight,
    check_weights,
    first_error,
)


class FusionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fusion: Method = "auto"
    k: int = Field(default=60, ge=1, le=10_000, description="RRF rank constant.")
    weights: dict[RetrieverName, Weight] = Field(default_factory=dict)
    window: int = Field(default=100, ge=1, le=MAX_WINDOW)
    retrievers: list[RetrieverName] | None = Field(
        default=None,
        min_length=1,
        description="Which retrievers run; None: every one that applies.",
    )
    tuned: dict[str, Any] | None = Field(
        default=None, description="Where it came from: dataset, split, figures (informational)."
    )

    @model_validator(mode="after")
    def _weights(self) -> FusionConfig:
        check_weights(self.weights)
        return self

    def settings(self) -> dict[str, Any]:
        """The request fields this config fills."""
        out: dict[str, Any] = {"fusion": self.fusion, "k": self.k, "window": self.window}
        if self.weights:
            out["weights"] = dict(self.weights)
        if self.retrievers is not None:
            out["retrievers"] = list(self.retrievers)
        return out

    def apply(self, request: SearchRequest) -> SearchRequest:
        """`request` with the fields it did not set taken from this config (validated again,
        so a tuned window smaller than `from + size` is reported, not silently widened)."""
        given = request.model_dump(by_alias=True, exclude_unset=True)
        filled = {k: v for k, v in self.settings().items() if k not in request.model_fields_set}
        if "weights" in filled and "retrievers" not in filled and request.retrievers is not None:
            # Weights for retrievers the caller did not ask for would be refused: keep the rest.
            filled["weights"] = {
                k: v for k, v in filled["weights"].items() if k in request.retrievers
            }
        try:
            return SearchRequest.model_validate(given | filled)
        except ValidationError as e:
            field, message = first_error(e)
            where = field or "window"
            raise InvalidInput(
                f"the fusion settings do not fit this request: {message}", field=where
            ) from e


def load_fusion_config(path: Path) -> FusionConfig:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read fusion config {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON: {e}") from e
    return parse_fusion_config(raw, origin=str(path))


def parse_fusion_config(raw: Any, *, origin: str = "fusion config") -> FusionConfig:
    try:
        return FusionConfig.model_validate(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise ConfigError(f"{origin}: {field or 'config'}: {message}") from e
