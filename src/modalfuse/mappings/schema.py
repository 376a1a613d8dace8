"""The index schema: one declarative definition of an index's fields, shared by every engine.

A schema is written in YAML (or built in Python) and loaded into these pydantic models. Vector
fields name an encoder *role* (`text` or `image`) rather than a dimension: the dimension comes
from that encoder's manifest when the schema is resolved (`resolve`), so a schema never drifts
from the model that fills it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modalfuse.errors import EncoderMismatch, SchemaError

# `chinese` is analysed in Python (mappings/analysis.py), identically for both engines.
Analyzer = Literal["standard", "english", "cjk", "chinese"]
Similarity = Literal["dot", "cosine"]
EncoderRole = Literal["text", "image"]
# What an index stores beside its schema: its default fusion, its default ranking and its
# merchandising rules (each a JSON object, kept in the index itself).
StoredKind = Literal["fusion", "ranking", "rules"]
ENCODER_ROLES: tuple[str, ...] = ("text", "image")
DEFAULT_SCHEMA = Path(__file__).with_name("products.yaml")

# Engine-side bookkeeping columns; user fields may not take these names.
RESERVED = frozenset(
    {
        "id",
        "_id",
        "_version",
        "_deleted",
        "_updated_at",
        "_score",
        "_distance",
        "modalfuse_indexed_at",
    }
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,100}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _FieldBase(_Model):
    name: str


class TextField(_FieldBase):
    """Full text, scored with BM25."""

    type: Literal["text"] = "text"
    analyzer: Analyzer = "standard"
    boost: float = Field(default=1.0, gt=0, description="Weight of this field in lexical search.")


class KeywordField(_FieldBase):
    """Exact values for filters and facets; `multi` allows a list of values per document."""

    type: Literal["keyword"] = "keyword"
    multi: bool = False


_SIGNAL = "A ranking signal: boosts after fusion may read it (popularity, rating, recency)."


class NumberField(_FieldBase):
    type: Literal["number"] = "number"
    number_type: Literal["float", "double", "integer", "long"] = "float"
    signal: bool = Field(default=False, description=_SIGNAL)


class DateField(_FieldBase):
    type: Literal["date"] = "date"
    signal: bool = Field(default=False, description=_SIGNAL)


class ImageField(_FieldBase):
    """Where a document's image comes from (path, URL or base64); stored, not searched."""

    type: Literal["image"] = "image"


class Hnsw(_Model):
    """HNSW graph parameters (OpenSearch `method.parameters`, LanceDB IVF-HNSW)."""

    m: int = Field(default=16, ge=2, le=100)
    ef_construction: int = Field(default=128, ge=2, le=4096)
    ef_search: int = Field(default=100, ge=1, le=10_000)
    engine: Literal["faiss", "lucene"] = "faiss"
    # OpenSearch quantises in the index: lucene to 7-bit integers, faiss to fp16. LanceDB's ANN
    # index is always scalar-quantised (IVF_HNSW_SQ), so this does not change it.
    quantization: Literal["none", "sq"] = "none"


class VectorField(_FieldBase):
    type: Literal["vector"] = "vector"
    encoder: str = Field(description="Encoder role that fills this field: text or image.")
    sources: list[str] = Field(min_length=1, description="Fields whose content is embedded.")
    similarity: Similarity = Field(
        default="dot",
        description="dot for L2-normalised vectors (the encoders' output), or cosine.",
    )
    optional: bool = Field(
        default=False,
        description="Leave the field out (with a notice) when its encoder is not configured.",
    )
    hnsw: Hnsw = Hnsw()
    model: str | None = Field(
        default=None,
        description="The encoder (its manifest name) whose vectors fill this field. Recorded "
        "when the index is created; a process with another encoder is refused.",
    )


_F = TypeVar("_F", bound="_FieldBase")

FieldSpec = Annotated[
    TextField | KeywordField | NumberField | DateField | ImageField | VectorField,
    Field(discriminator="type"),
]


class IndexOptions(_Model):
    shards: int = Field(default=1, ge=1, le=1024)
    replicas: int = Field(default=0, ge=0, le=16)
    refresh_interval: str | None = Field(default=None, pattern=r"^(-1|\d+(ms|s|m))$")
    # How replicas follow their primary on OpenSearch: by re-indexing every document
    # (`document`, the server's default) or by copying the primary's segments (`segment`: the
    # replica builds no HNSW graphs of its own; docs/opensearch.md measures it).
    replication: Literal["document", "segment"] = "document"


class Schema(_Model):
    name: str = Field(description="Alias name; physical indices are <name>-v<N>.")
    fields: list[FieldSpec] = Field(min_length=1)
    index: IndexOptions = IndexOptions()

    @model_validator(mode="after")
    def _check(self) -> Schema:
        if not _INDEX_NAME.match(self.name):
            raise ValueError(f"index name {self.name!r} must match {_INDEX_NAME.pattern}")
        seen: dict[str, Any] = {}
        for i, f in enumerate(self.fields):
            where = f"fields[{i}] ({f.name})"
            if not _NAME.match(f.name):
                raise _field_error(where, f"name must match {_NAME.pattern}")
            if f.name in RESERVED:
                raise _field_error(where, f"{f.name!r} is reserved")
            if f.name in seen:
                raise _field_error(where, f"duplicate field name {f.name!r}")
            seen[f.name] = f
            if f.name.endswith("__tokens"):
                raise _field_error(where, "names ending in '__tokens' are kept for analysed text")
        if not any(isinstance(f, TextField | VectorField) for f in self.fields):
            raise ValueError("a schema needs at least one text or vector field to search")
        analyzed = {f.analyzer == "chinese" for f in self.text_fields}
        if len(analyzed) > 1:
            raise ValueError(
                "the text fields are searched with one query text: use the chinese analyzer on "
                "every text field or on none"
            )
        for f in self.fields:
            if isinstance(f, VectorField):
                _check_vector(f, seen)
        return self

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"no such field in schema {self.name!r}", field=name)

    def of_type(self, kind: type[_F]) -> list[_F]:
        return [f for f in self.fields if isinstance(f, kind)]

    @property
    def text_fields(self) -> list[TextField]:
        return self.of_type(TextField)

    @property
    def signals(self) -> dict[str, NumberField | DateField]:
        """The fields declared ranking signals, by name."""
        return {
            f.name: f for f in self.fields if isinstance(f, NumberField | DateField) and f.signal
        }


def _field_error(where: str, reason: str) -> ValueError:
    return ValueError(f"{where}: {reason}")


def _check_vector(f: VectorField, fields: Mapping[str, Any]) -> None:
    where = f"field {f.name!r}"
    if f.encoder not in ENCODER_ROLES:
        raise _field_error(
            where, f"unknown encoder {f.encoder!r}; known: {', '.join(ENCODER_ROLES)}"
        )
    wanted = TextField if f.encoder == "text" else ImageField
    for source in f.sources:
        if source not in fields:
            raise _field_error(where, f"source {source!r} is not a field of this schema")
        if not isinstance(fields[source], wanted):
            raise _field_error(
                where,
                f"source {source!r} is a {fields[source].type} field; the {f.encoder} encoder "
                f"embeds {wanted.model_fields['type'].default} fields",
            )


_WHERE = re.compile(r"^(?P<where>fields\[\d+\] \([^)]*\)|field '[^']*'): (?P<reason>.*)$", re.S)


def parse_schema(raw: Mapping[str, Any], *, origin: str = "schema") -> Schema:
    """Validate a schema mapping; errors name the offending field (`fields[3] (price): ...`)."""
    try:
        return Schema.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in first["loc"])
        names = _field_names(raw)
        if first["loc"][:1] == ("fields",) and len(first["loc"]) > 1:
            idx = first["loc"][1]
            if isinstance(idx, int) and idx < len(names):
                loc = f"fields[{idx}] ({names[idx]})" + "".join(
                    f".{p}" for p in first["loc"][2:] if not _is_variant_tag(p)
                )
        elif not loc and (m := _WHERE.match(message)):
            # Cross-field checks (duplicates, vector sources) name the field in the message.
            loc, message = m["where"], m["reason"]
        raise SchemaError(f"{message} (in {origin})", field=loc or None) from e


def _field_names(raw: Mapping[str, Any]) -> list[str]:
    fields = raw.get("fields")
    if not isinstance(fields, list):
        return []
    return [str(f.get("name", "?")) if isinstance(f, Mapping) else "?" for f in fields]


def _is_variant_tag(part: object) -> bool:
    return part in {"text", "keyword", "number", "date", "image", "vector"}


def bundled_schemas() -> dict[str, Path]:
    """The schemas shipped with modalfuse, by name (`products`, ...)."""
    return {p.stem: p for p in sorted(DEFAULT_SCHEMA.parent.glob("*.yaml"))}


def schema_path(value: str | Path | None) -> Path:
    """A schema file from a path or a bundled schema's name; `None` is the product schema."""
    if value is None:
        return DEFAULT_SCHEMA
    bundled = bundled_schemas()
    if isinstance(value, str) and value in bundled:
        return bundled[value]
    path = Path(value)
    if not path.is_file() and isinstance(value, str) and "/" not in value and "." not in value:
        raise SchemaError(
            f"no schema file {value!r} and no bundled schema of that name "
            f"(bundled: {', '.join(bundled)})",
            field="schema",
        )
    return path


def load_schema(path: str | Path | None = None) -> Schema:
    """Read a YAML schema file, or a bundled one by name; `None` reads the product schema."""
    path = schema_path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SchemaError(f"cannot read schema file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise SchemaError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, Mapping):
        raise SchemaError(f"{path}: expected a mapping at the top level")
    return parse_schema(raw, origin=str(path))


@dataclasses.dataclass(frozen=True)
class ResolvedVector:
    field: VectorField
    dim: int


@dataclasses.dataclass(frozen=True)
class ResolvedSchema:
    """A schema whose vector fields have dimensions, ready for an engine to create an index.

    `skipped` lists optional vector fields left out because their encoder is not configured.
    """

    schema: Schema
    vectors: dict[str, ResolvedVector]
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.schema.name

    def stored_fields(self) -> list[FieldSpec]:
        """Every non-vector field, plus the vector fields that were resolved."""
        return [
            f
            for f in self.schema.fields
            if not isinstance(f, VectorField) or f.name in self.vectors
        ]


def with_models(schema: Schema, models: Mapping[str, str]) -> Schema:
    """Each vector field with the encoder that fills it (`models`: role -> encoder name). A
    field that names another encoder than the one configured for its role is refused."""
    fields: list[FieldSpec] = []
    for f in schema.fields:
        if isinstance(f, VectorField) and f.encoder in models:
            configured = models[f.encoder]
            if f.model is not None and f.model != configured:
                raise SchemaError(
                    f"the schema fills it with {f.model!r}, but the configured {f.encoder} "
                    f"encoder is {configured!r} (set MODALFUSE_{f.encoder.upper()}_ENCODER)",
                    field=f.name,
                )
            f = f.model_copy(update={"model": configured})
        fields.append(f)
    return schema.model_copy(update={"fields": fields})


def check_model(f: VectorField, name: str) -> None:
    """Refuse to search or fill an index's vector field with another encoder than its own."""
    if f.model is not None and f.model != name:
        raise EncoderMismatch(
            f"index field {f.name!r} holds {f.model!r} vectors; this process's {f.encoder} "
            f"encoder is {name!r} (set MODALFUSE_{f.encoder.upper()}_ENCODER={f.model})"
        )


def resolve(schema: Schema, dims: Mapping[str, int]) -> ResolvedSchema:
    """Attach each vector field's dimension from its encoder (`dims`: role -> dimension)."""
    vectors: dict[str, ResolvedVector] = {}
    skipped: dict[str, str] = {}
    for f in schema.of_type(VectorField):
        if f.encoder in dims:
            dim = dims[f.encoder]
            if not 1 <= dim <= 16_000:
                raise SchemaError(f"encoder dimension {dim} is out of range", field=f.name)
            vectors[f.name] = ResolvedVector(field=f, dim=dim)
        elif f.optional:
            skipped[f.name] = f"no {f.encoder} encoder is configured"
        else:
            hint = "MODALFUSE_IMAGE_ENCODER" if f.encoder == "image" else "MODALFUSE_TEXT_ENCODER"
            raise SchemaError(
                f"the {f.encoder} encoder is not configured (set {hint}, or mark the field "
                "optional)",
                field=f.name,
            )
    return ResolvedSchema(schema=schema, vectors=vectors, skipped=skipped)


def with_knn_engine(resolved: ResolvedSchema, engine: str | None) -> ResolvedSchema:
    """The schema with every vector field's HNSW engine set to `engine` (None: unchanged)."""
    if engine is None:
        return resolved

    def swap(f: FieldSpec) -> FieldSpec:
        if isinstance(f, VectorField) and f.hnsw.engine != engine:
            return f.model_copy(update={"hnsw": f.hnsw.model_copy(update={"engine": engine})})
        return f

    schema = resolved.schema.model_copy(
        update={"fields": [swap(f) for f in resolved.schema.fields]}
    )
    vectors = {
        name: ResolvedVector(field=swap(v.field), dim=v.dim)  # type: ignore[arg-type]
        for name, v in resolved.vectors.items()
    }
    return dataclasses.replace(resolved, schema=schema, vectors=vectors)
