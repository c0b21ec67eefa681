"""The dry run's model (pure functions): from the LM calls of a sample, the calls, tokens and wall time of the whole
run. dry_run.py takes the sample; tests/test_cost_control.py checks this arithmetic by hand.

Ingestion, per conversation c with P_c message pairs of which the first N_c were ingested for real:
* the sample's own calls and tokens count as they are (the warm-up: an empty store, no summary, few recent
  messages, so early prompts are short);
* the rest are projected at the steady state: per LM call, the mean prompt / completion / cached tokens of the
  calls made for the second half of the sampled pairs (pair index >= N_c / 2), pooled over conversations (all
  the phase's sampled calls when that half made none);
* how many more calls: extraction 1 per pair (times the sample's retries), summary refreshes exactly as many as
  the full conversation's messages fill windows (times the sample's calls per refresh), any other phase (decide,
  graph_*) at the second half's calls per pair.
Answering (and judging), per conversation with Q_c questions of which the first M_c were answered: the sample's
calls per question and tokens per call; the answer's prompt is corrected for context size, since the sample's
store is smaller than the full one: + (n_full - n_sample) retrieved memories at the sample's tokens per memory,
n_full = min(top_k, memories the full conversation is projected to store). Judge calls per question J is defined
for (categories 1-4), times the full count of such questions.
Wall time at concurrency C (seconds per LM call: the sample's median per phase, or a given latency; CPU seconds
per pair and per question: this process's CPU time over the sample, every thread, so DSPy and HTTP per call, the
embedder and the store): ingestion takes the longest of (all LM seconds) / C, the longest sequential chain of a
conversation (its pairs x (decide calls per pair x latency + CPU seconds per pair)) and the CPU seconds of every
pair (one core's worth: Python holds the GIL); at C = 1 the sum of LM and CPU seconds. Answering likewise without
chains. Conversations that cannot ingest together (graph memory, the observation oracle) add up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

TOKENS = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens")


@dataclass(frozen=True)
class Step:
    """One metered LLM-stage call of the sample: its phase, conversation, pair index (None: a question's)."""

    phase: str
    conversation: str
    pair: int | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    seconds: float = 0.0


@dataclass
class ConversationCounts:
    """What the sample ran of one conversation, and what the whole run would."""

    conversation: str
    pairs: int  # message pairs of the whole conversation
    pairs_sampled: int
    folds: int = 0  # summary refreshes of the whole conversation
    folds_sampled: int = 0
    questions: int = 0
    questions_sampled: int = 0
    judged: int = 0  # questions J is defined for (categories 1-4)
    judged_sampled: int = 0
    memories_sampled: int = 0  # memories stored in the sample's scope
    retrieved_sampled: float = 0.0  # mean memories retrieved per sampled question
    context_tokens_sampled: float = 0.0  # mean rendered-context tokens per sampled question
    extra: dict = field(default_factory=dict)


def _add(into: dict, step: Step, k: float = 1.0) -> None:
    into["calls"] = into.get("calls", 0.0) + k * step.calls
    for t in TOKENS:
        into[t] = into.get(t, 0.0) + k * getattr(step, t)


def per_call(steps: Iterable[Step]) -> dict[str, dict[str, float]]:
    """Per phase: mean tokens per LM call over `steps`."""
    sums: dict[str, dict] = defaultdict(dict)
    for s in steps:
        _add(sums[s.phase], s)
    return {p: {t: v[t] / v["calls"] for t in TOKENS} for p, v in sums.items() if v.get("calls")}


def project_ingest(steps: Sequence[Step], counts: Sequence[ConversationCounts]) -> dict[str, dict[str, dict]]:
    """conversation -> phase -> {calls, prompt_tokens, completion_tokens, cached_prompt_tokens} of the whole
    ingestion (module docstring)."""
    by_conv = {c.conversation: c for c in counts}
    ingest = [s for s in steps if s.pair is not None]
    tail = [s for s in ingest if s.pair is not None and s.pair >= by_conv[s.conversation].pairs_sampled / 2]
    steady, overall = per_call(tail), per_call(ingest)
    tail_pairs = sum(c.pairs_sampled - int(c.pairs_sampled / 2 + 0.5) for c in counts)  # pairs with index >= N/2
    tail_calls: dict[str, float] = defaultdict(float)
    for s in tail:
        tail_calls[s.phase] += s.calls
    out: dict[str, dict[str, dict]] = {}
    for c in counts:
        sampled: dict[str, dict] = defaultdict(dict)
        for s in ingest:
            if s.conversation == c.conversation:
                _add(sampled[s.phase], s)
        rows = {}
        for phase in sorted({s.phase for s in ingest}):
            got = sampled.get(phase, {})
            calls = got.get("calls", 0.0)
            if c.pairs_sampled >= c.pairs:
                more = 0.0  # the sample was the whole conversation
            elif phase == "extract":
                more = calls / max(c.pairs_sampled, 1) * (c.pairs - c.pairs_sampled)
            elif phase == "summarize":
                more = (calls / c.folds_sampled if c.folds_sampled else 1.0) * (c.folds - c.folds_sampled)
            else:
                more = tail_calls[phase] / max(tail_pairs, 1) * (c.pairs - c.pairs_sampled)
            mean = steady.get(phase) or overall.get(phase) or {t: 0.0 for t in TOKENS}
            rows[phase] = {"calls": calls + more} | {t: got.get(t, 0.0) + more * mean[t] for t in TOKENS}
        out[c.conversation] = rows
    return out


def project_answers(
    steps: Sequence[Step], counts: Sequence[ConversationCounts], top_k: int | None
) -> dict[str, dict[str, dict]]:
    """conversation -> phase (answer, judge, ...) -> calls and tokens of answering (and judging) every question."""
    asked = [s for s in steps if s.pair is None]
    sampled_q = sum(c.questions_sampled for c in counts)
    sampled_j = sum(c.judged_sampled for c in counts)
    calls: dict[str, float] = defaultdict(float)
    for s in asked:
        calls[s.phase] += s.calls
    means = per_call(asked)
    out: dict[str, dict[str, dict]] = {}
    for c in counts:
        rows = {}
        for phase, mean in means.items():
            judged = phase == "judge"
            per_q = calls[phase] / max(sampled_j if judged else sampled_q, 1)
            n_calls = per_q * (c.judged if judged else c.questions)
            prompt = mean["prompt_tokens"]
            if phase == "answer" and c.retrieved_sampled > 0:
                stored = c.memories_sampled / max(c.pairs_sampled, 1) * c.pairs
                n_full = min(top_k, stored) if top_k else stored
                prompt += (n_full - c.retrieved_sampled) * c.context_tokens_sampled / c.retrieved_sampled
            rows[phase] = {
                "calls": n_calls,
                "prompt_tokens": n_calls * prompt,
                "completion_tokens": n_calls * mean["completion_tokens"],
                "cached_prompt_tokens": n_calls * mean["cached_prompt_tokens"],
            }
        out[c.conversation] = rows
    return out


def add_calls(
    answers: Mapping[str, Mapping[str, dict]], phase: str, calls: Mapping[str, float], steps: Sequence[Step]
) -> dict[str, dict[str, dict]]:
    """`answers` plus `calls[conversation]` more calls of `phase` at the sample's tokens per call of that phase
    (its question steps): the judge's canary calls (judge_checks.py), which the sample does not make."""
    mean = per_call(s for s in steps if s.pair is None and s.phase == phase).get(phase)
    out = {c: {p: dict(r) for p, r in rows.items()} for c, rows in answers.items()}
    for conversation, n in calls.items():
        if mean and n:
            row = out.setdefault(conversation, {}).setdefault(phase, {"calls": 0.0} | {t: 0.0 for t in TOKENS})
            row["calls"] += n
            for t in TOKENS:
                row[t] += n * mean[t]
    return out


def project_wall(
    ingest: Mapping[str, Mapping[str, dict]],
    answers: Mapping[str, Mapping[str, dict]],
    counts: Sequence[ConversationCounts],
    latency: Mapping[str, float],
    cpu_per_pair: float,
    cpu_per_question: float,
    concurrency: int,
    together: bool = True,
    serial_seconds: float = 0.0,
) -> dict:
    """Projected wall seconds of ingestion and answering at `concurrency` (module docstring), with the bound that
    sets each. `latency`: seconds per LM call by phase; `serial_seconds`: seconds of `answers` that run after the
    answers (the judge's canaries, at the judge's own concurrency), added at any concurrency."""

    def lm_seconds(rows: Mapping[str, dict]) -> float:
        return sum(r["calls"] * latency.get(p, 0.0) for p, r in rows.items())

    per_conv = []
    for c in counts:
        rows = ingest.get(c.conversation, {})
        decide = rows.get("decide", {}).get("calls", 0.0) / max(c.pairs, 1)
        graph = sum(r["calls"] for p, r in rows.items() if p.startswith("graph")) / max(c.pairs, 1)
        commit = decide * latency.get("decide", 0.0) + graph * max(
            (latency.get(p, 0.0) for p in rows if p.startswith("graph")), default=0.0
        )
        chain = c.pairs * (commit + cpu_per_pair)
        summary_chain = rows.get("summarize", {}).get("calls", 0.0) * latency.get("summarize", 0.0)
        per_conv.append((lm_seconds(rows), max(chain, summary_chain), c.pairs * cpu_per_pair))
    if concurrency <= 1:
        ingest_s, ingest_bound = sum(w + cpu for w, _, cpu in per_conv), "sequential"
    elif together:
        bounds = {
            "throughput": sum(w for w, _, _ in per_conv) / concurrency,
            "chain": max((ch for _, ch, _ in per_conv), default=0.0),
            "cpu": sum(cpu for _, _, cpu in per_conv),
        }
        ingest_bound = max(bounds, key=bounds.__getitem__)
        ingest_s = bounds[ingest_bound]
    else:
        ingest_s = sum(max(w / concurrency, ch, cpu) for w, ch, cpu in per_conv)
        ingest_bound = "conversations one at a time"
    answer_lm = sum(lm_seconds(rows) for rows in answers.values()) - serial_seconds
    answer_cpu = sum(c.questions for c in counts) * cpu_per_question
    if concurrency <= 1:
        answer_s, answer_bound = answer_lm + answer_cpu, "sequential"
    else:
        answer_s, answer_bound = max((answer_lm / concurrency, "throughput"), (answer_cpu, "cpu"))
    answer_s += serial_seconds
    return {
        "concurrency": concurrency,
        "ingest_seconds": round(ingest_s, 1),
        "ingest_bound": ingest_bound,
        "answer_seconds": round(answer_s, 1),
        "answer_bound": answer_bound,
        "total_seconds": round(ingest_s + answer_s, 1),
    }


def totals(projected: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, float]]:
    """Per phase, summed over conversations."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rows in projected.values():
        for phase, row in rows.items():
            for k, v in row.items():
                out[phase][k] += v
    return {p: dict(v) for p, v in out.items()}
