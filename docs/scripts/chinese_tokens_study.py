"""How docs/chinese.md chose the chinese analyzer's tokens: an independent BM25 (k1 1.2, b 0.75)
over a BEIR-layout Chinese set's dev queries, for four tokenisations. Needs jieba for two rows:

    pip install jieba==0.42.1
    .venv/bin/python docs/scripts/chinese_tokens_study.py ../shared/data/taobao-cosmetics
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import jieba  # type: ignore[import-not-found]

from modalfuse.evaluation import beir, metrics
from modalfuse.mappings import analysis

RUNS = re.compile(f"([{analysis._CJK}]+)|([^\\W_{analysis._CJK}]+)")
MODES = ("bigram", "uni+bi", "jieba", "jieba+bi")


def tokens(text: str, mode: str) -> list[str]:
    out: list[str] = []
    for match in RUNS.finditer(unicodedata.normalize("NFKC", text).lower()):
        cjk, word = match.groups()
        if word is not None:
            out.append(word)
            continue
        if mode in ("bigram", "uni+bi", "jieba+bi"):
            out += [cjk] if len(cjk) == 1 else [cjk[i : i + 2] for i in range(len(cjk) - 1)]
        if mode == "uni+bi" and len(cjk) > 1:
            out += list(cjk)
        if mode in ("jieba", "jieba+bi"):
            out += [w for w in jieba.cut_for_search(cjk) if w.strip()]
    return out


def bm25_ndcg(root: Path, mode: str, k1: float = 1.2, b: float = 0.75) -> float:
    data = beir.load(root, "dev")
    docs = list(beir.corpus(root))
    counts = [
        Counter(tokens(f"{d.get('title') or ''} {d.get('description') or ''}", mode)) for d in docs
    ]
    lengths = [sum(c.values()) for c in counts]
    df: Counter[str] = Counter(t for c in counts for t in c)
    postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, c in enumerate(counts):
        for term, n in c.items():
            postings[term].append((i, n))
    n_docs, mean = len(docs), sum(lengths) / len(docs)
    scores = []
    for qid, query in data.queries.items():
        acc: dict[int, float] = defaultdict(float)
        for term in set(tokens(query.text, mode)):
            idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
            for i, n in postings.get(term, []):
                acc[i] += idf * n * (k1 + 1) / (n + k1 * (1 - b + b * lengths[i] / mean))
        ranked = [docs[i]["id"] for i, _ in sorted(acc.items(), key=lambda x: -x[1])[:100]]
        scores.append(metrics.ndcg_at_k(ranked, data.qrels.get(qid, {}), 10))
    return sum(scores) / len(scores)


if __name__ == "__main__":
    jieba.setLogLevel(60)
    for arg in sys.argv[1:]:
        for mode in MODES:
            print(Path(arg).name, mode, round(bm25_ndcg(Path(arg), mode), 4), flush=True)
