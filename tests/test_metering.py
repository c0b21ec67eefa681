"""The cost meter fed by DSPy callbacks (policies/metering.py): each LM call counts for the LLM stage module running
it (nested stages under their own phase), billed tokens and cache hits come from DSPy's own accounting, and phases
stay apart between threads. No network: DummyLM with scripted token counts and an in-memory DSPy cache."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import dspy
import pytest
from dspy.clients.cache import Cache
from dspy.lm15 import Usage
from dspy.utils.dummies import DummyLM

from memtune.policies.lm import CostMeter
from memtune.policies.metering import metering, timed
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.summarize import LLMSummarizer


class TokenLM(DummyLM):
    """DummyLM whose replies report 11 prompt and 3 completion tokens (after `delay` seconds); `cache=True` lets DSPy
    answer a repeated request from its cache, as it does for a real LM."""

    def __init__(self, answers, cache: bool = False, delay: float = 0.0):
        super().__init__(answers)
        self._cache_responses = cache
        engine = self._engine_spec
        reply = engine._complete_messages

        def with_usage(messages):
            time.sleep(delay)
            usage = Usage(input_tokens=11, output_tokens=3, total_tokens=14)
            return dataclasses.replace(reply(messages), usage=usage)

        engine._complete_messages = with_usage


FACTS = {"facts": json.dumps([{"fact": "Ann moved to Oslo", "sources": [1]}])}
SUMMARY = {"summary": "Ann moved."}


def counts(meter: CostMeter) -> dict:
    return {
        name: (p["calls"], p["cached_calls"], p["prompt_tokens"], p["completion_tokens"], p["steps"])
        for name, p in meter.as_dict()["phases"].items()
    }


class Outer(dspy.Module):
    """A stage that makes its own LM call and runs another stage inside."""

    phase = "outer"

    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict("question -> answer")
        self.extractor = LLMExtractor()

    def forward(self, question: str) -> dspy.Prediction:
        first = self.predict(question=question)
        facts = self.extractor(new_messages=["[1 May] Ann: I moved to Oslo."]).facts
        return dspy.Prediction(answer=first.answer, facts=facts)


def test_each_lm_call_counts_for_the_innermost_stage_running_it():
    meter = CostMeter()
    with dspy.context(lm=TokenLM([{"answer": "x"}, FACTS, {"answer": "y"}])), metering(meter):
        Outer()(question="q")
        dspy.Predict("question -> answer")(question="not a stage")  # no phase: not metered
    assert counts(meter) == {"outer": (1, 0, 11, 3, 1), "extract": (1, 0, 11, 3, 1)}


def test_cache_hits_count_as_calls_and_bill_no_tokens(monkeypatch):
    monkeypatch.setattr(dspy, "cache", Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None))
    meter, extractor = CostMeter(), LLMExtractor()
    with dspy.context(lm=TokenLM([FACTS], cache=True)), metering(meter):
        first = extractor(new_messages=["[1 May] Ann: I moved to Oslo."])
        again = extractor(new_messages=["[1 May] Ann: I moved to Oslo."])  # the same request: DSPy's cache answers
    assert first.facts == again.facts == [{"text": "Ann moved to Oslo", "sources": [1]}]
    assert counts(meter) == {"extract": (2, 1, 11, 3, 2)}


def test_dspy_track_usage_still_sees_the_stage_calls():
    with dspy.context(lm=TokenLM([FACTS])), metering(CostMeter()), dspy.track_usage() as usage:
        LLMExtractor()(new_messages=["[1 May] Ann: I moved to Oslo."])
    assert usage.get_total_tokens()["dummy"]["prompt_tokens"] == 11


def test_no_meter_no_metering_and_the_stage_still_runs():
    with dspy.context(lm=TokenLM([FACTS])):
        assert LLMExtractor()(new_messages=["[1 May] Ann: I moved to Oslo."]).facts
        with timed("retrieve"):  # an LLM-free step outside any metered block: nothing to record into
            pass


def test_threads_meter_into_their_own_meters_and_a_shared_one_adds_up():
    """Two threads run different stages at once (interleaved by a slow LM): each thread's calls land in its own
    meter under its own phase, and a meter shared by both threads counts every call exactly once."""
    n, start = 6, threading.Barrier(2)
    own = {"extract": CostMeter(), "summarize": CostMeter()}
    shared = CostMeter()
    errors: list[BaseException] = []

    def work(phase: str) -> None:
        try:
            stage, reply = (LLMExtractor(), FACTS) if phase == "extract" else (LLMSummarizer(), SUMMARY)
            inputs = (
                {"new_messages": ["[1 May] Ann: hi"]}
                if phase == "extract"
                else {"previous_summary": "", "new_messages": ["a"]}
            )
            start.wait()
            with dspy.context(lm=TokenLM([reply] * n, delay=0.01)):
                for i in range(n):
                    with metering(own[phase] if i % 2 == 0 else shared):
                        stage(**inputs)
        except BaseException as exc:  # surfaced below: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in own]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    half = (n // 2, 0, 11 * n // 2, 3 * n // 2, n // 2)
    assert counts(own["extract"]) == {"extract": half} and counts(own["summarize"]) == {"summarize": half}
    assert counts(shared) == {"extract": half, "summarize": half}


def test_meter_survives_a_deep_copy():
    import copy

    meter = CostMeter()
    with meter.timed("x"):
        pass
    clone = copy.deepcopy(meter)
    with clone.timed("x"):
        pass
    assert meter.phases["x"].steps == 1 and clone.phases["x"].steps == 2


@pytest.mark.parametrize("consecutive", [3])
def test_consecutive_failures_stop_across_stages(consecutive):
    meter = CostMeter(max_consecutive_failures=consecutive)
    extractor = LLMExtractor(retries=0)
    with dspy.context(lm=TokenLM([{"facts": "garbage"}] * 10)), metering(meter):
        for _ in range(consecutive - 1):
            assert extractor.extract([], [], "") == []
        with pytest.raises(RuntimeError, match="3 LM calls in a row failed"):
            extractor.extract([], [], "")


def test_a_cache_hit_still_costs_the_config_what_it_would_bill(monkeypatch):
    """DSPy clears a cached response's usage; a sweep minimising tokens or dollars must not find a config cheaper
    because a trial before it asked the same prompts. The hit bills 0 (`spent`) but counts in `total` at its counted
    tokens (replayed_*), close to what the first call billed."""
    from memtune.optimize.evaluation.prices import Price, billed_tokens, usd_section

    monkeypatch.setattr(dspy, "cache", Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None))
    cold, warm = CostMeter(), CostMeter()
    with dspy.context(lm=TokenLM([FACTS], cache=True)):
        with metering(cold):
            LLMExtractor()(new_messages=["[1 May] Ann: I moved to Oslo."])
        with metering(warm):  # the same config again: every call a cache hit
            LLMExtractor()(new_messages=["[1 May] Ann: I moved to Oslo."])
    first, hit = cold.as_dict()["phases"]["extract"], warm.as_dict()["phases"]["extract"]
    assert (first["replayed_prompt_tokens"], first["replayed_completion_tokens"]) == (0, 0)
    assert (hit["prompt_tokens"], hit["cached_calls"]) == (0, 1)
    assert hit["replayed_prompt_tokens"] > 50 and hit["replayed_completion_tokens"] > 0  # the real prompt, counted
    cost = {"ingest": warm.as_dict()}
    assert billed_tokens(cost) == 0 and billed_tokens(cost, replayed=True) > 50
    usd = usd_section(cost, "m", None, {"m": Price(1.0, 2.0)})
    assert usd["spent"] == 0.0 and usd["total"] > 0 and usd["extract"] == usd["total"]


def test_a_sweep_trial_merging_conversations_keeps_the_cache_hits_tokens():
    """The sweep adds up its conversations' ingestion rows (merge_ingest): every cost field the meter writes, the
    cache hits' counted tokens included, or a trial whose ingestion DSPy's cache answered would look free."""
    from memtune.optimize.sweep.scoring import _merge_phases

    meter = CostMeter()
    meter.record_lm_step("extract", 0.1, 2, 1, 11, 3, 0, (120, 9))
    row = meter.as_dict()["phases"]["extract"]
    merged = _merge_phases([{"cost": {"phases": {"extract": row}}}] * 2)["extract"]
    assert (merged["replayed_prompt_tokens"], merged["replayed_completion_tokens"]) == (240, 18)
    assert (merged["prompt_tokens"], merged["calls"], merged["cached_calls"]) == (22, 4, 2)
