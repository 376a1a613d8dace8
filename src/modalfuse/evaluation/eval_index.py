"""The index `modalfuse eval` searches: built from a BEIR-layout corpus through the normal
ingest path (producer -> broker -> worker -> encoders -> engine), and reused while the dataset
and the encoders are unchanged.

The alias name carries a fingerprint of the corpus, the encoders and the schema, so a changed
input gets a new index and an unchanged one is found again. A build that was interrupted
resumes: only documents not yet in the index are published again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modalfuse.engines import open_engine
from modalfuse.errors import ConfigError, ModalfuseError
from modalfuse.evaluation import beir
from modalfuse.images.sources import linked_image_folders
from modalfuse.mappings import analysis
from modalfuse.mappings.schema import Schema, parse_schema
from modalfuse.onnx_models import registry
from modalfuse.service.indexes import create_index
from modalfuse.service.ingest import IngestReport, WorkerSpec, ingest_and_wait
from modalfuse.settings import Settings

# Figures measure the retrievers, not the approximation: an HNSW search (OpenSearch; LanceDB
# past its ANN threshold) explores 4x the 100 candidates Recall@100 and fusion read.
EVAL_HNSW = {"ef_search": 400}
# BEIR's documents have a title and a body; the body is `description` in our schema. BEIR's
# BM25 reference (Elasticsearch, english analyzer) weighs both fields equally.
EVAL_FIELDS: list[dict[str, Any]] = [
    {"name": "title", "type": "text", "analyzer": "english"},
    {"name": "description", "type": "text", "analyzer": "english"},
    {"name": "image", "type": "image"},
    # Carried when the corpus has them (beir.ATTRIBUTES): the variant family and the colour.
    {"name": "style", "type": "keyword"},
    {"name": "colour", "type": "keyword"},
    {
        "name": "text_vector",
        "type": "vector",
        "encoder": "text",
        "sources": ["title", "description"],
        "hnsw": EVAL_HNSW,
    },
    {
        "name": "image_vector",
        "type": "vector",
        "encoder": "image",
        "sources": ["image"],
        "optional": True,
        "hnsw": EVAL_HNSW,
    },
]
FETCH_CHUNK = 500


# The analyzer of the title and description, by the dataset's language (dataset.json).
ANALYZERS = {"en": "english", "zh": "chinese"}
LANGUAGES = tuple(ANALYZERS)


# The text encoder a language gets when the settings leave the default.
TEXT_ENCODERS = {"zh": "bge-small-zh-v1.5"}


def for_language(
    root: Path, settings: Settings, language: str | None = None
) -> tuple[Settings, str]:
    """The dataset's language (given, else its dataset.json's, else English) and the settings
    to evaluate it with: a Chinese set gets the Chinese encoder unless one was chosen."""
    chosen = language or beir.language_of(root) or "en"
    if chosen not in ANALYZERS:
        raise ConfigError(f"no analyzer for language {chosen!r}; known: {', '.join(LANGUAGES)}")
    if settings.text_encoder == "default" and chosen in TEXT_ENCODERS:
        settings = settings.model_copy(update={"text_encoder": TEXT_ENCODERS[chosen]})
    return settings, chosen


def eval_fields(*, images: bool, language: str = "en") -> list[dict[str, Any]]:
    """The evaluation schema's fields; without images in the corpus, no image field or vector
    (so `hybrid` never runs an image retriever that can find nothing)."""
    analyzer = ANALYZERS[language]
    fields = [f | {"analyzer": analyzer} if f["type"] == "text" else f for f in EVAL_FIELDS]
    if images:
        return fields
    return [f for f in fields if f["name"] not in ("image", "image_vector")]


def eval_schema(name: str, *, images: bool = True, language: str = "en") -> Schema:
    return parse_schema(
        {"name": name, "fields": eval_fields(images=images, language=language)},
        origin="eval schema",
    )


def index_name(dataset: str, key: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", dataset.lower()).strip("-_")[:40] or "dataset"
    return f"beir-{slug}-{key[:12]}"


def has_images(root: Path) -> bool:
    return any(doc.get("image") for doc in beir.corpus(root))


def build_key(root: Path, settings: Settings, *, images: bool, language: str = "en") -> str:
    """Corpus fingerprint + each configured encoder's cache key + the schema."""
    fields = eval_fields(images=images, language=language)
    parts = [beir.fingerprint(root), json.dumps(fields, sort_keys=True)]
    if language != "en":
        parts.append(f"analysis:{analysis.VERSION}")
    for role, manifest in sorted(registry.encoder_manifests(settings).items()):
        if role == "text" or images:
            parts.append(f"{role}:{manifest.cache_key}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _marker(settings: Settings, alias: str) -> Path:
    return settings.data_dir / "eval" / f"{alias}.done.json"


def ensure_index(
    root: Path,
    settings: Settings,
    *,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    worker_log: Path | None = None,
    worker_processes: int | None = None,
    language: str = "en",
) -> dict[str, Any]:
    """The alias of an index holding the dataset's corpus; built, resumed or reused.

    Returns `{"index", "reused", "documents", "in_index", "published", "indexed",
    "dead_lettered", "dead_letter_reasons"}`.
    """
    root = root.expanduser().resolve()
    images = has_images(root)
    alias = index_name(root.name, build_key(root, settings, images=images, language=language))
    engine = open_engine(settings)
    marker = _marker(settings, alias)
    try:
        exists = engine.alias_target(alias) is not None
        if exists and marker.is_file():
            done: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
            # Only a complete index is reused; one that lost documents is completed (the
            # missing ones are published again, and fail again if their problem remains).
            if done.get("in_index") == done.get("documents") and not done.get("dead_lettered"):
                return done | {"index": alias, "reused": True, "published": 0}
            marker.unlink()
        if exists:
            engine.drop_dead_letters(alias)  # what this build loses is reported afresh
        if not exists:
            schema = eval_schema(alias, images=images, language=language)
            create_index(engine, settings, schema=schema)
        docs = list(beir.corpus(root))
        present = _present(engine, alias, [d["id"] for d in docs])
    finally:
        engine.close()
    todo = [d for d in docs if d["id"] not in present]
    folder = settings.data_dir / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{alias}.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in todo), encoding="utf-8")
    if on_start is not None:
        on_start(len(todo))
    # The corpus folder is where relative image paths point: an allowed root for this build, and
    # the real folders of images linked into it (an `images/` symlink to a shared store).
    linked = linked_image_folders([d["image"] for d in todo if d.get("image")], root)
    report = IngestReport(index=alias, published=0, batches=0)
    if todo:
        report = ingest_and_wait(
            path,
            settings,
            index=alias,
            worker=WorkerSpec(
                log=worker_log or folder / "worker.log", concurrency=worker_processes
            ),
            image_roots=[root, *sorted(linked)],
            on_batch=on_batch,
        )
    with open_engine(settings) as engine:
        engine.refresh(alias)
        count = engine.stats(alias).documents
    lost = report.dead_lettered
    summary = {
        "documents": len(docs),
        "in_index": count,
        "dead_lettered": lost,
        "dead_letter_reasons": report.dead_letter_reasons,
        "retried": report.retried,
        "commit_retries": report.commit_retries,
    }
    marker.write_text(json.dumps(summary), encoding="utf-8")
    path.unlink(missing_ok=True)
    return summary | {
        "index": alias,
        "reused": False,
        "published": len(todo),
        "indexed": report.indexed,
    }


def _present(engine: Any, alias: str, ids: list[str]) -> set[str]:
    """Ids already in the index (a resumed build skips them)."""
    present: set[str] = set()
    for start in range(0, len(ids), FETCH_CHUNK):
        try:
            present |= set(engine.fetch(alias, ids[start : start + FETCH_CHUNK]))
        except ModalfuseError:
            return present
    return present
