"""Ranking after fusion, the same on every engine: boosts on business signals, merchandising
rules, collapse by a variant group, diversity (MMR). Each stage is a pure function over the
fused candidates (`stages.py`); `models.py` holds what a request and an index may set."""
