"""Answer and retrieval metrics: pure functions with exact, documented definitions.

Numbers here are compared with mem0's published LOCOMO numbers, so `f1_set` and `bleu1` follow mem0's
``evaluation/metrics/utils.py`` (``calculate_metrics`` / ``calculate_bleu_scores``) exactly; `f1_squad` is the
SQuAD-style variant under its own name. Tests with hand-computed values: ``tests/test_metrics.py``.
"""

from __future__ import annotations

import os
import re
import string
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# ------------------------------------------------------------------------------------------ answer metrics


def normalize_tokens(s: object) -> list[str]:
    """mem0's ``simple_tokenize``: ``str(s)``, lowercase, ``.`` ``,`` ``!`` ``?`` -> space, split on whitespace.

    Note: mem0 strips exactly those four characters, not all punctuation: ``"melanie's"``, ``'"nothing'``,
    ``"bike-sharing"`` and ``"d1:3"`` stay single tokens. "Strip punctuation" would split them; matching mem0's
    code is what makes our F1 comparable with its numbers, so this follows the code.
    """
    text = str(s).lower()
    for ch in ".,!?":
        text = text.replace(ch, " ")
    return text.split()


def f1_set(pred: object, gold: object) -> float:
    """mem0's token F1: set overlap of `normalize_tokens` tokens.

    precision = |P & G| / |P|, recall = |P & G| / |G|, F1 = 2pr / (p + r), with P, G the token *sets*.
    0.0 when either string is empty or has no tokens (mem0 returns 0 for empty predictions and references).
    """
    if not pred or not gold:
        return 0.0
    p = set(normalize_tokens(str(pred).strip()))
    g = set(normalize_tokens(str(gold).strip()))
    if not p or not g:
        return 0.0
    common = len(p & g)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def squad_normalize(s: object) -> str:
    """SQuAD's ``normalize_answer``: lowercase, remove punctuation, remove articles (a/an/the), fix whitespace."""
    text = "".join(ch for ch in str(s).lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_squad(pred: object, gold: object) -> float:
    """SQuAD-style bag-of-tokens F1 (token counts, not sets), on `squad_normalize`d strings.

    As in the official SQuAD v2 script: when either side has no tokens after normalisation, the score is 1.0 if
    both are empty and 0.0 otherwise. (`f1_set` follows mem0 instead and gives 0.0 for two empty strings.)
    """
    p = squad_normalize(pred).split()
    g = squad_normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


_NLTK_IMPORT = threading.Lock()


def _import_nltk() -> None:
    """Import nltk's tokenizer and BLEU once, under a lock: nltk's package imports are circular, so two threads
    importing it at once can get a half-initialised `nltk.corpus` (ImportError: cannot import name 'stopwords'),
    which is what the first answers of a parallel evaluation (`lm.max_concurrency` > 1) did in a fresh process."""
    with _NLTK_IMPORT:
        import nltk.tokenize  # noqa: F401
        import nltk.translate.bleu_score  # noqa: F401


def bleu_tokens(s: str) -> list[str]:
    """``nltk.word_tokenize(s.lower(), preserve_line=True)``: the Treebank word tokenizer on the whole string.

    mem0 calls ``word_tokenize`` without ``preserve_line``, which first splits sentences with punkt; the punkt
    data cannot be downloaded here. For a single-sentence string both give the same tokens. They differ only on
    multi-sentence strings: with ``preserve_line=True`` a period inside the string stays on its word
    (``"2023. then"`` -> ``["2023.", "then"]``), with punkt it would be a token of its own.
    """
    _import_nltk()
    from nltk.tokenize import word_tokenize

    return word_tokenize(s.lower(), preserve_line=True)


def bleu1(pred: object, gold: object) -> float:
    """mem0's BLEU-1: ``sentence_bleu([gold_tokens], pred_tokens, weights=(1, 0, 0, 0),
    smoothing_function=SmoothingFunction().method1)`` on `bleu_tokens`. 0.0 when either string is empty.

    That is the clipped unigram precision times the brevity penalty exp(1 - |gold| / |pred|) when the prediction
    is shorter than the reference.
    """
    if not pred or not gold:
        return 0.0
    pred_tokens = bleu_tokens(str(pred).strip())
    gold_tokens = bleu_tokens(str(gold).strip())
    if not pred_tokens or not gold_tokens:
        return 0.0
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero higher-order n-gram counts (weight 0 here)
        return float(
            sentence_bleu(
                [gold_tokens], pred_tokens, weights=(1, 0, 0, 0), smoothing_function=SmoothingFunction().method1
            )
        )


# ------------------------------------------------------------------------------------------ retrieval metrics


def evidence_recall(evidence: Sequence[str], retrieved_provenance: Sequence[Sequence[str]]) -> float | None:
    """Share of the distinct gold evidence ids covered by the union of the retrieved items' provenance.

    None when `evidence` is empty (recall is undefined: leave the question out of the average, do not count 0).
    Pass the provenance of the top-k items for recall@k.
    """
    gold = set(evidence)
    if not gold:
        return None
    covered: set[str] = set()
    for provenance in retrieved_provenance:
        covered.update(provenance)
    return len(gold & covered) / len(gold)


def context_budget_walk(
    items: Sequence[T],
    render: Callable[[Sequence[T]], str],
    budgets: Sequence[int],
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[int, dict[int, int]]:
    """Walk the RENDERED context of `items` (best first) against token budgets.

    Returns (tokens of ``render(items)``, {budget: n}): n leading items are kept under a budget. The walk takes
    the prefixes items[:1], items[:2], ... and stops at the first whose rendered text ``render(items[:n])``
    counts more than the budget; later, shorter items are not used to fill the gap. Counting the rendered
    prefix (timestamps, quoting and separators included), not the items' own text, is what makes a budget bind
    on what a reader is shown, and n == len(items) exactly when the whole context fits (first number <= budget).

    `render` is the one function that makes the reader's text (the eval passes `stages.answer.render_context`), and
    the first number is the eval's `context_tokens`, so the budget and the token count cannot disagree.
    `count_tokens` defaults to this module's `count_tokens` (cl100k_base).

    Cost: a rendered prefix's tokens grow with n (for `render_context` every item adds at least its keys), so the
    first prefix over a budget is found by bisection (interpolated, as items are alike) rather than by rendering
    every prefix: about 4 prefixes per budget instead of all 30 of a top-30 (tests/test_metrics.py checks it
    equals the one-by-one walk), and the `all` retriever's thousands of items cost no more.
    """
    counter = count_tokens if count_tokens is not None else _default_count_tokens
    if any(b < 0 for b in budgets):
        raise ValueError(f"token budgets must be >= 0, got {list(budgets)}")
    total = counter(render(items))
    counts = {len(items): total}  # n -> tokens of render(items[:n]), rendered once each

    def tokens(n: int) -> int:
        if n not in counts:
            counts[n] = counter(render(items[:n]))
        return counts[n]

    kept = {}
    for b in sorted(set(budgets), reverse=True):
        if total <= b:
            kept[b] = len(items)
            continue
        # invariant: `lo` items fit (0 always does: nothing is shown), `hi` items do not
        lo, hi = 0, min([n for n, c in counts.items() if c > b], default=len(items))
        lo = max([n for n, c in counts.items() if c <= b and n < hi], default=0)
        while hi - lo > 1:
            c_lo = tokens(lo) if lo else 0
            guess = lo + int((b - c_lo) * (hi - lo) / max(tokens(hi) - c_lo, 1))
            mid = min(max(guess, lo + 1), hi - 1)
            if tokens(mid) <= b:
                lo = mid
                if mid + 1 < hi and tokens(mid + 1) > b:  # the guess is usually right: one more to confirm
                    hi = mid + 1
            else:
                hi = mid
                if mid - 1 > lo and tokens(mid - 1) <= b:
                    lo = mid - 1
        kept[b] = lo
    return total, {b: kept[b] for b in budgets}


# ------------------------------------------------------------------------------------------ tokens

CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  # sha1 of tiktoken's cl100k_base download URL


def bundled_tiktoken_dir() -> Path | None:
    """litellm ships tiktoken's cl100k_base file under litellm/litellm_core_utils/tokenizers/ (found without
    importing litellm, which is slow and rewrites TIKTOKEN_CACHE_DIR on import)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return folder if (folder / CL100K_FILE).is_file() else None


_APPROX_RE = re.compile(r"\w+|[^\w\s]")
TOKENIZER_NAME = "tiktoken:cl100k_base"
APPROX_TOKENIZER_NAME = "approx:regex-words-and-punct"


@lru_cache(maxsize=1)
def _encoding():
    """cl100k_base, offline. Sets TIKTOKEN_CACHE_DIR to litellm's bundled copy unless the user set it; if the
    user's cache lacks the file, retries with the bundled copy; else None (approximate counting)."""
    try:
        import tiktoken
    except ImportError:
        warnings.warn("tiktoken is not installed: count_tokens approximates (words + punctuation marks)", stacklevel=2)
        return None
    bundled = bundled_tiktoken_dir()
    if "TIKTOKEN_CACHE_DIR" not in os.environ and bundled is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    errors: list[Exception] = []
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        errors.append(exc)
    if bundled is not None and os.environ.get("TIKTOKEN_CACHE_DIR") != str(bundled):
        # The user's cache dir lacks the file and the download failed: read litellm's copy this once.
        saved = os.environ["TIKTOKEN_CACHE_DIR"]
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
        try:
            return tiktoken.get_encoding("cl100k_base")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved
    warnings.warn(
        f"tiktoken cl100k_base unavailable offline ({errors!r}); count_tokens approximates (words + punctuation marks)",
        stacklevel=2,
    )
    return None


def tokenizer_name() -> str:
    """Which counter `count_tokens` uses: log it next to any token number."""
    return TOKENIZER_NAME if _encoding() is not None else APPROX_TOKENIZER_NAME


def count_tokens(text: str) -> int:
    """Tokens of `text` in OpenAI's cl100k_base (tiktoken), read offline from the copy litellm bundles.

    Fallback when that is impossible (no tiktoken, no bundled file and no network): the number of
    ``\\w+`` runs plus punctuation marks. On the LOCOMO dev split that totals 1.8% more than cl100k_base over
    the 4,124 turns (about 32 tokens each) and 2.7% fewer over the 1,755 observation facts; single strings can
    differ more. `tokenizer_name()` says which counter is in use: log it with any token number.
    """
    if not text:
        return 0
    encoding = _encoding()
    if encoding is None:
        return len(_APPROX_RE.findall(text))
    return len(encoding.encode(text, disallowed_special=()))


_default_count_tokens = count_tokens  # the default of the `count_tokens` parameters above, which shadow the name


# ------------------------------------------------------------------------------------------ stats
