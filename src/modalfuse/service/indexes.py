"""Create an index from a schema: a file, a bundled schema's name, or a `Schema`, with the alias
name overridden when asked, resolved against the configured encoders' dimensions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from modalfuse.engines.base import Engine
from modalfuse.mappings.schema import (
    ResolvedSchema,
    Schema,
    load_schema,
    parse_schema,
    resolve,
    with_models,
)
from modalfuse.onnx_models.registry import encoder_manifests
from modalfuse.settings import Settings


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreatedIndex:
    resolved: ResolvedSchema
    created: str | None  # the new physical index; None when the alias existed and was kept
    alias_target: str | None

    @property
    def alias(self) -> str:
        return self.resolved.name


def resolved_schema(
    settings: Settings, *, schema: Schema | str | Path | None = None, name: str | None = None
) -> ResolvedSchema:
    """The schema (default: `settings.schema_file`, else the bundled product schema) under the
    alias `name` when given, with each vector field's dimension from its encoder."""
    if not isinstance(schema, Schema):
        schema = load_schema(schema if schema is not None else settings.schema_file)
    if name is not None and name != schema.name:
        schema = parse_schema(schema.model_dump() | {"name": name}, origin="index name")
    manifests = encoder_manifests(settings)
    schema = with_models(schema, {role: m.name for role, m in manifests.items()})
    return resolve(schema, {role: m.dim for role, m in manifests.items()})


def create_index(
    engine: Engine,
    settings: Settings,
    *,
    schema: Schema | str | Path | None = None,
    name: str | None = None,
    replace: bool = False,
    if_missing: bool = False,
) -> CreatedIndex:
    """Create the next version of the index. `replace` drops the alias and its versions first
    (the demo starts from scratch); `if_missing` keeps an alias that already has a target."""
    resolved = resolved_schema(settings, schema=schema, name=name)
    target = engine.alias_target(resolved.name)
    if target is not None and replace:
        engine.drop(resolved.name)
        target = None
    created = None if target is not None and if_missing else engine.create(resolved)
    return CreatedIndex(
        resolved=resolved, created=created, alias_target=engine.alias_target(resolved.name)
    )
