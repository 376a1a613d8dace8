"""Fetch every retriever's top 200 for each judged query of a set once, through the normal query
layer, and pickle them with the qrels, so fusion rules can be studied offline
(docs/scripts/dominance_study.py):

    .venv/bin/python docs/scripts/collect_lists.py ../shared/data/scifact train /tmp/dom/scifact.pkl
    .venv/bin/python docs/scripts/collect_lists.py ../shared/data/scifact train \
        /tmp/dom/scifact-titles.pkl title
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from modalfuse.evaluation import beir, tuning
from modalfuse.evaluation.eval_index import ensure_index, for_language
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings


def main(root: Path, split: str, out: Path, lexical_fields: str | None = None) -> None:
    data = beir.load(root, split)
    settings, language = for_language(data.root, Settings())
    index = ensure_index(data.root, settings, language=language)["index"]
    common = {"lexical_fields": lexical_fields.split(",")} if lexical_fields else {}
    with Searcher(settings) as searcher:
        lists = tuning.collect(searcher, data, list(data.queries), index=index, common=common)
        names = sorted({n for per in lists.values() for n in per})
        groups = searcher.embedding_groups(names)
    judged = {q for q in lists if any(g > 0 for g in data.qrels.get(q, {}).values())}
    plain = {
        q: {str(n): [(h.id, h.score) for h in hits] for n, hits in lists[q].items()} for q in judged
    }
    qrels = {q: dict(data.qrels[q]) for q in judged}
    out.write_bytes(pickle.dumps({"lists": plain, "qrels": qrels, "groups": groups}))
    print(f"{out}: {len(plain)} judged queries, retrievers {names}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), *sys.argv[4:5])
