"""Dollars from billed tokens: the price table (conf/lm/prices.yaml) and `cost.usd` of summary.json.

`cost.usd` holds the dollars of every LM phase (extract, summarize, decide, graph_*, answer, judge), their sum
`total`, the ingestion phases' sum `ingest`, and `spent`: what this run paid (an ingestion reused from the
ingestion cache was paid by the run that made it, so it is in `total`, the config's cost, but not in `spent`).
Tokens are the billed ones the cost meter recorded; an LM call answered from DSPy's cache bills 0 in `spent` but counts
in `total` and the phases at what it would bill (`replayed_*_tokens`, metering.replayed_usage), so a config does not
look cheaper because a trial before it asked the same prompts. Prompt tokens served from the provider's prompt cache
cost `cached_input`.

A phase that billed tokens on a model with no price gets null dollars, and so do `total` and every sum over it, with
a `MissingPriceWarning` naming the model and the file to edit: a sweep must never see an unpriced model as free.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "conf" / "lm" / "prices.yaml"
INGEST_PHASES = ("extract", "summarize", "decide")  # + graph_* (Mem0g's LLM stages, run at ingestion)
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class MissingPriceWarning(UserWarning):
    """An LM billed tokens but prices.yaml has no price for it: its dollars are null."""


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    cached_input: float | None = None  # USD per 1M prompt tokens served from the provider's prompt cache

    def usd(self, prompt: int, completion: int, cached: int = 0) -> float:
        cached = min(max(cached, 0), prompt)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_price + completion * self.output) / 1e6


def load_prices(path: str | Path | None = None) -> dict[str, Price]:
    """The price table: model name -> Price. A malformed entry fails loudly, naming it."""
    path = Path(path) if path else DEFAULT_PRICES
    data = yaml.safe_load(path.read_text()) or {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError(f"{path}: expected a `models:` mapping of model name -> {{input, output[, cached_input]}}")
    out = {}
    for name, row in models.items():
        try:
            extra = set(row) - {"input", "output", "cached_input"}
            if extra:
                raise ValueError(f"unknown keys {sorted(extra)}")
            price = Price(float(row["input"]), float(row["output"]), _maybe_float(row.get("cached_input")))
        except (TypeError, KeyError, ValueError) as err:
            raise ValueError(
                f"{path}: price of {name!r} must be {{input: USD/1M, output: USD/1M[, cached_input: USD/1M]}} ({err})"
            ) from None
        if min(price.input, price.output, price.cached_input or 0.0) < 0:
            raise ValueError(f"{path}: price of {name!r} is negative")
        out[str(name)] = price
    return out


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def price_for(model: str | None, prices: Mapping[str, Price]) -> Price | None:
    """The price of `model` ("openai/gpt-4o-mini", "gpt-4o-mini-2024-07-18", ...), or None when unlisted."""
    if not model:
        return None
    name = str(model).split("/", 1)[-1]
    for key in (name, _SNAPSHOT.sub("", name)):
        if key in prices:
            return prices[key]
    return None


def phase_usd(row: Mapping[str, Any], price: Price | None, *, billed_only: bool = False) -> float | None:
    """Dollars of one phase's cost row (cost.*.phases.<phase>): what the config costs, its calls answered from
    DSPy's cache included at what they would bill (billed_only: what this run paid); None when it has tokens at an
    unknown price."""
    prompt, completion = int(row.get("prompt_tokens") or 0), int(row.get("completion_tokens") or 0)
    cached = int(row.get("cached_prompt_tokens") or 0)
    if not billed_only:
        prompt += int(row.get("replayed_prompt_tokens") or 0)
        completion += int(row.get("replayed_completion_tokens") or 0)
    if prompt + completion == 0:
        return 0.0
    if price is None:
        return None
    return price.usd(prompt, completion, cached)


def _sum(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 6)


def usd_section(
    cost: Mapping[str, Any],
    lm_model: str | None,
    judge_model: str | None,
    prices: Mapping[str, Price],
    ingest_this_run: Mapping[str, Any] | None = None,
) -> dict:
    """summary.json `cost.usd` from its `cost` section (ingest / answer / judge meters). `ingest_this_run`: the
    ingestion phases this run billed (None: all of `cost.ingest`; {} when every ingestion came from the cache)."""
    lm_price, judge_price = price_for(lm_model, prices), price_for(judge_model, prices)
    out: dict[str, Any] = {}
    parts = (("ingest", lm_price), ("answer", lm_price), ("judge", judge_price))
    by_part: dict[str, dict[str, float | None]] = {}
    for part, price in parts:
        phases = ((cost.get(part) or {}).get("phases") or {}).items()
        by_part[part] = {name: phase_usd(row, price) for name, row in phases if row.get("calls")}
        for name, usd in by_part[part].items():
            out[name] = _sum([out.get(name, 0.0), usd])  # a phase name shared by two parts adds up
    out["total"] = _sum(v for usd in by_part.values() for v in usd.values())
    out["ingest"] = _sum(by_part["ingest"].values())
    paid = _phases_usd(cost.get("ingest") or {} if ingest_this_run is None else ingest_this_run, lm_price)
    answered = [_phases_usd(cost.get(part) or {}, price) for part, price in parts[1:]]
    out["spent"] = _sum([*paid.values(), *(v for usd in answered for v in usd.values())])
    models = {"ingest": lm_model, "answer": lm_model, "judge": judge_model}
    missing = sorted({str(models[part]) for part, usd in by_part.items() if any(v is None for v in usd.values())})
    for model in missing:
        warn_missing(model)
    out["missing_prices"] = missing
    out["models"] = {"policy": lm_model, "judge": judge_model}
    return out


def warn_missing(model: str) -> None:
    warnings.warn(
        f"no price for LM {model!r}: its dollars are null (summary.json cost.usd, dry_run.json). Add it to "
        f"{DEFAULT_PRICES} (USD per 1M input/output tokens; 0 for a local model) or pass prices=<file>.",
        MissingPriceWarning,
        stacklevel=3,
    )


def _phases_usd(phases: Mapping[str, Any], price: Price | None) -> dict[str, float | None]:
    """What a meter's phases billed (this run's payment: calls answered from DSPy's cache are free)."""
    rows = (phases.get("phases") or {}).items()
    return {name: phase_usd(row, price, billed_only=True) for name, row in rows if row.get("calls")}


def billed_tokens(cost: Mapping[str, Any], parts=("ingest", "answer", "judge"), *, replayed: bool = False) -> int:
    """Prompt + completion tokens billed over the meters of `cost` (summary.json `cost`); with `replayed`, those
    its calls answered from DSPy's cache would bill too (the config's tokens, whatever ran before it)."""
    return sum(_tokens((cost.get(part) or {}).get("phases") or {}, replayed) for part in parts)


def _tokens(phases: Mapping[str, Any], replayed: bool = False) -> int:
    keys: tuple[str, ...] = ("prompt_tokens", "completion_tokens")
    if replayed:
        keys += ("replayed_prompt_tokens", "replayed_completion_tokens")
    return sum(int(r.get(k) or 0) for r in phases.values() for k in keys)


def add_judges(cost: dict[str, Any], judges: Mapping[str, Mapping[str, Any]], prices: Mapping[str, Price]) -> None:
    """Price the extra judges (`judges=`: their labels of the run's answers and their canaries) into a summary's
    `cost`, after cost_figures: `cost.usd.judges` their dollars, added to `total` and `spent` (a run pays for every
    judge it asks), and their tokens to `cost.tokens`. `judges`: name -> {model, cost: the judge's meter}. An
    unpriced judge model nulls its dollars and the sums over them, with a MissingPriceWarning."""
    if not judges:
        return
    usd, tokens = cost["usd"], cost["tokens"]
    total, spent = [], []
    for judge in judges.values():
        price = price_for(judge.get("model"), prices)
        phases = (judge.get("cost") or {}).get("phases") or {}
        rows = [row for row in phases.values() if row.get("calls")]
        total.append(_sum(phase_usd(row, price) for row in rows))
        spent.append(_sum(phase_usd(row, price, billed_only=True) for row in rows))
        tokens["total"] += _tokens(phases, replayed=True)
        tokens["spent"] += _tokens(phases)
        if total[-1] is None and str(judge.get("model")) not in usd["missing_prices"]:
            warn_missing(str(judge.get("model")))
            usd["missing_prices"] = sorted([*usd["missing_prices"], str(judge.get("model"))])
    usd["judges"] = _sum(total)
    usd["total"] = _sum([usd["total"], usd["judges"]])
    usd["spent"] = _sum([usd["spent"], _sum(spent)])
    usd["models"]["judges"] = {name: judge.get("model") for name, judge in judges.items()}


def cost_figures(cfg: Any, ingested: Mapping[str, Any], cost: Mapping[str, Any], judge_model: str | None) -> dict:
    """summary.json `cost.usd` and `cost.tokens` ({total, spent}) of a run: `ingested` are its ingestion facts
    (memtune-eval's, or the sweep's merged ones with `cost_this_run`), `cost` its cost section."""
    this_run = ingested.get("cost_this_run")
    if this_run is None and ingested.get("cache_hit"):
        this_run = {}  # the whole ingestion came from the cache: paid by the run that made it
    lm_model = str(cfg.lm.model) if cfg.get("lm") else None
    usd = usd_section(cost, lm_model, judge_model, load_prices(cfg.get("prices")), this_run)
    ingest_paid = _tokens(this_run.get("phases") or {}) if this_run is not None else billed_tokens(cost, ("ingest",))
    return {
        "usd": usd,
        "tokens": {
            "total": billed_tokens(cost, replayed=True),
            "spent": ingest_paid + billed_tokens(cost, ("answer", "judge")),
        },
    }
