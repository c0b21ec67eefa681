"""The LM tokens a policy spends, per phase and in total: summary.json `cost.tokens` (a sweep objective,
conf/sweep/llm.yaml). The judge's tokens are the evaluation's, not the policy's: they are never in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def token_totals(*costs: Mapping[str, Any]) -> dict[str, int]:
    """prompt + completion tokens per phase over `CostMeter.as_dict()` outputs (ingestion's, answering's), and
    `total`. Tokens are what the run billed: a call DSPy answered from its cache bills 0 (lm.CostMeter)."""
    out: dict[str, int] = {}
    for cost in costs:
        for phase, row in (cost.get("phases") or {}).items():
            if phase == "judge":
                continue
            out[phase] = out.get(phase, 0) + int(row.get("prompt_tokens") or 0) + int(row.get("completion_tokens") or 0)
    return dict(sorted(out.items())) | {"total": sum(out.values())}
