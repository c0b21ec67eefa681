"""Update stage: for each candidate fact and its s most similar stored memories, choose
ADD / UPDATE / DELETE / NOOP.

Variants: `llm` (Mem0's decision call; real ids are mapped to small integers in the prompt and back, so an id
the LM made up is caught and never applied), and LLM-free `threshold` (cosine cut-offs; with `supersede`, slot rules
first: supersede.py) and `add_only`.

`invalidation` (every variant): what happens to a memory a decision ends (a replacing UPDATE, a DELETE):
`soft` keeps it, marked invalid_at / superseded_by, and adds the new text as a new memory; `hard` overwrites or
deletes it (Mem0). MemoryPolicy._apply reads it.

Provenance (policies/provenance.py): an UPDATE replaces the memory's provenance with its new text's, unless the
decision says it merges. The threshold decider never merges (its new text replaces the old). The LLM decider merges
when the new text keeps every content word of the old one (provenance.keeps_content), and cites for each operation
the facts it restates (`_attribute`), not every fact of the call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..provenance import SourceStats, content_words, keeps_content, union
from ..types import Decision, Fact, MemoryRecord
from .instructions import use_instruction
from .programs import DEFAULT_DIR, load_program
from .signatures import DecideMemoryOperations
from .supersede import slot_decisions

INVALIDATION = ("soft", "hard")

ALLOWED_OPS = {
    "all": ("ADD", "UPDATE", "DELETE", "NOOP"),
    "add_update": ("ADD", "UPDATE", "NOOP"),
    "add_only": ("ADD", "NOOP"),
}


@dataclass
class DecisionKnobs:
    similar_k: int = 10  # s: Mem0 paper §2.2 fetches s=10 similar memories (mem0 v1 code uses 5)
    noop_threshold: float = 0.95  # threshold: a memory at least this similar already holds the fact -> NOOP
    update_threshold: float = 0.85  # threshold: at least this similar -> UPDATE that memory with the new text
    per_fact: bool = False  # llm: one call per fact (paper) or one call per message pair (mem0 v1 code)
    retries: int = 2
    # the operations the decider may apply (NOOP, no write, always): all = the paper's four; add_update = no DELETE
    # (a contradiction UPDATEs); add_only = ADD and NOOP (mem0 OSS v3 is add-only). The LLM decider's prompt says
    # which (prompts/decide/<allowed_ops>.md) and other operations it answers are rejected and counted
    allowed_ops: str = "all"
    program: str | None = None  # llm: a compiled program state (memtune-compile) loaded at build time
    programs_dir: str = DEFAULT_DIR  # llm: where compiled programs live (<programs_dir>/decider/<name>.json)
    # threshold, memtune's own (not in the paper): a fact filling a stored memory's slot (same person, same
    # single-valued attribute) with another value supersedes it; a restatement is NOOP (supersede.py, slots.py)
    supersede: bool = False
    slot_threshold: float = 0.3  # supersede: stored memories at least this cosine-similar are compared slot-wise
    restate_threshold: float = 0.5  # supersede: value-word overlap at/above which same-slot facts are one value
    invalidation: str = "hard"  # soft: ended memories are kept, marked invalid (Mem0g's graph); hard: Mem0's

    def __post_init__(self) -> None:
        if self.allowed_ops not in ALLOWED_OPS:
            raise ValueError(f"decider.allowed_ops={self.allowed_ops!r}: choose one of {sorted(ALLOWED_OPS)}")
        if self.invalidation not in INVALIDATION:
            raise ValueError(f"policy.decider.invalidation must be one of {INVALIDATION}, got {self.invalidation!r}")
        if not 0 <= self.slot_threshold <= 1 or not 0 < self.restate_threshold <= 1:
            raise ValueError(
                "decider needs 0 <= slot_threshold <= 1 and 0 < restate_threshold <= 1, got "
                f"slot_threshold={self.slot_threshold}, restate_threshold={self.restate_threshold}"
            )

    @property
    def allowed(self) -> tuple[str, ...]:
        return ALLOWED_OPS[self.allowed_ops]


class AddOnlyDecider:
    """Every fact is added; nothing is ever updated or deleted."""

    def __init__(self, **knobs):
        self.knobs = DecisionKnobs(**knobs)

    def decide(self, facts: list[Fact], similar: list[list[MemoryRecord]]) -> list[Decision]:
        return [Decision("ADD", f.text, None, f.provenance, f.timestamp) for f in facts]


class ThresholdDecider:
    """Cosine cut-offs: near-duplicate -> NOOP; close -> UPDATE (new text replaces old); else ADD."""

    def __init__(self, **knobs):
        self.knobs = DecisionKnobs(**knobs)
        if not 0 <= self.knobs.update_threshold <= self.knobs.noop_threshold <= 1:
            raise ValueError(
                "decider needs 0 <= update_threshold <= noop_threshold <= 1, got "
                f"update_threshold={self.knobs.update_threshold}, noop_threshold={self.knobs.noop_threshold}"
            )
        self.supersede_stats: Counter = Counter()  # restated, superseded, other_subject_skipped

    def decide(self, facts: list[Fact], similar: list[list[MemoryRecord]]) -> list[Decision]:
        decisions: list[Decision] = []
        touched: set[str] = set()
        with timed("decide"):
            for fact, neighbours in zip(facts, similar, strict=True):
                neighbours = [m for m in neighbours if m.id not in touched]
                if self.knobs.supersede:
                    slotted, neighbours = slot_decisions(fact, neighbours, self.knobs, self.supersede_stats)
                    if slotted:
                        decisions += slotted
                        touched |= {i for d in slotted if d.op != "NOOP" for i in (d.target, *d.supersedes) if i}
                        continue
                best = neighbours[0] if neighbours else None
                score = best.score if best is not None and best.score is not None else -1.0
                if best is not None and score >= self.knobs.noop_threshold:
                    decisions.append(Decision("NOOP", fact.text, best.id, fact.provenance, fact.timestamp))
                elif best is not None and score >= self.knobs.update_threshold and "UPDATE" in self.knobs.allowed:
                    touched.add(best.id)  # one UPDATE per memory per batch
                    decisions.append(Decision("UPDATE", fact.text, best.id, fact.provenance, fact.timestamp))
                else:
                    decisions.append(Decision("ADD", fact.text, None, fact.provenance, fact.timestamp))
        return decisions


class LLMDecider(dspy.Module):
    """Mem0's update call. Existing memories are shown with ids 0..n-1; the answer's ids are mapped back.

    forward(existing_memories=[{"id", "text"}], new_facts) -> Prediction(operations=[{"event", "id", "text"}],
    rejected=[...]): plain data with the small ids as shown. Only applicable operations are in `operations`
    (an id that was not shown, or an UPDATE without text, goes to `rejected`; an UPDATE to the same text is a
    NOOP; an operation on a memory without text keeps the memory's). `decide` maps the ids back to the memories,
    cites for each operation the facts it restates and decides merge vs replace (policies/provenance.py)."""

    phase = "decide"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = DecisionKnobs(**knobs)
        self.predict = dspy.Predict(DecideMemoryOperations)
        use_instruction(self.predict, "decide", self.knobs.allowed_ops)  # the prompt names the allowed operations
        if self.knobs.program:
            load_program(self, "decider", self.knobs.program, self.knobs.programs_dir, self.knobs)
        # operations never applied: naming ids that were not shown (hallucinated), UPDATE without text, or an
        # operation allowed_ops switches off (reason "not allowed")
        self.rejected: list[dict] = []
        self.sources = SourceStats()  # operations cited, and those matching no fact (they cite every fact's turns)

    def forward(self, existing_memories: list[dict], new_facts: list[str]) -> dspy.Prediction:
        shown = {int(m["id"]): str(m["text"]) for m in existing_memories}
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.knobs.retries,
            existing_memories=[{"id": i, "text": t} for i, t in shown.items()],
            new_facts=list(new_facts),
        )
        operations: list[dict] = []
        rejected: list[dict] = []
        for op in result.operations or []:
            text = op.text.strip()
            if op.event not in self.knobs.allowed:
                rejected.append({"event": op.event, "id": op.id, "text": op.text, "reason": "not allowed"})
                continue
            if op.event == "ADD" or (op.event == "NOOP" and op.id is None):
                if text or op.event == "NOOP":
                    operations.append({"event": op.event, "id": None, "text": text})
                continue
            if op.id not in shown:
                rejected.append({"event": op.event, "id": op.id, "text": op.text, "shown": len(shown)})
                continue
            if op.event == "UPDATE" and not text:
                rejected.append({"event": op.event, "id": op.id, "text": op.text, "reason": "empty text"})
                continue
            # an "update" to the same text changes nothing (small models often answer this way)
            event = "NOOP" if op.event == "UPDATE" and text == shown[op.id].strip() else op.event
            operations.append({"event": event, "id": op.id, "text": text or shown[op.id]})
        return dspy.Prediction(operations=operations, rejected=rejected)

    def decide(self, facts: list[Fact], similar: list[list[MemoryRecord]]) -> list[Decision]:
        groups = (
            [([f], [s]) for f, s in zip(facts, similar, strict=True)] if self.knobs.per_fact else [(facts, similar)]
        )
        decisions: list[Decision] = []
        for group_facts, group_similar in groups:
            decisions += self._decide_group(group_facts, group_similar)
        return decisions

    def _decide_group(self, facts: list[Fact], similar: list[list[MemoryRecord]]) -> list[Decision]:
        shown: dict[int, MemoryRecord] = {}
        for neighbours in similar:
            for memory in neighbours:
                if memory.id not in {m.id for m in shown.values()}:
                    shown[len(shown)] = memory
        provenance = union(*(f.provenance for f in facts))
        timestamp = facts[-1].timestamp if facts else ""
        result = run_stage(
            self,
            ",".join(provenance) or facts[0].text[:40],
            existing_memories=[{"id": i, "text": m.text} for i, m in shown.items()],
            new_facts=[f.text for f in facts],
        )
        if result is None:
            return []
        self.rejected += result.rejected
        decisions = []
        for op in result.operations:
            event, text = op["event"], op["text"]
            if op["id"] is None:  # ADD, or NOOP naming no memory
                cited = self._attribute(text, facts) if event == "ADD" else provenance
                decisions.append(Decision(event, text, None, cited, timestamp))
                continue
            target = shown[op["id"]]
            if event == "UPDATE":
                cited, merge = self._attribute(text, facts), keeps_content(target.text, text)
            else:
                cited, merge = provenance, False
            decisions.append(Decision(event, text, target.id, cited, timestamp, merge))
        return decisions

    def _attribute(self, text: str, facts: list[Fact]) -> tuple[str, ...]:
        """The turns an ADD/UPDATE text comes from: the facts it restates (the same text, else every fact whose
        content words it all keeps, else the fact sharing the most content words with it). A text sharing no
        content word with any fact cites every fact of the call and is counted (sources.fallbacks)."""
        self.sources.items += 1
        same = [f for f in facts if f.text.strip() == text.strip()]
        kept = same or [f for f in facts if keeps_content(f.text, text)]
        if not kept:
            words = content_words(text)
            overlap = [len(content_words(f.text) & words) for f in facts]
            best = max(overlap, default=0)
            kept = [f for f, n in zip(facts, overlap) if n == best] if best else []
        if not kept:
            self.sources.fallbacks += 1
            kept = facts
        return union(*(f.provenance for f in kept))
