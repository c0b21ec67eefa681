"""Metering without passing a meter around: the active `CostMeter` is context state, and a DSPy callback attributes
every LM call to the LLM stage that makes it.

* `metering(meter)`: the block's stage calls are metered into `meter` (MemoryPolicy.add / search / answer and the
  judge enter it). It sets the meter in a contextvar and installs `PHASE_METER` among DSPy's callbacks for the
  block; both are per thread (per context), so scopes run in parallel threads meter into their own meters or
  into one shared meter (CostMeter is locked), never into each other's phases.
* `timed(phase)`: an LLM-free step records its wall time under `phase` in the active meter (no meter: nothing).
* `PhaseMeter`: a `dspy.utils.callback.BaseCallback`. When a module with a `phase` name (every LLM stage class)
  starts, it opens a run for that phase; each LM call that ends inside it counts for the innermost open run, so
  a stage nested in another meters under its own phase. Billed tokens come from DSPy's usage tracker, which DSPy
  feeds exactly for the calls it did not answer from its cache: the run installs its own tracker (a call that
  ends without reaching it was a cache hit), and hands every usage on to the user's tracker (`dspy.track_usage`).
  When the module ends, the run becomes one step of its phase (wall time of the whole call, retries included).
* `run_stage(stage, item, **inputs)`: how a stage's policy-facing method calls its own module: `stage(**inputs)`
  (so callbacks, traces and optimisers see the call), and an `LMStageError` (no usable answer after the retries)
  is recorded as a failure of the stage's phase on `item` and returns None, so the caller skips the item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import UsageTracker

from .lm import CostMeter, LMStageError

log = logging.getLogger(__name__)

_METER: ContextVar[CostMeter | None] = ContextVar("memtune_meter", default=None)


def active_meter() -> CostMeter | None:
    return _METER.get()


@contextmanager
def metering(meter: CostMeter) -> Iterator[CostMeter]:
    """Meter the stage calls of this block (this thread / context only) into `meter`."""
    token = _METER.set(meter)
    callbacks = list(dspy.settings.get("callbacks") or [])
    try:
        if any(isinstance(c, PhaseMeter) for c in callbacks):
            yield meter
        else:
            with dspy.context(callbacks=[*callbacks, PHASE_METER]):
                yield meter
    finally:
        _METER.reset(token)


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Time an LLM-free step under `phase` in the active meter."""
    meter = _METER.get()
    if meter is None:
        yield
        return
    with meter.timed(phase):
        yield


@dataclass
class _Run:
    """One open call of an LLM stage module."""

    call_id: str
    phase: str
    meter: CostMeter
    started: float
    settings: AbstractContextManager[Any] | None = None
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, those the provider served from its prompt cache (cheaper)
    replayed_prompt_tokens: int = 0  # cache hits: the tokens they would bill (replayed_usage), not paid by this run
    replayed_completion_tokens: int = 0
    billed: set[str] = field(default_factory=set)  # LM call ids that reached the usage tracker (not cache hits)
    requests: dict[str, tuple[str, Any]] = field(default_factory=dict)  # open LM call id -> (model, messages)
    lm_calls: list[str] = field(default_factory=list)  # LM calls started and not yet ended (innermost last)


_RUNS: ContextVar[tuple[_Run, ...]] = ContextVar("memtune_stage_runs", default=())


class _RunUsage(UsageTracker):
    """DSPy's usage tracker for one run: DSPy calls `add_usage` once per LM call it did not serve from its cache."""

    def __init__(self, run: _Run, outer: UsageTracker | None):
        super().__init__()
        self.run, self.outer = run, outer

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        run = self.run
        if run.lm_calls:
            run.billed.add(run.lm_calls[-1])
        run.prompt_tokens += int(usage_entry.get("prompt_tokens") or 0)
        run.completion_tokens += int(usage_entry.get("completion_tokens") or 0)
        run.cached_prompt_tokens += _cached_tokens(usage_entry.get("prompt_tokens_details"))
        super().add_usage(lm, usage_entry)
        if self.outer is not None:
            self.outer.add_usage(lm, usage_entry)


def _cached_tokens(details: Any) -> int:
    """OpenAI's usage.prompt_tokens_details.cached_tokens (a dict, or a pydantic object from the client), else 0."""
    value = details.get("cached_tokens") if isinstance(details, dict) else getattr(details, "cached_tokens", None)
    return int(value or 0)


class PhaseMeter(BaseCallback):
    """Attributes LM calls, billed tokens and wall time to the phase of the LLM stage module running them."""

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        phase, meter = getattr(instance, "phase", None), _METER.get()
        if not isinstance(phase, str) or meter is None:
            return
        run = _Run(call_id, phase, meter, time.perf_counter())
        outer = dspy.settings.usage_tracker  # a user's tracker (dspy.track_usage), never an enclosing run's own
        outer = outer.outer if isinstance(outer, _RunUsage) else outer
        run.settings = dspy.context(usage_tracker=_RunUsage(run, outer))
        run.settings.__enter__()  # left in on_module_end: DSPy calls both in this thread and context
        _RUNS.set((*_RUNS.get(), run))

    def on_module_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        runs = _RUNS.get()
        if not runs or runs[-1].call_id != call_id:
            return
        run = runs[-1]
        _RUNS.set(runs[:-1])
        if run.settings is not None:
            run.settings.__exit__(None, None, None)
        run.meter.record_lm_step(
            run.phase,
            time.perf_counter() - run.started,
            run.calls,
            run.cached_calls,
            run.prompt_tokens,
            run.completion_tokens,
            run.cached_prompt_tokens,
            (run.replayed_prompt_tokens, run.replayed_completion_tokens),
        )

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        runs = _RUNS.get()
        if runs:
            runs[-1].lm_calls.append(call_id)
            messages = inputs.get("messages") or [{"role": "user", "content": str(inputs.get("prompt") or "")}]
            runs[-1].requests[call_id] = (str(getattr(instance, "model", "")), messages)

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        runs = _RUNS.get()
        if not runs or call_id not in runs[-1].lm_calls:
            return
        run = runs[-1]
        run.lm_calls.remove(call_id)
        model, messages = run.requests.pop(call_id, ("", []))
        if exception is None:  # a call that raised left no answer (and no history entry): not a call made
            run.calls += 1
            if call_id not in run.billed:  # answered from DSPy's cache: what it would bill, for the config's cost
                run.cached_calls += 1
                prompt, completion = replayed_usage(model, messages, outputs)
                run.replayed_prompt_tokens += prompt
                run.replayed_completion_tokens += completion
        run.billed.discard(call_id)


PHASE_METER = PhaseMeter()


def replayed_usage(model: str, messages: Any, outputs: Any) -> tuple[int, int]:
    """(prompt, completion) tokens a call answered from DSPy's cache would bill, counted by litellm's token counter
    (the model's tokenizer where litellm knows it, else cl100k): DSPy clears a cached response's usage, and a config
    must not look cheaper because a trial before it asked the same prompts. Falls back to 4 characters a token."""
    import litellm

    texts = [o.get("text", "") if isinstance(o, dict) else str(o) for o in outputs or []]
    try:
        prompt = int(litellm.token_counter(model=model or "gpt-4o-mini", messages=messages))
        completion = sum(int(litellm.token_counter(model=model or "gpt-4o-mini", text=t)) for t in texts)
    except Exception:  # a tokenizer that cannot load offline
        prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        completion = sum(len(t) for t in texts) // 4
    return prompt, completion


def run_stage(stage: Any, item: str, **inputs: Any) -> dspy.Prediction | None:
    """`stage(**inputs)`; on `LMStageError` record the failure of `stage.phase` on `item` and return None."""
    meter = _METER.get()
    try:
        prediction = stage(**inputs)
    except LMStageError as exc:
        if meter is None:
            log.warning("%s failed on %s and no meter records it: %s", stage.phase, item, exc)
        else:
            meter.record_failure(stage.phase, item, exc.error, exc.attempts)  # raises after too many in a row
        return None
    if meter is not None:
        meter.record_success()
    return prediction
