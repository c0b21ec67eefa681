"""Metrics against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from memtune.optimize.evaluation.metrics import (
    bleu1,
    bleu_tokens,
    context_budget_walk,
    count_tokens,
    evidence_recall,
    f1_set,
    f1_squad,
    normalize_tokens,
    squad_normalize,
    tokenizer_name,
)
from memtune.policies.lm import percentile
from memtune.policies.stages.answer import render_context
from memtune.policies.types import MemoryRecord, Scope

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


ITEMS = ["a b c", "d e", "f g h i", "j"]  # 3, 2, 4, 1 words


def _joined(items) -> str:
    return " ".join(items)  # a render whose prefix counts add up: 3, 5, 9, 10 words


def test_budget_walk_stops_at_the_first_prefix_over_budget():
    # prefixes: 3, 5, 9, 10 words; the whole context is 10
    assert context_budget_walk(ITEMS, _joined, [5], _words) == (10, {5: 2})
    # budget 6: the walk stops at item 3 (9 > 6); item 4 (1 word) is not used to fill the gap
    assert context_budget_walk(ITEMS, _joined, [6], _words) == (10, {6: 2})
    # budget 10 = the whole context: every item; budget 2: the first item alone (3) is over -> none
    assert context_budget_walk(ITEMS, _joined, [10, 2, 100], _words) == (10, {10: 4, 2: 0, 100: 4})
    assert context_budget_walk([], _joined, [0, 5], _words) == (0, {0: 0, 5: 0})
    with pytest.raises(ValueError, match="budgets must be >= 0"):
        context_budget_walk(ITEMS, _joined, [-1], _words)


def _record(text: str, turn: str) -> MemoryRecord:
    return MemoryRecord(id=turn, text=text, scope=Scope(user_id="u"), provenance=(turn,), timestamp="t")


def test_budget_counts_the_rendered_context_not_the_memory_text():
    """Short facts: each memory text is 2 words, but the answerer reads each as {"said_at": "t", "memory": "a b"}:
    render_context of n of them split on whitespace is `[{"said_at":` `"t",` `"memory":` `"a` `b"},` ... = 5 words
    per item. A 12-word budget holds 6 memory texts (12 words) but only 2 rendered items (10; 3 items = 15 > 12)."""
    memories = [_record("a b", f"D1:{i}") for i in range(1, 9)]
    assert [_words(render_context(memories[:n])) for n in (1, 2, 3)] == [5, 10, 15]
    total, kept = context_budget_walk(memories, render_context, [12, 40, 39], _words)
    assert total == 40 and kept == {12: 2, 40: 8, 39: 7}
    provenance = [m.provenance for m in memories]
    evidence = ["D1:1", "D1:5"]  # the 5th memory is past the 12-word rendered prefix
    assert evidence_recall(evidence, provenance[: kept[12]]) == 0.5
    assert evidence_recall(evidence, provenance[:6]) == 1.0  # what a text-only count (6 x 2 words) would claim


def test_budget_walk_total_is_the_rendered_context_tokens():
    """With the real counter (cl100k_base): the first number is count_tokens(render_context(all)), the eval's
    context_tokens; the whole list is kept exactly when it fits, and no kept prefix is over its budget."""
    memories = [_record(f"Priya: I adopted a cat named Pixel number {i}", f"D1:{i}") for i in range(30)]
    rendered = count_tokens(render_context(memories))
    total, kept = context_budget_walk(memories, render_context, [250, 500, rendered, rendered - 1])
    assert total == rendered
    assert kept[rendered] == 30 and kept[rendered - 1] < 30
    for budget, n in kept.items():
        assert count_tokens(render_context(memories[:n])) <= budget
        if n < 30:  # the next prefix is over: that is where the walk stopped
            assert count_tokens(render_context(memories[: n + 1])) > budget
    # the memory text alone would fit all 30 in 500 tokens; the rendered context does not
    assert sum(count_tokens(m.text) for m in memories) <= 500 and kept[500] < 30


def _one_by_one(items, render, budget, counter) -> int:
    """The walk's definition, literally: render items[:1], items[:2], ... and stop at the first over budget."""
    n = 0
    while n < len(items) and counter(render(items[: n + 1])) <= budget:
        n += 1
    return n


def test_budget_walk_equals_the_one_by_one_walk_on_varied_memories():
    import random

    rng = random.Random(0)
    words = 'cat Pixel Berlin moved nursing 10k race knee é 🙂 "quoted" 2023 teaching kids'.split()
    for trial in range(40):
        memories = [
            _record(" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))), f"D1:{i}")
            for i in range(rng.randint(0, 40))
        ]
        budgets = [0, 1, 2, 250, 500, 1000, 2000, rng.randint(0, 1500)]
        total, kept = context_budget_walk(memories, render_context, budgets)
        assert total == count_tokens(render_context(memories))
        for b in budgets:
            assert kept[b] == _one_by_one(memories, render_context, b, count_tokens), (trial, b)


def test_budget_walk_renders_few_prefixes_of_a_long_list():
    """The `all` retriever returns every memory: the walk must not render each of 2,000 prefixes."""
    calls = []

    def counter(text: str) -> int:
        calls.append(len(text))
        return _words(text)

    memories = [_record("a b", f"D1:{i}") for i in range(2000)]  # 5 words per rendered item (see above)
    total, kept = context_budget_walk(memories, render_context, [250, 500, 1000, 2000], counter)
    assert total == 10000 and kept == {250: 50, 500: 100, 1000: 200, 2000: 400}
    assert len(calls) <= 4 * 4 + 1


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
    code = "from memtune.optimize.evaluation.metrics import count_tokens, tokenizer_name; print(count_tokens('hello world'), tokenizer_name())"
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
