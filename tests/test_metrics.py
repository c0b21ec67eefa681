"""Metrics against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from memtune.optimize.metrics import (
    bleu1,
    bleu_tokens,
    budget_prefix,
    count_tokens,
    evidence_recall,
    f1_set,
    f1_squad,
    normalize_tokens,
    percentile,
    recall_at_budget,
    squad_normalize,
    tokenizer_name,
)

# ------------------------------------------------------------------------------------------ tokens for F1


def test_normalize_tokens_is_mem0_simple_tokenize():
    # lowercase; "." "," "!" "?" -> " "; split:  "hello  world  it's 5 30 "
    assert normalize_tokens("Hello, World! It's 5.30?") == ["hello", "world", "it's", "5", "30"]
    # Only those four characters go (as in mem0): apostrophes, quotes, hyphens, colons stay.
    assert normalize_tokens('"Bike-sharing": yes') == ['"bike-sharing":', "yes"]
    assert normalize_tokens(2022) == ["2022"]


# ------------------------------------------------------------------------------------------ f1_set (mem0)


def test_f1_set_partial_overlap():
    # P = {the, cat, sat}, G = {a, cat, sat, down}; |P & G| = 2
    # precision = 2/3, recall = 2/4 = 1/2, F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert f1_set("the cat sat", "a cat sat down") == pytest.approx(4 / 7)


def test_f1_set_uses_sets():
    # P = {cat} (repeats collapse), G = {cat, dog}: precision 1/1, recall 1/2, F1 = 2 * 0.5 / 1.5 = 2/3
    assert f1_set("cat cat cat", "cat dog") == pytest.approx(2 / 3)


def test_f1_set_punctuation_and_case():
    # "Paris." -> {paris}; "paris" -> {paris}: F1 = 1
    assert f1_set("Paris.", "paris") == 1.0
    # "melanie's" keeps its apostrophe (mem0 tokenizer), so no overlap with "melanie": 0
    assert f1_set("Melanie's", "Melanie") == 0.0


def test_f1_set_empty_is_zero():
    assert f1_set("", "cat") == 0.0
    assert f1_set("cat", "") == 0.0
    assert f1_set("", "") == 0.0
    assert f1_set("?!", "cat") == 0.0  # no tokens after normalisation
    assert f1_set("dog", "cat") == 0.0


def test_f1_set_int_gold():
    # str(2022) -> {"2022"}; pred {"in", "2022"}: precision 1/2, recall 1/1, F1 = 2 * 0.5 / 1.5 = 2/3
    assert f1_set("in 2022", 2022) == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------ f1_squad


def test_squad_normalize():
    # lowercase, punctuation removed (not replaced), articles removed, whitespace collapsed
    assert squad_normalize("The  Melanie's, a cat!") == "melanies cat"


def test_f1_squad_partial_overlap():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]; common 2
    # precision 2/2 = 1, recall 2/3, F1 = 2 * (2/3) / (5/3) = 4/5
    assert f1_squad("the cat sat", "a cat sat down") == pytest.approx(0.8)


def test_f1_squad_counts_repeats():
    # Counter(P) = {cat: 3}, Counter(G) = {cat: 1, dog: 1}; overlap min(3, 1) = 1
    # precision 1/3, recall 1/2, F1 = 2 * (1/6) / (5/6) = 2/5
    assert f1_squad("cat cat cat", "cat dog") == pytest.approx(0.4)


def test_f1_squad_empty_rule():
    assert f1_squad("The", "a") == 1.0  # both empty after removing articles: SQuAD v2 gives 1
    assert f1_squad("", "cat") == 0.0
    assert f1_squad("dog", "cat") == 0.0


# ------------------------------------------------------------------------------------------ bleu1


def test_bleu_tokens_offline():
    # Treebank tokenizer on the whole line: "'s" split off, final period split off, inner period kept.
    assert bleu_tokens("Melanie's cat, Oliver.") == ["melanie", "'s", "cat", ",", "oliver", "."]
    assert bleu_tokens("In 2023. Then moved.") == ["in", "2023.", "then", "moved", "."]


def test_bleu1_brevity_penalty():
    # pred [the, cat, sat] (c = 3), gold [the, cat, sat, on, the, mat] (r = 6)
    # clipped unigram precision = 3/3 = 1; c < r so BP = exp(1 - r/c) = exp(1 - 2) = e^-1 = 0.367879...
    assert bleu1("the cat sat", "the cat sat on the mat") == pytest.approx(math.exp(-1))


def test_bleu1_brevity_and_partial_precision():
    # pred [cat, dog] (c = 2), gold [the, cat, sat, on, a, mat] (r = 6): p1 = 1/2, BP = exp(1 - 6/2) = e^-2
    # BLEU-1 = 0.5 * e^-2 = 0.0676676...
    assert bleu1("cat dog", "the cat sat on a mat") == pytest.approx(0.5 * math.exp(-2))


def test_bleu1_clipping_no_penalty():
    # pred [cat, cat, cat] (c = 3), gold [the, cat] (r = 2): "cat" clipped to 1 -> p1 = 1/3; c >= r so BP = 1
    assert bleu1("cat cat cat", "the cat") == pytest.approx(1 / 3)


def test_bleu1_punctuation_is_a_token():
    # pred "7 May 2023." -> [7, may, 2023, .] (c = 4), gold [7, may, 2023] (r = 3): p1 = 3/4, BP = 1
    assert bleu1("7 May 2023.", "7 may 2023") == pytest.approx(0.75)


def test_bleu1_zero_cases():
    assert bleu1("dog", "the cat") == 0.0  # no unigram match
    assert bleu1("", "the cat") == 0.0
    assert bleu1("the cat", "") == 0.0


# ------------------------------------------------------------------------------------------ evidence recall


def test_evidence_recall_partial():
    # gold {D1:1, D1:2, D2:3}; union of provenance {D1:1, D1:2, D9:9}; covered 2 of 3
    assert evidence_recall(["D1:1", "D1:2", "D2:3"], [["D1:1"], ["D1:2", "D9:9"], []]) == pytest.approx(2 / 3)


def test_evidence_recall_distinct_gold_ids():
    # gold ids are counted once: {D1:1, D1:2}; covered {D1:1} -> 1/2
    assert evidence_recall(["D1:1", "D1:1", "D1:2"], [["D1:1"], ["D1:1"]]) == 0.5


def test_evidence_recall_none_and_zero():
    assert evidence_recall([], [["D1:1"]]) is None  # undefined: excluded from averages, not 0
    assert evidence_recall(["D1:1"], []) == 0.0
    assert evidence_recall(["D1:1"], [["D1:1", "D1:2"]]) == 1.0


def _words(text: str) -> int:
    return len(text.split())


RETRIEVED = [
    ("a b c", ["D1:1"]),  # 3 tokens, cumulative 3
    ("d e", ["D1:2"]),  # 2 tokens, cumulative 5
    ("f g h i", ["D1:3"]),  # 4 tokens, cumulative 9
    ("j", ["D1:4"]),  # 1 token,  cumulative 10
]
EVIDENCE = ["D1:1", "D1:2", "D1:4"]


def test_recall_at_budget():
    # budget 5: 3 <= 5, 5 <= 5, 9 > 5 stop -> items 1-2 cover {D1:1, D1:2} of 3 gold ids = 2/3
    assert budget_prefix(RETRIEVED, 5, _words) == (2, 5)
    assert recall_at_budget(EVIDENCE, RETRIEVED, 5, _words) == pytest.approx(2 / 3)
    # budget 6: the walk stops at item 3 (9 > 6); item 4 is not used to fill the gap -> still 2/3
    assert recall_at_budget(EVIDENCE, RETRIEVED, 6, _words) == pytest.approx(2 / 3)
    # budget 10: all four items (10 <= 10) -> 3/3
    assert budget_prefix(RETRIEVED, 10, _words) == (4, 10)
    assert recall_at_budget(EVIDENCE, RETRIEVED, 10, _words) == 1.0
    # budget 2: the first item alone (3) is over -> nothing retrieved -> 0
    assert recall_at_budget(EVIDENCE, RETRIEVED, 2, _words) == 0.0
    assert recall_at_budget([], RETRIEVED, 10, _words) is None


def test_recall_at_budget_default_counter():
    # cl100k_base: "hello world" = [15339 "hello", 1917 " world"] = 2 tokens
    assert recall_at_budget(["D1:1"], [("hello world", ["D1:1"])], 2) == 1.0
    assert recall_at_budget(["D1:1"], [("hello world", ["D1:1"])], 1) == 0.0


# ------------------------------------------------------------------------------------------ count_tokens


def test_count_tokens_cl100k():
    assert tokenizer_name() == "tiktoken:cl100k_base"
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2  # [15339, 1917]
    assert count_tokens("hello world, Melanie painted a sunrise") == 7  # hello| world|,| Melanie| painted| a| sunrise
    assert count_tokens("<|endoftext|>") > 1  # special-token text is counted as plain text, not rejected


@pytest.mark.parametrize("user_cache", [None, "empty"])
def test_count_tokens_offline(tmp_path, user_cache):
    """With the network blocked (a dead proxy), cl100k_base still loads from litellm's bundled file, also when
    the user's TIKTOKEN_CACHE_DIR lacks it."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    if user_cache:
        env["TIKTOKEN_CACHE_DIR"] = str(tmp_path)
    code = "from memtune.optimize.metrics import count_tokens, tokenizer_name; print(count_tokens('hello world'), tokenizer_name())"
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "tiktoken:cl100k_base"]


# ------------------------------------------------------------------------------------------ percentile


def test_percentile():
    values = [4, 1, 3, 2]  # sorted [1, 2, 3, 4], n - 1 = 3
    assert percentile(values, 50) == pytest.approx(2.5)  # pos 1.5: 2 + 0.5 * (3 - 2)
    assert percentile(values, 95) == pytest.approx(3.85)  # pos 2.85: 3 + 0.85 * (4 - 3)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
