"""Versioned indices behind an alias; upserts, deletes and external versions; side stores."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modalfuse.engines.base import DeadLetter, Deletion, Engine, LexicalQuery
from modalfuse.errors import ConfigError, IndexNotFound
from tests.conformance.conftest import doc, ids, products


def test_versioned_create_swap_and_drop(engine: Engine, alias: str) -> None:
    resolved = products(alias)
    assert engine.create(resolved) == f"{alias}-v1"
    assert engine.alias_target(alias) == f"{alias}-v1"
    assert engine.create(resolved) == f"{alias}-v2"
    assert engine.alias_target(alias) == f"{alias}-v1"  # a new version waits for the swap

    assert not engine.upsert(alias, [doc("a", title="old index")]).failed
    engine.refresh(alias)
    stats = engine.stats(alias)
    assert (stats.alias, stats.index, stats.documents) == (alias, f"{alias}-v1", 1)
    assert stats.vector_fields == {"text_vector": 8, "image_vector": 8}
    assert stats.versions == [f"{alias}-v1", f"{alias}-v2"]
    assert engine.schema_of(alias).vectors["text_vector"].dim == 8

    swapped = engine.swap(alias, f"{alias}-v2", keep_old=True)
    assert (swapped.previous, swapped.current, swapped.dropped) == (
        f"{alias}-v1",
        f"{alias}-v2",
        None,
    )
    assert engine.stats(alias).documents == 0  # reads follow the alias at once
    with pytest.raises(ConfigError, match=f"current index of alias '{alias}'"):
        engine.drop(f"{alias}-v2")
    assert engine.create(resolved) == f"{alias}-v3"
    assert engine.swap(alias, f"{alias}-v3", keep_old=False).dropped == f"{alias}-v2"
    assert engine.stats(alias).versions == [f"{alias}-v1", f"{alias}-v3"]
    assert engine.drop(f"{alias}-v1") == [f"{alias}-v1"]
    with pytest.raises(IndexNotFound):
        engine.swap(alias, f"{alias}-v9")
    assert engine.drop(alias) == [f"{alias}-v3"]
    assert engine.alias_target(alias) is None
    with pytest.raises(IndexNotFound):
        engine.stats(alias)


def test_upserts_deletes_and_external_versions(engine: Engine, alias: str) -> None:
    engine.create(products(alias))
    docs = [doc(str(i), version=10, title=f"item {i}", price=float(i)) for i in range(20)]
    result = engine.upsert(alias, docs)  # on OpenSearch: 3 bulk chunks of at most 7
    assert sorted(result.written, key=int) == [str(i) for i in range(20)]
    assert not result.stale and not result.failed

    # An older version never overwrites a newer one; the same version is an idempotent redo.
    stale = engine.upsert(
        alias, [doc("3", version=9, title="stale"), doc("4", version=10, title="same version")]
    )
    assert (stale.stale, stale.written) == (["3"], ["4"])
    deleted = engine.delete(
        alias,
        [Deletion(id="5", version=11), Deletion(id="6", version=2), Deletion(id="404", version=1)],
    )
    assert sorted(deleted.written) == ["404", "5"] and deleted.stale == ["6"]
    # A delete's version is remembered: a late upsert older than it cannot resurrect the doc.
    assert engine.upsert(alias, [doc("5", version=10, title="older than the delete")]).stale == [
        "5"
    ]
    assert engine.upsert(alias, [doc("7", version=12, title="newer edition")]).written == ["7"]
    engine.refresh(alias)
    assert engine.stats(alias).documents == 19
    hits = engine.lexical(alias, LexicalQuery(text="item", fields={"title": 1.0}, k=50))
    assert "5" not in ids(hits) and "3" in ids(hits) and "7" not in ids(hits)
    assert engine.lexical(alias, LexicalQuery(text="stale", fields={"title": 1.0})) == []
    assert ids(engine.lexical(alias, LexicalQuery(text="edition", fields={"title": 1.0}))) == ["7"]
    fetched = engine.fetch(alias, ["3", "7", "5", "missing"])
    assert sorted(fetched) == ["3", "7"] and fetched["7"]["title"] == "newer edition"
    assert "text_vector" not in fetched["3"] and "modalfuse_indexed_at" not in fetched["3"]


def test_dead_letters_round_trip(engine: Engine, alias: str) -> None:
    engine.create(products(alias))
    assert engine.dead_letters(alias) == []
    records = [
        DeadLetter(
            id=f"dl-{i}",
            index=alias,
            doc_id=f"doc-{i}",
            message=f'{{"id": "doc-{i}", "price": "cheap"}}',
            error_type="InvalidDocument",
            field="price",
            reason="not a number",
            attempts=1,
            time=datetime(2026, 11, 30, 12, i, tzinfo=UTC),
        )
        for i in range(3)
    ]
    engine.dead_letter(alias, records)
    found = engine.dead_letters(alias)
    assert [r.id for r in found] == ["dl-2", "dl-1", "dl-0"]  # newest first
    assert found[0] == records[2]
    assert engine.drop_dead_letters(alias, ["dl-1"]) == 1
    assert [r.id for r in engine.dead_letters(alias, limit=1)] == ["dl-2"]
    assert engine.drop_dead_letters(alias) == 2
    assert engine.dead_letters(alias) == []


def test_dropping_every_dead_letter_is_not_capped_at_one_page(
    engine: Engine, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More records than one page (a search returns 10,000 at most; 40 here, where the engine
    # pages): "drop them all" must leave none behind.
    if hasattr(engine, "dead_letter_page"):
        monkeypatch.setattr(engine, "dead_letter_page", 40)
    engine.create(products(alias))
    count = 100
    records = [
        DeadLetter(
            id=f"dl-{i}",
            index=alias,
            doc_id=f"doc-{i}",
            message="{}",
            error_type="InvalidDocument",
            field="price",
            reason="not a number",
            attempts=1,
            time=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        )
        for i in range(count)
    ]
    engine.dead_letter(alias, records)
    assert engine.drop_dead_letters(alias) == count
    assert engine.dead_letters(alias) == []


def test_stored_settings_survive_with_the_schema(engine: Engine, alias: str) -> None:
    engine.create(products(alias))
    assert engine.stored_settings(alias, "fusion") is None
    config = {"fusion": "minmax", "k": 60, "weights": {"lexical": 0.3}, "window": 50}
    rules = {"rules": [{"id": "r1", "query": "red dress", "hide": ["a"]}]}
    assert engine.store_settings(alias, "fusion", config) == f"{alias}-v1"
    assert engine.store_settings(alias, "rules", rules) == f"{alias}-v1"
    assert engine.stored_settings(alias, "fusion") == config
    assert engine.stored_settings(alias, "rules") == rules
    assert engine.stored_settings(alias, "ranking") is None
    assert engine.schema_of(alias).schema.name == alias  # the schema survived the update
    engine.store_settings(alias, "fusion", None)
    assert engine.stored_settings(alias, "fusion") is None
    assert engine.stored_settings(alias, "rules") == rules  # each kind clears on its own
