"""Baselines for the aligned image encoder's figures, on the same held-out image-only set and
the same query splits as `modalfuse eval` (a dataset built by `modalfuse dataset fashion
--image-only`):

- random: documents in a random order (mean of several seeded shuffles);
- colour histogram: each image as a 4x4x4 RGB histogram of its non-background pixels (the
  catalogue shoots products on white). An image query ranks by histogram similarity; a text
  query ranks by similarity to the mean histogram of the *training* images whose baseColour the
  query names (longest colour name found in the text; none found: random). It knows colour and
  nothing else, which is what a colour-only shortcut would score.

"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from modalfuse.evaluation import beir, metrics
from modalfuse.jsonl import records
from modalfuse.onnx_models.align.data import is_held_out

BINS = 4
WHITE = 235  # pixels with every channel above this are background


def histogram(path: Path) -> NDArray[np.float64]:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64).reshape(-1, 3)
    keep = rgb[(rgb < WHITE).any(axis=1)]
    if len(keep) == 0:
        keep = rgb
    idx = (keep * BINS // 256) @ np.array([BINS * BINS, BINS, 1])
    hist = np.bincount(idx, minlength=BINS**3).astype(np.float64)
    return hist / np.linalg.norm(hist)


def colour_prototypes(catalog: Path) -> dict[str, NDArray[np.float64]]:
    """Mean histogram per baseColour over the training (not held-out) products."""
    sums: dict[str, list[NDArray[np.float64]]] = defaultdict(list)
    for r in records(catalog):
        image = catalog.parent / str(r.get("image") or "")
        if r.get("baseColour") and image.is_file() and not is_held_out(str(r["id"])):
            sums[str(r["baseColour"]).lower()].append(histogram(image))
    return {c: np.mean(hs, axis=0) for c, hs in sums.items()}


def run(dataset: Path, catalog: Path, *, k: int = 10, seeds: int = 5) -> dict[str, Any]:
    corpus = list(beir.corpus(dataset))
    ids = [d["id"] for d in corpus]
    hists = np.stack([histogram(Path(d["image"])) for d in corpus])
    protos = colour_prototypes(catalog)
    colours = sorted(protos, key=len, reverse=True)
    out: dict[str, Any] = {"documents": len(ids)}
    for split in ("colour_type", "name", "image"):
        data = beir.load(dataset, split)
        rows: dict[str, list[dict[str, float]]] = {"random": [], "colour_histogram": []}
        for qid, query in data.queries.items():
            rel = data.qrels[qid]
            for seed in range(seeds):
                order = ids[:]
                random.Random(f"{seed}:{qid}").shuffle(order)
                ranked = [d for d in order if d != qid]
                rows["random"].append(metrics.evaluate_query(ranked, rel, k=k))
            target: NDArray[np.float64] | None
            if query.image:
                target = histogram(dataset / query.image)
            else:
                text = query.text.lower()
                colour = next((c for c in colours if c in text), None)
                target = protos[colour] if colour else None
            if target is None:
                order = ids[:]
                random.Random(qid).shuffle(order)
            else:
                scores = hists @ target
                order = [ids[i] for i in np.argsort(-scores, kind="stable")]
            ranked = [d for d in order if d != qid]
            rows["colour_histogram"].append(metrics.evaluate_query(ranked, rel, k=k))
        out[split] = {
            name: {key: round(v, 4) for key, v in metrics.mean_figures(r).items()}
            | {"queries": len(data.queries)}
            for name, r in rows.items()
        }
    return out
