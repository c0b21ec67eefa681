"""Answer stage: question + retrieved memories -> a short answer.

Variants: `llm` (Mem0's answer call, memories shown with the time they were said) and two LLM-free ones: the
`extractive` baseline, which returns the best-matching span of the best memory (or its date for
"when" questions): LOCOMO answers are a few words, so returning a whole memory scores poorly on F1; and
`question_aware`, where the question's type (`question_type`) picks a span of the right kind (a resolved date,
a place, a person, a number, a noun phrase; `answer_typing`, `answer_spans`, `answer_dates`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..types import MemoryRecord
from .answer_dates import DATE_STYLES, has_temporal_expression, when_answer
from .answer_spans import body, content_stems, load_nlp, plain, spans
from .answer_typing import choice_options, focus_labels, quantity_word, question_type
from .instructions import use_instruction
from .lexical import coverage, novelty
from .programs import DEFAULT_DIR, load_program
from .render import check_style, memory_context, render_items
from .render import context_renderer as context_renderer  # re-exported: callers import them from here
from .render import render_context as render_context
from .signatures import AnswerQuestion, AnswerQuestionLines

NOT_MENTIONED = "Not mentioned"


@dataclass
class AnswerKnobs:
    max_words: int = 6  # mem0's answer prompt asks for "less than 5-6 words"
    candidates: int = 3  # extractive: how many top memories to take spans from
    dates_for_when: bool = True  # extractive: answer "when ..." questions with the memory's date
    retries: int = 2
    instruction: str = "mem0"  # llm: prompt library variant (prompts/answer/<name>.md); mem0 = the signature's own
    program: str | None = None  # llm: a compiled program state (memtune-compile) loaded at build time
    programs_dir: str = DEFAULT_DIR  # llm: where compiled programs live (<programs_dir>/answerer/<name>.json)
    render: str = "json"  # the context's rendering (stages/render.py): json (Mem0's prompt) | lines | lines_date

    def __post_init__(self):
        check_style(self.render)


_WORD = re.compile(r"[A-Za-z0-9']+")
_STOP = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been being do does did have has had "
    "i you he she it we they me him her us them my your his its our their this that these those what which who whom "
    "whose when where why how would will can could should shall may might must not no so if then than there here "
    "about into over after before up down out also just very really some any all more most much many such too".split()
)
_SPAN = re.compile(r"[.!?;,:()\[\]]\s*|\s+-\s+|\band\b|\bbut\b|\bbecause\b")
_TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}\s*(am|pm)\s+on\s+", re.IGNORECASE)


def _content(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class ExtractiveAnswerer:
    """Pick the span of the top memories that best matches the question, minus the question's own words."""

    def __init__(self, **knobs):
        self.knobs = AnswerKnobs(**knobs)

    def answer(self, question: str, memories: list[MemoryRecord]) -> str:
        with timed("answer"):
            return self.span(question, memories)

    def span(self, question: str, memories: list[MemoryRecord]) -> str:
        """The answer, untimed (the question-aware answerer's fallback calls it inside its own timing)."""
        if not memories:
            return NOT_MENTIONED
        if self.knobs.dates_for_when and question.lower().lstrip().startswith("when"):
            return _TIME_OF_DAY.sub("", memories[0].timestamp).replace(",", "") or NOT_MENTIONED
        asked = set(_content(question))
        best, best_score = "", -1.0
        for rank, memory in enumerate(memories[: self.knobs.candidates]):
            text = memory.text.split(": ", 1)[-1]  # drop the "<speaker>: " prefix
            for span in _SPAN.split(text):
                words = _content(span)
                if not words:
                    continue
                overlap = len(asked & set(words)) / len(set(words)) ** 0.5
                new_words = [w for w in span.split() if w.lower().strip(".,!?'\"") not in asked]
                score = overlap / (1 + rank) + (0.01 if new_words else -1)
                if score > best_score:
                    best, best_score = " ".join(new_words) or span, score
        words = [w for w in best.split() if w.lower() not in _STOP] or best.split()
        return " ".join(words[: self.knobs.max_words]) or NOT_MENTIONED


@dataclass
class QuestionAwareKnobs:
    """Knobs of `QuestionAwareAnswerer`; defaults measured on the tune conversations (conv-26/30/41/42) only."""

    max_words: int = 6  # mem0's answer prompt asks for "less than 5-6 words"
    candidates: int = 5  # how many of the re-ranked memories spans are taken from
    pool: int = 30  # how many retrieved memories are re-ranked by question-word overlap
    rank_weight: float = 0.2  # weight of the retrieval rank prior (weight / (1 + rank)) against word overlap
    idf: bool = True  # weigh question words by their rarity among the re-ranked memories
    span_weight: float = 1.0  # weight of a span's type fit against its memory's score
    date_format: str = "locomo"  # "locomo" | "absolute" | "session" (answer_dates.DATE_STYLES)
    dated_bonus: float = 0.6  # "when": bonus for a memory whose text names a time ("yesterday", "last week")
    same_turn: bool = True  # "when": a memory naming no time borrows the time named by a memory of the same turn
    undated: str = "day"  # "when", no time named: the session's "day" ("8 May 2023") or "month" ("May 2023")
    use_entities: bool = True  # spaCy entities / noun chunks; off (or spaCy missing) = extractive fallback
    yes_no: str = "yes"  # polar questions: "yes", "likely_yes" or "negation" ("No" when the best memory negates)
    choices: bool = True  # either-or questions ("a beach or the mountains?"): the option the memories mention more
    join: int = 3  # how many of the best distinct spans (across memories) are joined into the answer
    join_margin: float = 0.3  # ... each scoring at most this much below the best span
    expand: bool = True  # a noun chunk with its whole subtree ("a cup" -> "a cup with a dog face on it")
    # the context's rendering (stages/render.py): json (Mem0's prompt, for an LM) | lines | lines_date. No LM reads
    # this answerer's context, so the compact style: one memory a line with its day fits ~1.8x as many memories in a
    # token budget (tune split, experiments/offline-retrieval render arm; the paper does not fix it)
    render: str = "lines_date"
    fresh_weight: float = 0.0  # re-ranking: + weight * the share of a memory's words the question lacks (lexical.py)

    def __post_init__(self):
        check_style(self.render)
        if self.fresh_weight < 0:
            raise ValueError(f"answerer.fresh_weight must be >= 0, got {self.fresh_weight!r}")
        if self.date_format not in DATE_STYLES:
            raise ValueError(f"answerer.date_format must be one of {DATE_STYLES}, got {self.date_format!r}")
        if self.yes_no not in YES_NO_RULES:
            raise ValueError(f"answerer.yes_no must be one of {YES_NO_RULES}, got {self.yes_no!r}")
        if self.undated not in ("day", "month"):
            raise ValueError(f"answerer.undated must be 'day' or 'month', got {self.undated!r}")
        for name in ("max_words", "candidates", "pool", "join"):
            if getattr(self, name) < 1:
                raise ValueError(f"answerer.{name} must be >= 1, got {getattr(self, name)}")


YES_NO_RULES = ("yes", "likely_yes", "negation")


def _spacy_available() -> bool:
    """spaCy and its model load (once); warned once when they do not: the entity types fall back to extraction."""
    if load_nlp() is not None:
        return True
    if not _WARNED:
        _WARNED.append(True)
        warnings.warn(
            "question_aware answerer: spaCy or en_core_web_sm is not installed (uv sync --all-extras); "
            "what/which/who/where/how questions fall back to the extractive answerer's span",
            stacklevel=3,
        )
    return False


_WARNED: list[bool] = []
_NEGATION = re.compile(r"\b(?:not|no|never|n't|don't|didn't|doesn't|isn't|wasn't|won't|can't)\b", re.IGNORECASE)


class QuestionAwareAnswerer:
    """The question's type (`answer_typing.question_type`) picks a span of the right kind from the top memories:
    a date for "when" (the memory's own time expression resolved against when it was said, `answer_dates`),
    places / people / numbers / noun phrases from spaCy for where / who / how many / what; "Yes" for polar
    questions. Memories are first re-ranked by question-word overlap plus a retrieval-rank prior. No span of the
    right kind (or no spaCy) -> the extractive answerer's span."""

    def __init__(self, **knobs):
        self.knobs = QuestionAwareKnobs(**knobs)
        self.fallback = ExtractiveAnswerer(max_words=self.knobs.max_words, candidates=3)

    def answer(self, question: str, memories: list[MemoryRecord]) -> str:
        """Never empty: NOT_MENTIONED when there are no memories (or nothing to say)."""
        if not memories:
            return NOT_MENTIONED
        with timed("answer"):
            answer = self._answer(question, memories)
            return answer if answer is not None else self.fallback.span(question, memories)

    def _answer(self, question: str, memories: list[MemoryRecord]) -> str | None:
        """The typed answer, or None to fall back to the extractive span (no typed span, or no spaCy)."""
        k = self.knobs
        kind = question_type(question)
        asked = content_stems(question)
        ranked = self.rank(asked, memories[: k.pool])
        if kind == "when":
            dated = [(score, self.time_text(memory, memories), memory) for score, memory in ranked[: k.candidates]]
            _, text, top = max(dated, key=lambda r: r[0] + k.dated_bonus * has_temporal_expression(r[1]))
            return when_answer(text, top.timestamp, k.date_format, k.undated) or NOT_MENTIONED
        if kind == "yes_no":
            return self.polar(question, [m for _, m in ranked[: k.candidates]])
        if kind not in ("quantity", "why") and not (k.use_entities and _spacy_available()):
            return None
        measure, focus = quantity_word(question), focus_labels(question) if kind in ("what", "which") else ()
        found = [
            (score + k.span_weight * fit, span)
            for score, memory in ranked[: k.candidates]
            for span, fit in spans(
                kind, plain(memory.text, kind != "quantity"), asked, k.use_entities, k.expand, measure, focus
            )
        ]
        found.sort(key=lambda f: -f[0])
        picked: list[str] = []
        for total, span in found:
            if total < found[0][0] - k.join_margin or len(picked) >= k.join:
                break
            if not any(span.lower() in p.lower() or p.lower() in span.lower() for p in picked):
                picked.append(span)
        return " ".join(" ".join(picked).split()[: k.max_words]) if picked else None

    def polar(self, question: str, memories: list[MemoryRecord]) -> str:
        """Either-or: the option whose words the memories hold more often (ties: the first). Else yes_no's rule."""
        options = choice_options(question) if self.knobs.choices else None
        if options:
            said = [content_stems(m.text) for m in memories]
            support = [sum(len(content_stems(o) & s) for s in said) for o in options]
            return options[1] if support[1] > support[0] else options[0]
        if self.knobs.yes_no == "negation":
            return "No" if _NEGATION.search(body(memories[0].text)) else "Yes"
        return "Likely yes" if self.knobs.yes_no == "likely_yes" else "Yes"

    def time_text(self, memory: MemoryRecord, memories: list[MemoryRecord]) -> str:
        """The memory's text, or (same_turn) when it names no time, the text of a retrieved memory from the same
        turn that does: "I went to a convention." + "Something exciting happened last Friday." (one turn)."""
        text = body(memory.text)
        if not self.knobs.same_turn or has_temporal_expression(text) or not memory.provenance:
            return text
        turn = set(memory.provenance)
        same = (body(m.text) for m in memories if m is not memory and turn & set(m.provenance))
        return next((t for t in same if has_temporal_expression(t)), text)

    def rank(self, asked: set[str], memories: list[MemoryRecord]) -> list[tuple[float, MemoryRecord]]:
        """(score, memory), best first: the (idf-weighted) share of the question's content words a memory holds,
        plus the rank prior rank_weight / (1 + retrieval rank), plus fresh_weight * the share of its own words the
        question lacks (`lexical.novelty` of its text without resolved dates). idf is over the memories ranked, so
        words every retrieved memory shares (the asked person's name) weigh little."""
        k = self.knobs
        covered = coverage(asked, [m.text for m in memories], k.idf)
        scored = [
            (
                share
                + k.rank_weight / (1 + rank)
                + (k.fresh_weight and k.fresh_weight * novelty(asked, plain(m.text))),
                m,
            )
            for rank, (m, share) in enumerate(zip(memories, covered))
        ]
        return sorted(scored, key=lambda r: -r[0])


class LLMAnswerer(dspy.Module):
    """Mem0's answer call: the question and the top-k memories with their timestamps.

    forward(question, memories=[{"said_at", "memory", ...}]) -> Prediction(answer): plain data, `memories` the
    `memory_context` items, best first (the prompt carries them as `render_context` writes them in the `render`
    style: json keeps Mem0's prompt; the line styles use a signature that describes lines)."""

    phase = "answer"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = AnswerKnobs(**knobs)
        self.predict = dspy.Predict(AnswerQuestion if self.knobs.render == "json" else AnswerQuestionLines)
        use_instruction(self.predict, "answer", self.knobs.instruction)
        if self.knobs.program:
            load_program(self, "answerer", self.knobs.program, self.knobs.programs_dir, self.knobs)

    def forward(self, question: str, memories: list[dict]) -> dspy.Prediction:
        shown = render_items(list(memories), self.knobs.render)
        result = predict_with_retries(self.predict, self.phase, self.knobs.retries, question=question, memories=shown)
        return dspy.Prediction(answer=str(result.answer or "").strip())

    def answer(self, question: str, memories: list[MemoryRecord]) -> str | None:
        """The answer, or None when the LM failed after its retries (recorded in the meter's failures): a failed
        answer is not an empty one, so the evaluation scores it 0 and never counts it as an abstention."""
        result = run_stage(self, question[:60], question=question, memories=memory_context(memories))
        return None if result is None else result.answer
