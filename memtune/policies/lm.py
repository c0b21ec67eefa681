"""Language models for the LLM stages: any OpenAI-compatible endpoint through `dspy.LM`, plus cost metering.

Every LLM call of a policy goes through `call_predictor`, which
- counts calls, prompt/completion tokens and wall time per phase (extract, summarize, decide, answer, judge),
- retries malformed output (DSPy's AdapterParseError and friends) with a fresh rollout that bypasses the cache,
- and, when every attempt failed, records the failure and returns None so the caller skips that item.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import dspy

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm hangs offline without it


def make_lm(
    model: str = "openai/gpt-4o-mini",  # Mem0 paper §3: gpt-4o-mini for every LLM step
    api_base: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    temperature: float = 0.0,
    max_tokens: int = 1000,
    cache: bool = True,
    num_retries: int = 3,
    timeout: float = 120.0,
) -> dspy.LM:
    """Build a `dspy.LM` for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server).

    `api_base` defaults to $OPENAI_BASE_URL; the key is read from the environment variable named by
    `api_key_env` (a local server accepts any non-empty key, so "local" is used when it is unset and
    a base URL is given).
    """
    api_base = api_base or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get(api_key_env) or ("local" if api_base else None)
    if api_key is None:
        raise ValueError(
            f"No API key for LM {model!r}: set ${api_key_env}, or point OPENAI_BASE_URL / lm.api_base "
            "at an OpenAI-compatible server (vLLM, Ollama, llama.cpp), or choose an LLM-free policy."
        )
    return dspy.LM(
        model,
        api_base=api_base,
        api_key=api_key,
        temperature=temperature,
        max_tokens=max_tokens,
        cache=cache,
        num_retries=num_retries,
        timeout=timeout,
    )


MAX_SAMPLES = 100_000  # latency samples kept per phase (and failures kept in detail) by a CostMeter


@dataclass
class PhaseCost:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    steps: int = 0
    seconds_total: float = 0.0
    # wall time of the most recent metered steps (at most MAX_SAMPLES: a long-running server must not grow without
    # bound); p50/p95 are over these, steps and seconds_total over all
    seconds: list[float] = field(default_factory=list)

    def record(self, elapsed: float) -> None:
        self.steps += 1
        self.seconds_total += elapsed
        self.seconds.append(elapsed)
        if len(self.seconds) > MAX_SAMPLES:
            del self.seconds[: len(self.seconds) - MAX_SAMPLES // 2]


@dataclass
class Failure:
    phase: str
    item: str
    error: str
    attempts: int


class CostMeter:
    """Per-phase LM usage and latency. Token counts come from the LM's own usage reports (DSPy history).
    A call answered from DSPy's cache counts in `calls` and `cached_calls` but reports 0 tokens (measured with
    dspy 3.4.1): tokens are what this run billed; report the cost of a config from a run with a cold cache."""

    def __init__(self, max_consecutive_failures: int = 20):
        self.phases: dict[str, PhaseCost] = defaultdict(PhaseCost)
        self.failures: list[Failure] = []
        self.max_consecutive_failures = max_consecutive_failures
        self._consecutive = 0

    @contextmanager
    def timed(self, phase: str):
        """Time an LLM-free step (retrieval, heuristic extraction) under `phase`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase].record(time.perf_counter() - t0)

    @contextmanager
    def lm_calls(self, phase: str, lm):
        """Count the LM calls made inside the block (read from the LM's history)."""
        history = getattr(lm, "history", [])
        marker = history[-1]["uuid"] if history else None
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            new = _entries_after(history, marker)
            cost = self.phases[phase]
            cost.record(elapsed)
            for entry in new:
                usage = entry.get("usage") or {}
                cost.calls += 1
                cost.cached_calls += int(bool(getattr(entry.get("response"), "cache_hit", False)))
                cost.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                cost.completion_tokens += int(usage.get("completion_tokens") or 0)

    def record_failure(self, phase: str, item: str, error: BaseException | None, attempts: int) -> None:
        self.phases[phase].failures += 1
        self.failures.append(Failure(phase, item, f"{type(error).__name__}: {error}"[:500], attempts))
        if len(self.failures) > MAX_SAMPLES:
            del self.failures[: len(self.failures) - MAX_SAMPLES // 2]  # the per-phase count keeps the total
        self._consecutive += 1
        if self._consecutive >= self.max_consecutive_failures:
            raise RuntimeError(
                f"{self._consecutive} LM calls in a row failed (last: {phase} on {item}: {error}). "
                "Check the LM endpoint, model name and key (lm.api_base, OPENAI_BASE_URL, OPENAI_API_KEY)."
            ) from error

    def record_success(self) -> None:
        self._consecutive = 0

    def as_dict(self) -> dict:
        """Per phase: LM calls (cached ones included, and counted apart in `cached_calls`), billed tokens,
        failures, and wall time per step (p50/p95/total seconds)."""
        phases = {}
        for name, c in sorted(self.phases.items()):
            phases[name] = {k: v for k, v in asdict(c).items() if k != "seconds"} | {
                "seconds_total": round(c.seconds_total, 4),
                "seconds_p50": round(percentile(c.seconds, 50), 5) if c.seconds else None,
                "seconds_p95": round(percentile(c.seconds, 95), 5) if c.seconds else None,
            }
        return {"phases": phases, "failures": [asdict(f) for f in self.failures]}


def percentile(values, q: float) -> float:
    """The q-th percentile (0 <= q <= 100) with linear interpolation between closest ranks (numpy's default).

    Position (q / 100) * (n - 1) in the sorted values; raises ValueError on an empty sequence.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q}: must be within [0, 100]")
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of an empty sequence")
    pos = (q / 100) * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _entries_after(history: list, marker) -> list:
    if marker is None:
        return list(history)
    for i in range(len(history) - 1, -1, -1):
        if history[i].get("uuid") == marker:
            return history[i + 1 :]
    return list(history)  # the marker was evicted: everything now in history is new


# DSPy's ChatAdapter finds field headers only on a line of their own; a small model that writes the closing
# marker on the answer's line ("Pixel [[ ## completed ## ]]", seen with Qwen2.5-1.5B) leaks it into the field.
_END_MARKER = re.compile(r"\s*\[\[\s*##\s*completed\s*##\s*\]\]\s*$")


def _strip_end_marker(result):
    """Drop a leaked trailing `[[ ## completed ## ]]` from the string outputs of a prediction."""
    for name, value in list(result.items()):
        if isinstance(value, str) and _END_MARKER.search(value):
            result[name] = _END_MARKER.sub("", value)
    return result


def call_predictor(predictor, meter: CostMeter, phase: str, item: str, retries: int = 2, **inputs):
    """Run a DSPy predictor; retry malformed output; on final failure record it and return None."""
    lm = dspy.settings.lm
    if lm is None:
        raise ValueError(f"The {phase} stage is an LLM stage but no LM is configured: set lm=openai (see conf/lm/).")
    error: BaseException | None = None
    for attempt in range(retries + 1):
        # A retry must not hit DSPy's cache of the bad answer: a new rollout_id bypasses it.
        config = {} if attempt == 0 else {"rollout_id": attempt, "temperature": 1.0}
        try:
            with meter.lm_calls(phase, lm):
                result = predictor(**inputs, config=config)
            meter.record_success()
            return _strip_end_marker(result)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # malformed output, schema violations, transient endpoint errors
            error = exc
    meter.record_failure(phase, item, error, retries + 1)
    return None
