"""Question-word coverage of memory texts (no model): the share of a question's content words (crude stems,
`answer_spans.content_stems`) a text holds, each word weighted by its rarity among the texts scored together.

    weight(w) = log(1 + n / df(w))   (df(w): how many of the n texts hold w; a word none holds: df = 0.5)
    coverage(text) = sum of weight(w) over the question's words in text / sum of weight(w) over the question's words

so a word every candidate shares (the asked person's name) weighs little, a rare one much. Used by the
question-aware answerer to re-rank the memories it reads (`answer.QuestionAwareAnswerer.rank`) and by the lexical
reranker (`rerank_lexical.LexicalScorer`); `novelty` is the share of a text's words the question does not hold.
Hand-checked in tests/test_lexical_rerank.py.
"""

from __future__ import annotations

import math
from collections import Counter

from .answer_spans import content_stems


def coverage(asked: set[str], texts: list[str], idf: bool = True) -> list[float]:
    """Per text, the (idf-weighted, `idf`) share in [0, 1] of the `asked` stems it holds (see the module doc)."""
    words = [content_stems(t) for t in texts]
    df = Counter(w for ws in words for w in ws & asked)
    weight = {w: math.log(1 + len(texts) / (df[w] or 0.5)) if idf else 1.0 for w in asked}
    total = sum(weight.values()) or 1.0
    return [sum(weight[w] for w in asked & ws) / total for ws in words]


def novelty(asked: set[str], text: str) -> float:
    """The share in [0, 1] of `text`'s content stems the question does not hold (0 for a text with none): a memory
    that only repeats the question ("I really love having them around.") cannot hold its answer."""
    words = content_stems(text)
    return len(words - asked) / len(words) if words else 0.0
