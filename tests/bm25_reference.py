"""An independent BM25 (Lucene's formula, as tantivy and OpenSearch use it) over the same
tokenisation as the `english` analyzer, to check the engines' lexical ranking against.

Tokenisation: split on characters that are not alphanumeric, lower-case, fold accents to ASCII,
drop Lucene's English stop words, Snowball (Porter2) English stemming.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

import snowballstemmer

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)
_WORD = re.compile(r"[^\W_]+")
_stemmer = snowballstemmer.stemmer("english")


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    words = [fold(w.lower()) for w in _WORD.findall(text)]
    stemmed: list[str] = _stemmer.stemWords([w for w in words if w and w not in STOP_WORDS])
    return stemmed


class BM25:
    def __init__(self, docs: Mapping[str, str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf: dict[str, Counter[str]] = {d: Counter(tokens(t)) for d, t in docs.items()}
        self.length = {d: sum(c.values()) for d, c in self.tf.items()}
        self.avg = sum(self.length.values()) / max(len(self.length), 1)
        df: Counter[str] = Counter()
        for counts in self.tf.values():
            df.update(counts.keys())
        n = len(self.tf)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.postings: dict[str, list[str]] = {}
        for d, counts in self.tf.items():
            for t in counts:
                self.postings.setdefault(t, []).append(d)

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        scores: dict[str, float] = {}
        for term in set(tokens(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for d in self.postings[term]:
                tf = self.tf[d][term]
                norm = self.k1 * (1 - self.b + self.b * self.length[d] / self.avg)
                scores[d] = scores.get(d, 0.0) + idf * tf * (self.k1 + 1) / (tf + norm)
        return sorted(scores.items(), key=lambda ds: (-ds[1], ds[0]))[:k]


def overlap(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / max(len(sa | sb), 1)
