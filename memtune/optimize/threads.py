"""One map over a thread pool, for the LM calls the evaluation and the compiler make side by side."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def in_order(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """[fn(x) for x in items], with up to `workers` calls at once; each call runs in a copy of the caller's context
    (context vars: the cost meter, DSPy's settings), and the results keep the items' order."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda x: context.copy().run(fn, x), items))
