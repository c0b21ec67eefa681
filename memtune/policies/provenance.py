"""Provenance: which conversation turns a memory's content comes from, and nothing more.

A memory's provenance is the set of turns (dia_ids) whose content the memory holds NOW. Evidence recall credits a
retrieved memory with every turn in its provenance, so a provenance that outlives the content it stood for (a
replaced memory still citing the turns of the text it replaced) scores recall the memory did not earn, and a
tuner will find that. Two rules keep it truthful:

* Replace or merge. An UPDATE either replaces the memory's content (provenance := the new fact's turns; the old
  provenance stays in the history row as `old_provenance`) or merges into it (provenance := old + new). A decider
  says which (`Decision.merge`). The threshold decider always replaces. The LLM decider and a runtime
  `Memory.update` decide by content, with `keeps_content(old, new)`:

      merge  <=>  every content word of the old text occurs in the new text

  Content words: the lower-cased words ([a-z0-9]+, a trailing "'s" dropped) minus the function words in
  `STOPWORDS`, each with a plural / third-person "s" stripped ("lives" = "live", "dogs" = "dog"; not "ss").
  A text with no content word is never merged into. "All" and not "most": with bags of words "Melanie's favourite
  colour is blue" -> "... is green" keeps 3 of 4 words and is a replacement, so any share below 1 merges
  replacements; the rule errs towards replace, which can only under-credit recall, never inflate it.

* Cite the source. An LLM-extracted fact names the new messages it came from (their numbers as shown to the
  model); `cite()` keeps the valid ones and falls back to the whole message pair only when none is valid, and
  counts both (`SourceStats`: the evaluation reports them as provenance_fallbacks / provenance_sources_dropped).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from .types import Message

# Function words (articles, pronouns, auxiliaries, prepositions, conjunctions, fillers): they carry no content.
STOPWORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here
    i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
    is am are was were be been being has have had do does did will would shall should can could might must
    to of in on at for with from by as about into onto over under up down out off also too very just now
    not no still again already some any all both each every other another such own same""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> frozenset[str]:
    """The content words of `text` (see the module docstring)."""
    out = set()
    for word in _WORD.findall(str(text).casefold()):
        word = word.removesuffix("'s")
        if word and word not in STOPWORDS:
            out.add(_stem(word))
    return frozenset(out)


def keeps_content(old: str, new: str) -> bool:
    """True when `new` still holds the content of `old` (every content word of old is in new): a merge."""
    kept = content_words(old)
    return bool(kept) and kept <= content_words(new)


def union(*provenances: Iterable[str]) -> tuple[str, ...]:
    """Ordered, de-duplicated union of several provenances."""
    return tuple(dict.fromkeys(p for prov in provenances for p in prov))


@dataclass
class SourceStats:
    """Counts of an LLM stage's citations: items produced, items that fell back to the whole message pair, and
    cited sources dropped (outside the new messages shown, or unreadable)."""

    items: int = 0
    fallbacks: int = 0
    dropped: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def count(self, items: int = 0, fallbacks: int = 0, dropped: int = 0) -> None:
        """Add to the counts; safe when scopes ingest in parallel threads (a bare `+=` is not atomic)."""
        with _COUNT_LOCK:
            self.items += items
            self.fallbacks += fallbacks
            self.dropped += dropped


_COUNT_LOCK = threading.Lock()  # one for every SourceStats: a lock in the dataclass would not deep-copy


def cite(sources: object, new: Sequence[Message], stats: SourceStats) -> tuple[str, ...]:
    """The dia_ids of the new messages an LLM item cites. `sources` are the message numbers as shown (1-based,
    ints or digit strings) or dia_ids of the new messages; anything else is dropped. With no valid source the
    item cites every new message (the pair) and is counted as a fallback."""
    dropped = 0
    if sources is None:
        sources = []
    elif isinstance(sources, (str, int)):
        sources = [sources]
    by_id = {m.dia_id: m for m in new if m.dia_id}
    picked: list[Message] = []
    for s in sources if isinstance(sources, (list, tuple)) else []:
        n = s.strip() if isinstance(s, str) else s
        if isinstance(n, str) and n.isdigit():
            n = int(n)
        if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= len(new):
            picked.append(new[n - 1])
        elif isinstance(n, str) and n in by_id:
            picked.append(by_id[n])
        else:
            dropped += 1
    stats.count(items=1, fallbacks=0 if picked else 1, dropped=dropped)
    if picked:
        return union(m.dia_id for m in picked if m.dia_id)
    return union(m.dia_id for m in new if m.dia_id)


def provenance_facts(policy) -> dict:
    """What ingestion reports about provenance (summary.json `ingest`): mean and max turns cited per stored memory,
    and the citation counts of the LLM stages (0 for LLM-free stages, which cite exactly their turns)."""
    sizes = [len(m.provenance) for m in policy.store.get_all()]
    extract = getattr(policy.extractor, "sources", None) or SourceStats()
    decide = getattr(policy.decider, "sources", None) or SourceStats()
    return {
        "provenance_turns_mean": round(sum(sizes) / len(sizes), 4) if sizes else None,
        "provenance_turns_max": max(sizes, default=None),
        "llm_facts": extract.items,
        "provenance_fallbacks": extract.fallbacks,  # LLM facts citing no valid source: the whole pair
        "provenance_sources_dropped": extract.dropped,  # cited sources outside the new messages shown
        "decide_provenance_fallbacks": decide.fallbacks,  # LLM decisions restating no fact: every fact's turns
    }


PROVENANCE_KEYS = (  # the keys of provenance_facts(), in summary.json order
    "provenance_turns_mean",
    "provenance_turns_max",
    "llm_facts",
    "provenance_fallbacks",
    "provenance_sources_dropped",
    "decide_provenance_fallbacks",
)
