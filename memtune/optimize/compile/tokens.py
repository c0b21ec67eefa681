"""Tokens per example when a stage is scored on its own: prompt + completion of every LM call the example makes,
counted with the project's tokenizer (cl100k_base, optimize/evaluation/metrics.count_tokens) on the messages sent
and the text received. Counted, not billed: a call DSPy answers from its cache costs what the call would have cost,
so a compiled program cannot look cheaper because its calls were cached, and every LM counts alike."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from ..evaluation.metrics import count_tokens

_EXAMPLE: ContextVar[int | None] = ContextVar("memtune_compile_example", default=None)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    return str(value or "")


class TokenCounter(BaseCallback):
    """Counts prompt and completion tokens of LM calls per example (the `example(i)` block they run in)."""

    def __init__(self) -> None:
        self.prompt: dict[int, int] = defaultdict(int)
        self.completion: dict[int, int] = defaultdict(int)
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        index = _EXAMPLE.get()
        if index is None:
            return
        messages = inputs.get("messages") or []
        prompt = inputs.get("prompt")
        tokens = sum(count_tokens(_text(m.get("content") if isinstance(m, dict) else m)) for m in messages)
        tokens += count_tokens(prompt) if isinstance(prompt, str) else 0
        with self._lock:
            self._open[call_id] = index
            self.prompt[index] += tokens

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        with self._lock:
            index = self._open.pop(call_id, None)
        if index is None or outputs is None:
            return
        items = outputs if isinstance(outputs, list) else [outputs]
        tokens = sum(count_tokens(_text(o)) for o in items)
        with self._lock:
            self.completion[index] += tokens

    def tokens(self, index: int) -> int:
        return self.prompt.get(index, 0) + self.completion.get(index, 0)

    @contextmanager
    def example(self, index: int) -> Iterator[None]:
        token = _EXAMPLE.set(index)
        callbacks = list(dspy.settings.get("callbacks") or [])
        try:
            with dspy.context(callbacks=[*callbacks, self]):
                yield
        finally:
            _EXAMPLE.reset(token)
