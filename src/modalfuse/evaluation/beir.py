"""Reading a BEIR-layout dataset: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

Corpus records carry `_id`, `title`, `text` and optionally `image` (a path relative to the
dataset folder, or a URL); title and text may both be empty (image-only documents). Queries carry
`_id`, `text` and optionally `image`. Qrels files are `query-id, corpus-id, score` with or without
a header line. Graded judgments are kept as they are; 0 and below mean "not relevant".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modalfuse.errors import InvalidDocument
from modalfuse.jsonl import read_records


@dataclasses.dataclass(frozen=True, kw_only=True)
class Query:
    id: str
    text: str
    image: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dataset:
    root: Path
    name: str
    split: str
    queries: dict[str, Query]  # only the judged queries of the split
    qrels: dict[str, dict[str, float]]
    skipped_queries: int  # judged in qrels but absent from queries.jsonl, or no positives

    @property
    def corpus_file(self) -> Path:
        return self.root / "corpus.jsonl"


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    return read_records(path, required="_id")


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """`query-id <tab> corpus-id <tab> score`, header optional (a first line whose score is not
    a number is taken for one). Several judgments of one pair keep the last."""
    qrels: dict[str, dict[str, float]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) == 4:  # TREC style: qid, iteration, docid, grade
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise InvalidDocument(
                f"{path}:{number}: expected 3 columns (query-id, corpus-id, score)", field="qrels"
            )
        try:
            grade = float(parts[2])
        except ValueError as e:
            if number == 1:
                continue  # the header
            raise InvalidDocument(
                f"{path}:{number}: score {parts[2]!r} is not a number", field="qrels"
            ) from e
        qrels.setdefault(parts[0].strip(), {})[parts[1].strip()] = grade
    return qrels


def load(root: Path, split: str = "test") -> Dataset:
    root = root.expanduser().resolve()
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (root / required).is_file():
            raise InvalidDocument(f"{root}: not a BEIR-layout dataset ({required} missing)")
    qrels_file = root / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise InvalidDocument(
            f"{root}: no qrels for split {split!r} (available: {', '.join(available) or 'none'})",
            field="split",
        )
    qrels = read_qrels(qrels_file)
    queries: dict[str, Query] = {}
    for _, record in _jsonl(root / "queries.jsonl"):
        qid = str(record["_id"])
        if qid in qrels:
            image = record.get("image")
            queries[qid] = Query(
                id=qid, text=str(record.get("text") or ""), image=str(image) if image else None
            )
    judged = {
        qid: rel
        for qid, rel in qrels.items()
        if qid in queries and any(g > 0 for g in rel.values())
    }
    return Dataset(
        root=root,
        name=root.name,
        split=split,
        queries={qid: queries[qid] for qid in judged},
        qrels=judged,
        skipped_queries=len(qrels) - len(judged),
    )


# Keyword attributes a corpus record may carry beyond BEIR's fields (the derived fashion sets
# do): what ranking after fusion collapses and diversifies by, and evaluation counts.
ATTRIBUTES = ("style", "colour")


def attributes(root: Path) -> dict[str, dict[str, str]]:
    """Per attribute, document id -> value, for the documents that have one."""
    out: dict[str, dict[str, str]] = {name: {} for name in ATTRIBUTES}
    for doc in corpus(root):
        for name in ATTRIBUTES:
            if name in doc:
                out[name][doc["id"]] = doc[name]
    return {name: values for name, values in out.items() if values}


def corpus(root: Path) -> Iterator[dict[str, Any]]:
    """Corpus records as bare documents of the evaluation schema (`title`, `description`,
    `image`), with relative image paths made absolute against the dataset folder."""
    for _, record in _jsonl(root / "corpus.jsonl"):
        doc: dict[str, Any] = {"id": str(record["_id"])}
        if str(record.get("title") or "").strip():
            doc["title"] = str(record["title"])
        if str(record.get("text") or "").strip():
            doc["description"] = str(record["text"])
        for name in ATTRIBUTES:
            if isinstance(record.get(name), str) and record[name].strip():
                doc[name] = record[name]
        image = record.get("image")
        if image:
            image = str(image)
            is_url = image.startswith(("http://", "https://", "data:"))
            doc["image"] = image if is_url or Path(image).is_absolute() else str(root / image)
        yield doc


def fingerprint(root: Path) -> str:
    """What the cached index depends on in the dataset: the corpus file's bytes and, for local
    images, their sizes and modification times (hashing every image would cost a full read)."""
    digest = hashlib.sha256()
    with (root / "corpus.jsonl").open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    for doc in corpus(root):
        image = doc.get("image")
        if image and not image.startswith(("http://", "https://", "data:")):
            try:
                st = Path(image).stat()
                digest.update(f"{image}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{image}\0missing\n".encode())
    return digest.hexdigest()


def language_of(root: Path) -> str | None:
    """The language `dataset.json` beside the corpus states (`"zh"`, `"en"`), if any."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("language")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise InvalidDocument(f"{path}: unreadable: {e}", field="dataset.json") from e
    return str(value) if value else None
