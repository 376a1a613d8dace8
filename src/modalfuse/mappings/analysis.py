"""Text analysis done here, in Python, for analyzers that both engines must apply identically.

The `chinese` analyzer turns a text into tokens before either engine sees it: the engines index
the tokens, space-separated, in a hidden field with a whitespace analyzer, and a query is
analyzed by the same function. So LanceDB and OpenSearch index exactly the same terms, and a
query finds what the same query finds on the other engine.

Tokens of `chinese`:
- the text is NFKC-normalised (full-width letters and digits become plain ones) and lower-cased;
- runs of Latin letters and digits are words as they are ("ahc", "b5", "z62", "70mm"): brand
  names and model numbers stay whole;
- runs of CJK characters become their characters and their overlapping bigrams ("黄金面霜" ->
  黄 金 面 霜 黄金 金面 面霜): the n-gram index of segmenter-free Chinese search. Bigrams alone
  (OpenSearch's `cjk` analyzer) and jieba's word segmentation were measured beside it and
  scored lower on both dev sets (docs/chinese.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Han (with extensions A and the compatibility block), kana and hangul: scripts written without
# spaces between words.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_RUNS = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")
SHADOW_SUFFIX = "__tokens"
# Changes when the tokens change: an index built with other tokens must be built again.
VERSION = 2
PRE_ANALYZED = frozenset({"chinese"})


def shadow_field(name: str) -> str:
    """The hidden field holding a text field's tokens (space-separated)."""
    return f"{name}{SHADOW_SUFFIX}"


def chinese_tokens(text: str) -> list[str]:
    return list(_chinese(text))


def _chinese(text: str) -> Iterator[str]:
    folded = unicodedata.normalize("NFKC", text).lower()
    for match in _RUNS.finditer(folded):
        cjk, word = match.groups()
        if word is not None:
            yield word
        else:
            yield from cjk
            for i in range(len(cjk) - 1):
                yield cjk[i : i + 2]


def analyzed(text: str) -> str:
    """The tokens as the engines index them: joined by single spaces."""
    return " ".join(_chinese(text))


def pre_analyzed(fields: Sequence[Any]) -> list[str]:
    """The names of the text fields analysed here (their tokens go to a shadow field)."""
    return [f.name for f in fields if getattr(f, "analyzer", None) in PRE_ANALYZED]


def with_tokens(values: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """A document's fields plus each pre-analysed text field's tokens in its shadow field."""
    out = dict(values)
    for name in names:
        value = values.get(name)
        if isinstance(value, str):
            out[shadow_field(name)] = analyzed(value)
    return out


def lexical_target(
    text: str, boosts: Mapping[str, float], names: Sequence[str]
) -> tuple[str, dict[str, float]]:
    """What a lexical query searches: pre-analysed fields are searched through their shadow
    fields with the query analysed the same way (a schema's text fields are all pre-analysed or
    none, so one text serves every field)."""
    if not names:
        return text, dict(boosts)
    return analyzed(text), {
        (shadow_field(f) if f in names else f): boost for f, boost in boosts.items()
    }
