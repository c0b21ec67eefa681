"""The rendered context: THE text an answerer reads for its retrieved memories (best first), in one of the styles
of the answer stage's `render` knob.

    json        [{"said_at": "1:56 pm on 8 May, 2023", "memory": "Caroline: ..."}, ...]   (Mem0's answer prompt)
    lines       [1:56 pm on 8 May, 2023] Caroline: ...        one memory a line, the stored time as it is
    lines_date  [8 May 2023] Caroline: ...                     one memory a line, the day only: the time of day is
                                                               dropped (LOCOMO asks no time-of-day question; a
                                                               timestamp with no readable date is kept whole)

A graph triplet (Mem0g) also says when it held: `valid_from` and `invalid_since` (JSON keys, or "(valid from X;
invalid since Y)" after the line). Every style keeps every memory's text whole and its time.

One definition for every use: the LLM answerer's `memories` input (exactly this string), the evaluation's
`context_tokens`, and the budget walk of `recall_ctx_<B>` (tokens of `render_context` of each leading prefix). Keep
it that way: a budget counted on anything else stops being a budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial

from ..types import MemoryRecord
from .dates import day_text, parse_when

RENDER_STYLES = ("json", "lines", "lines_date")


def check_style(style: str) -> str:
    if style not in RENDER_STYLES:
        raise ValueError(f"answerer.render must be one of {RENDER_STYLES}, got {style!r}")
    return style


def memory_context(memories: Sequence[MemoryRecord]) -> list[dict]:
    """The items the answerer is shown: each memory with the time it was said; a graph triplet (Mem0g) also with
    when it held: valid_from, and invalid_since when a later triplet superseded it. A superseded vector memory
    (soft invalidation, retrieved with include_history) also says since when it no longer holds: invalid_since
    (its valid_from is its said_at, so a memory that still holds costs no extra tokens)."""
    return [_graph_context(m) if m.metadata.get("kind") == "graph" else _vector_context(m) for m in memories]


def _vector_context(m: MemoryRecord) -> dict:
    item = {"said_at": m.timestamp, "memory": m.text}
    if m.invalid_at:
        item["invalid_since"] = m.invalid_at
    return item


def render_context(memories: Sequence[MemoryRecord], style: str = "json") -> str:
    """THE text the answerer reads for `memories` (best first): their `memory_context` items in `style`."""
    return render_items(memory_context(memories), style)


def render_items(items: Sequence[dict], style: str = "json") -> str:
    """`memory_context` items as the answerer reads them (see `render_context`)."""
    if check_style(style) == "json":
        return json.dumps(list(items), ensure_ascii=False)
    return "\n".join(_line(item, style == "lines_date") for item in items)


def context_renderer(answerer: object) -> Callable[[Sequence[MemoryRecord]], str]:
    """`render_context` in the style of `answerer`'s `render` knob (json for an answerer without one)."""
    style = getattr(getattr(answerer, "knobs", None), "render", "json")
    return partial(render_context, style=check_style(style))


def _when(said_at: str, date_only: bool) -> str:
    if date_only:
        day = parse_when(said_at)
        if day is not None:
            return day_text(day)
    return said_at


def _line(item: dict, date_only: bool) -> str:
    line = f"[{_when(item.get('said_at') or '', date_only)}] {item['memory']}"
    held = [f"valid from {_when(item['valid_from'], date_only)}"] if item.get("valid_from") else []
    if item.get("invalid_since"):
        held.append(f"invalid since {_when(item['invalid_since'], date_only)}")
    return f"{line} ({'; '.join(held)})" if held else line


def _graph_context(m: MemoryRecord) -> dict:
    meta = m.metadata
    item = {
        "said_at": m.timestamp,
        "memory": f"{meta['source']} -- {meta['relation']} -- {meta['destination']}",
        "valid_from": meta.get("valid_from", ""),
    }
    if meta.get("invalidated_at"):
        item["invalid_since"] = meta["invalidated_at"]
    return item
