"""The bundled sample catalogue (fashion products), converted to the default product schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modalfuse import jsonl

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
_GENDER_WORD = re.compile(r"^(men|mens|men's|women|womens|women's|boys|girls|unisex|kids)$", re.I)
# Every word of the catalogue's `baseColour` values (../shared/data/fashion, all 11,979 rows):
# what a colour variant changes in a product's name.
_COLOURS = """beige black blue bronze brown burgundy charcoal coffee copper cream fluorescent gold
green grey khaki lavender lime magenta maroon mauve melange metallic multi mushroom mustard navy
nude off olive orange peach pink purple red rose rust sea silver skin steel tan taupe teal
turquoise white yellow"""
COLOUR_WORDS = frozenset(_COLOURS.split())
_WORD = re.compile(r"[a-z0-9]+")


def brand_of(name: str) -> str | None:
    """The words before the gender word: 'United Colors of Benetton Men Blue Shirt' -> the brand.

    The catalogue has no brand column; its display names lead with the brand. Names without a
    gender word give their first word.
    """
    words = name.split()
    for i, w in enumerate(words):
        if _GENDER_WORD.match(w):
            return " ".join(words[:i]) or None
    return words[0] if words else None


def style_of(name: str, gender: str | None, article_type: str | None) -> str | None:
    """The variant family of a product: brand, gender, article type and the name's words
    without colour words, as one slug. 'Puma Men Black Polo T-shirt' and 'Puma Men White Polo
    T-shirt' share `puma-men-tshirts-polo-t-shirt`; in the bundled 2,000 products, 632 share a
    style with another (237 styles of two or more)."""
    brand = brand_of(name) or ""
    skip = (
        COLOUR_WORDS
        | set(_WORD.findall(brand.lower()))
        | set(_WORD.findall((gender or "").lower()))
    )
    rest = [w for w in _WORD.findall(name.lower()) if w not in skip and not _GENDER_WORD.match(w)]
    parts = [*_WORD.findall(brand.lower()), *_WORD.findall((gender or "").lower())]
    parts += [*_WORD.findall((article_type or "").lower()), *rest]
    return "-".join(parts) or None


def to_product(record: dict[str, Any]) -> dict[str, Any]:
    """One fashion record as default-schema fields (`image` stays relative to the catalogue)."""
    name = str(record.get("productDisplayName") or "").strip()
    tags = [
        str(record[k])
        for k in ("masterCategory", "subCategory", "season", "usage", "year")
        if record.get(k)
    ]
    fields: dict[str, Any] = {
        "title": name,
        "category": record.get("articleType") or None,
        "brand": brand_of(name),
        "tags": tags,
        "gender": record.get("gender") or None,
        "colour": record.get("baseColour") or None,
        "season": record.get("season") or None,
        "usage": record.get("usage") or None,
        "year": int(record["year"]) if str(record.get("year") or "").isdigit() else None,
        "style": style_of(name, record.get("gender"), record.get("articleType")),
        "image": record.get("image") or None,
    }
    return {k: v for k, v in fields.items() if v not in (None, "", [])}


def load_catalogue(directory: Path = SAMPLE_DIR) -> list[tuple[str, dict[str, Any]]]:
    """`(id, fields)` for every product in a fashion-layout catalogue folder."""
    return [(str(r["id"]), to_product(r)) for r in jsonl.records(directory / "products.jsonl")]


def write_sample_jsonl(path: Path, directory: Path = SAMPLE_DIR) -> int:
    """The catalogue as bare default-schema documents (absolute image paths), one per line,
    ready for `modalfuse ingest`; returns how many."""
    catalogue = load_catalogue(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc_id, fields in catalogue:
            if "image" in fields:
                fields = fields | {"image": str(directory / fields["image"])}
            f.write(json.dumps({"id": doc_id, **fields}) + "\n")
    return len(catalogue)
