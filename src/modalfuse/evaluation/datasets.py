"""BEIR-layout evaluation sets derived from a fashion-layout product catalogue.

Documents are the catalogue's held-out 10% (the same fixed hash split `modalfuse align` keeps
out of training), so an aligned image encoder is never scored on images it trained on. Each
document is the product's picture and, unless `image_only`, its display name as the title.

Three query sets, each a qrels split (`colour_type` is also written as `test`):
- `colour_type`: "<baseColour> <articleType>", lower-cased ("navy blue shirts"; the catalogue's
  article types are already plural). Relevant: every document with that articleType and
  baseColour (grade 1). Only pairs with at least `min_relevant` documents become queries.
- `name`: a product's exact display name. Relevant: documents with that name (names repeat).
- `image`: a product's own picture (query id = its document id, which evaluation ignores as a
  hit, as BEIR does). Relevant: the *other* documents of the same articleType and baseColour.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from modalfuse.errors import InvalidDocument
from modalfuse.jsonl import read_records
from modalfuse.onnx_models.align.data import is_held_out
from modalfuse.sample import style_of

SPLITS = ("colour_type", "name", "image")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _records(catalog: Path) -> list[dict[str, Any]]:
    records = []
    for _, r in read_records(catalog):
        image = catalog.parent / str(r.get("image") or "")
        if r.get("articleType") and r.get("baseColour") and image.is_file():
            records.append(r | {"_image": image})
    return records


def fashion_beir(
    catalog: Path,
    out: Path,
    *,
    image_only: bool = False,
    held_out_only: bool = True,
    min_relevant: int = 2,
) -> dict[str, Any]:
    """Write the dataset into `out` (images copied in, so the folder stands alone)."""
    records = [r for r in _records(catalog) if not held_out_only or is_held_out(str(r["id"]))]
    if not records:
        raise InvalidDocument(f"{catalog}: no usable products (held out: {held_out_only})")
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "qrels").mkdir()
    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_name: dict[str, list[str]] = defaultdict(list)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for r in records:
            doc_id = str(r["id"])
            target = out / "images" / f"{doc_id}{r['_image'].suffix}"
            shutil.copyfile(r["_image"], target)
            name = str(r.get("productDisplayName") or "").strip()
            doc = {
                "_id": doc_id,
                "title": "" if image_only else name,
                "text": "",
                "image": f"images/{target.name}",
                # What ranking evaluates by: the variant family (sample.style_of) and colour.
                "style": style_of(name, r.get("gender"), r.get("articleType")),
                "colour": r["baseColour"],
            }
            corpus.write(json.dumps(doc) + "\n")
            by_pair[(r["baseColour"], r["articleType"])].append(doc_id)
            if name:
                by_name[name.lower()].append(doc_id)
    queries: list[dict[str, Any]] = []
    qrels: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for (colour, article), ids in sorted(by_pair.items()):
        if len(ids) < min_relevant:
            continue
        qid = f"ct-{_slug(colour)}-{_slug(article)}"
        queries.append({"_id": qid, "text": f"{colour} {article}".lower()})
        qrels["colour_type"] += [(qid, d) for d in ids]
    for r in records:
        doc_id = str(r["id"])
        name = str(r.get("productDisplayName") or "").strip()
        if name:
            qid = f"name-{doc_id}"
            queries.append({"_id": qid, "text": name})
            qrels["name"] += [(qid, d) for d in by_name[name.lower()]]
        others = [d for d in by_pair[(r["baseColour"], r["articleType"])] if d != doc_id]
        if others:
            queries.append(
                {"_id": doc_id, "text": "", "image": f"images/{doc_id}{r['_image'].suffix}"}
            )
            qrels["image"] += [(doc_id, d) for d in others]
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    for split, rows in [*qrels.items(), ("test", qrels["colour_type"])]:
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t1" for q, d in rows)]
        (out / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = {
        "documents": len(records),
        "image_only": image_only,
        "queries": {s: len({q for q, _ in rows}) for s, rows in qrels.items()},
        "source": str(catalog),
    }
    (out / "DATASET.md").write_text(
        "# Derived evaluation set\n\n"
        f"Built by `modalfuse dataset fashion` from `{catalog}`.\n\n"
        + (__doc__ or "")
        + "\n\nSource: 'Fashion Product Images (Small)' (Kaggle, paramaggarwal; Myntra catalogue "
        "images), listed as MIT.\n\n```json\n" + json.dumps(summary, indent=2) + "\n```\n",
        encoding="utf-8",
    )
    return summary
