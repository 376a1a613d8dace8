"""The in-process Indexer: the workers' pipeline without a queue, on LanceDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalfuse import Indexer, Settings, create_index, open_engine
from modalfuse.engines.base import LexicalQuery
from modalfuse.sample import SAMPLE_DIR

pytestmark = [pytest.mark.needs_export]


def test_add_delete_and_dead_letters(tmp_path: Path, settings: Settings, minilm_fp32: Path) -> None:
    s = Settings(data_dir=tmp_path, model_cache_dir=settings.models_dir, index="idx")
    photo = sorted((SAMPLE_DIR / "images").glob("*.jpg"))[0]
    with open_engine(s) as engine:
        create_index(engine, s, name="idx")
        with Indexer(settings=s, engine=engine, image_roots=[SAMPLE_DIR], batch_size=2) as ix:
            report = ix.add(
                [
                    {"id": "a", "title": "Red summer dress", "image": str(photo)},
                    {"id": "b", "title": "Blue denim jacket"},
                    {"id": "c", "title": "Green scarf", "year": "last year"},
                    {"id": "d", "title": "Photo elsewhere", "image": "/etc/passwd"},
                ]
            )
            assert (report.indexed, report.dead_lettered, report.retried) == (2, 2, 0)
            fields = sorted(r["field"] for r in report.dead_letter_reasons)
            assert fields == ["fields.image", "fields.year"]
            assert {d.doc_id for d in engine.dead_letters("idx")} == {"c", "d"}
            assert engine.stats("idx").documents == 2
            assert ix.delete(["b"]).deleted == 1
        # The engine passed in is the caller's: still open, and the index folded in on close.
        hits = engine.lexical("idx", LexicalQuery(text="dress jacket", fields={"title": 1.0}))
        assert [h.id for h in hits] == ["a"]
        image = engine.fetch("idx", ["a"])["a"]["image"]
        assert image == str(photo)
