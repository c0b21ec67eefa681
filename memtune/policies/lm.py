"""Language models for the LLM stages: any OpenAI-compatible endpoint through `dspy.LM`; the cost store; retries.

- `CostMeter` holds per-phase LM calls, billed tokens, wall time per step and failures (thread-safe). Stages never
  receive it: policies/metering.py fills it (a DSPy callback attributes each LM call to the LLM stage running it).
- `predict_with_retries` is how an LLM stage's forward() runs its predictor: malformed output (DSPy's
  AdapterParseError and friends) is retried with a fresh rollout that bypasses the cache, and after the last
  attempt `LMStageError` is raised; the stage's policy-facing method records it and skips the item
  (metering.run_stage).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

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
    max_concurrency: int = 8,
) -> dspy.LM:
    """Build a `dspy.LM` for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server).

    `api_base` defaults to $OPENAI_BASE_URL; the key is read from the environment variable named by
    `api_key_env` (a local server accepts any non-empty key, so "local" is used when it is unset and
    a base URL is given). `max_concurrency` is not a property of the LM: the evaluation reads it from the same
    config node (how many calls it keeps in flight, optimize/evaluation/parallel.py); it is checked here.
    """
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
        raise ValueError(f"lm.max_concurrency must be an integer >= 1, got {max_concurrency!r}")
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
    cached_prompt_tokens: int = 0  # of prompt_tokens, served from the provider's prompt cache (a cheaper price)
    # tokens of the calls DSPy answered from its own cache (counted, metering.replayed_usage): not paid by this run,
    # but part of what the config costs
    replayed_prompt_tokens: int = 0
    replayed_completion_tokens: int = 0
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
    """Per-phase LM usage and latency, and the failures of LLM stages. Safe to share between threads.

    A step is one metered call: of an LLM-free stage (`timed`), or of an LLM stage module, its retries included
    (`record_lm_step`, called by metering.PhaseMeter). Token counts are the LM's own usage reports for the calls
    DSPy did not answer from its cache: a cached call counts in `calls` and `cached_calls` and bills 0 tokens, so
    tokens are what this run billed; what the cached calls would bill is kept apart (`replayed_*_tokens`), so the
    cost of a config does not depend on what ran before it."""

    def __init__(self, max_consecutive_failures: int = 20):
        self.phases: dict[str, PhaseCost] = defaultdict(PhaseCost)
        self.failures: list[Failure] = []
        self.max_consecutive_failures = max_consecutive_failures
        self._consecutive = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # copy.deepcopy (e.g. of a dspy.Module holding a meter) and pickle: no lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @contextmanager
    def timed(self, phase: str):
        """Time an LLM-free step (retrieval, heuristic extraction) under `phase`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            with self._lock:
                self.phases[phase].record(elapsed)

    def record_lm_step(
        self,
        phase: str,
        elapsed: float,
        calls: int,
        cached_calls: int,
        prompt_tokens: int,
        completion_tokens: int,
        cached_prompt_tokens: int = 0,
        replayed: tuple[int, int] = (0, 0),
    ) -> None:
        """One call of an LLM stage: its wall time and the LM calls made inside it; `replayed`: the (prompt,
        completion) tokens its calls answered from DSPy's cache would have billed."""
        with self._lock:
            cost = self.phases[phase]
            cost.record(elapsed)
            cost.calls += calls
            cost.cached_calls += cached_calls
            cost.prompt_tokens += prompt_tokens
            cost.completion_tokens += completion_tokens
            cost.cached_prompt_tokens += cached_prompt_tokens
            cost.replayed_prompt_tokens += replayed[0]
            cost.replayed_completion_tokens += replayed[1]

    def count_failure(self, phase: str, item: str, error: BaseException | None, attempts: int) -> None:
        """Record a failure that falls back to a safe result and never stops a run (a reranker's)."""
        with self._lock:
            self._count_failure(phase, item, error, attempts)

    def _count_failure(self, phase: str, item: str, error: BaseException | None, attempts: int) -> None:
        self.phases[phase].failures += 1
        self.failures.append(Failure(phase, item, f"{type(error).__name__}: {error}"[:500], attempts))
        if len(self.failures) > MAX_SAMPLES:
            del self.failures[: len(self.failures) - MAX_SAMPLES // 2]  # the per-phase count keeps the total

    def record_failure(self, phase: str, item: str, error: BaseException | None, attempts: int) -> None:
        """Record an LM stage's failure; too many in a row stop the run (the endpoint is likely broken)."""
        with self._lock:
            self._count_failure(phase, item, error, attempts)
            self._consecutive += 1
            stop = self._consecutive >= self.max_consecutive_failures
            consecutive = self._consecutive
        if stop:
            raise RuntimeError(
                f"{consecutive} LM calls in a row failed (last: {phase} on {item}: {error}). "
                "Check the LM endpoint, model name and key (lm.api_base, OPENAI_BASE_URL, OPENAI_API_KEY)."
            ) from error

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0

    def as_dict(self) -> dict:
        """Per phase: LM calls (cached ones included, and counted apart in `cached_calls`), billed tokens,
        failures, and wall time per step (p50/p95/total seconds)."""
        phases = {}
        with self._lock:
            for name, c in sorted(self.phases.items()):
                phases[name] = {k: v for k, v in asdict(c).items() if k != "seconds"} | {
                    "seconds_total": round(c.seconds_total, 4),
                    "seconds_p50": round(percentile(c.seconds, 50), 5) if c.seconds else None,
                    "seconds_p95": round(percentile(c.seconds, 95), 5) if c.seconds else None,
                }
            failures = [asdict(f) for f in self.failures]
        return {"phases": phases, "failures": failures}


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


# DSPy's ChatAdapter finds field headers only on a line of their own; a small model that writes the closing
# marker on the answer's line ("Pixel [[ ## completed ## ]]", seen with Qwen2.5-1.5B) leaks it into the field.
_END_MARKER = re.compile(r"\s*\[\[\s*##\s*completed\s*##\s*\]\]\s*$")


def _strip_end_marker(result):
    """Drop a leaked trailing `[[ ## completed ## ]]` from the string outputs of a prediction."""
    for name, value in list(result.items()):
        if isinstance(value, str) and _END_MARKER.search(value):
            result[name] = _END_MARKER.sub("", value)
    return result


class LMStageError(RuntimeError):
    """An LLM stage got no usable answer from its LM after every attempt (`__cause__`: the last error)."""

    def __init__(self, phase: str, attempts: int, error: BaseException):
        super().__init__(
            f"{phase}: no usable LM answer after {attempts} attempt(s); last error {type(error).__name__}: "
            f"{str(error)[:300]}"
        )
        self.phase, self.attempts, self.error = phase, attempts, error


def predict_with_retries(predictor: Any, phase: str, retries: int = 2, **inputs: Any) -> dspy.Prediction:
    """Run a DSPy predictor; retry malformed output (and failed requests) `retries` times, each with a fresh rollout
    at temperature 1.0 so DSPy's cache does not return the bad answer again; raise `LMStageError` after the last."""
    if dspy.settings.lm is None and getattr(predictor, "lm", None) is None:
        raise ValueError(f"The {phase} stage is an LLM stage but no LM is configured: set lm=openai (see conf/lm/).")
    error: BaseException | None = None
    for attempt in range(retries + 1):
        # A retry must not hit DSPy's cache of the bad answer: a new rollout_id bypasses it.
        config = {} if attempt == 0 else {"rollout_id": attempt, "temperature": 1.0}
        try:
            return _strip_end_marker(predictor(**inputs, config=config))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # malformed output, schema violations, transient endpoint errors
            error = exc
    assert error is not None
    raise LMStageError(phase, retries + 1, error) from error
