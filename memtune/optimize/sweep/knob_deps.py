"""Which summary metrics a knob can move, hence which knobs a study samples, and the record of what was tuned.

A trial runs ingest -> retrieve -> answer -> judge. A stage's knobs can move its own outputs and everything
downstream, nothing upstream. The map is declared, not measured (one place to change when a stage changes):

    knob target (Hydra override target; `/` and `.` alike)      stage
      policy.retriever, policy.graph.retrieval                    retrieve
      policy.answerer                                             answer
      judge                                                       judge
      anything else (extractor, summarizer, decider, graph, embedder, lm, store, dataset, unknown)   ingest

    metric (path into summary.json)                               stages that can move it
      scores.<category>.{*recall* (evidence_recall, recall_at_<budget>, graph_evidence_recall),
                         *context_tokens, n_graph, n_retrieved}                  ingest, retrieve
      scores.<category>.{f1, f1_squad, bleu1, abstained}                         ingest, retrieve, answer
      cost.{memories_stored, ops, rejected_ops, ingest}, ingest.*, graph*,
      lm_requests.per_message_pair, health.* (but stale_retrieval_rate)          ingest
      cost.{tokens,usd}.{extract,summarize,decide,graph_*}                       ingest
      health.stale_retrieval_rate, currency.*                                    ingest, retrieve
      cost.answer, lm_requests.per_query, cost.{tokens,usd}.answer               ingest, retrieve, answer
      anything else (scores.*.judge, cost.judge, wall_seconds, a metric added later)   every stage

So a recall-vs-tokens study does not sample answerer knobs (the extractive answerer's max_words cannot change
which memories are retrieved or what they cost), while a study on f1 does. If an answerer knob ever changes what
the answerer is shown (the rendered context), declare it a retrieval knob here. A knob the objectives do not
depend on is dropped from the study's search space with a warning and keeps the base config's value, unless a
knob that is sampled is conditional on it (`when:`), which keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # memtune-export imports this module: no optuna / polars at import time
    from .scoring import Objective
    from .search_space import SearchSpace

STAGES = ("ingest", "retrieve", "answer", "judge")
KNOB_STAGES = (  # target prefix -> stage, first match wins; everything else is an ingestion knob (moves all)
    ("policy.graph.retrieval", "retrieve"),
    ("policy.retriever", "retrieve"),
    ("policy.answerer", "answer"),
    ("judge", "judge"),
)
_RETRIEVAL = re.compile(  # evidence_recall, recall_at_<budget> (any naming), graph_evidence_recall, context tokens
    r"^scores\.[^.]+\.([a-z0-9_]*recall[a-z0-9_]*|[a-z0-9_]*context_tokens|n_graph|n_retrieved)$"
)
_ANSWER = re.compile(r"^scores\.[^.]+\.(f1|f1_squad|bleu1|abstained)$")
# what is retrieved: the stale share of retrieved memories, the rank of the current / superseded memory
_RETRIEVAL_HEALTH = re.compile(r"^(health\.stale_retrieval_rate|currency\..+)$")
_INGEST = re.compile(
    r"^(cost\.(memories_stored|ops|rejected_ops|ingest)(\..*)?|ingest\..*|graph(_growth)?(\..*)?"
    r"|lm_requests\.per_message_pair(\..*)?|health\..+|cost\.(tokens|usd)\.(extract|summarize|decide|graph_[a-z_]+))$"
)
_ANSWER_COST = re.compile(r"^(cost\.answer|lm_requests\.per_query|cost\.(tokens|usd)\.answer)(\..*)?$")


class KnobNotSampledWarning(UserWarning):
    """A search-space knob that no objective of the study depends on: the study does not sample it."""


def knob_stage(target: str) -> str:
    """The pipeline stage whose behaviour a knob target sets (see the module docstring)."""
    dotted = target.replace("/", ".")
    for prefix, stage in KNOB_STAGES:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return stage
    return "ingest"


def moved_by(metric: str) -> frozenset[str]:
    """The stages whose knobs can move a metric (a path into summary.json); unknown metrics: every stage."""
    if _RETRIEVAL.match(metric) or _RETRIEVAL_HEALTH.match(metric):
        return frozenset(("ingest", "retrieve"))
    if _ANSWER.match(metric) or _ANSWER_COST.match(metric):
        return frozenset(("ingest", "retrieve", "answer"))
    if _INGEST.match(metric):
        return frozenset(("ingest",))
    return frozenset(STAGES)


def not_sampled(space: SearchSpace, objectives: Sequence[Objective]) -> dict[str, str]:
    """{knob target: why} for the knobs of `space` that no objective depends on (kept when a sampled knob's
    `when:` names them: the sampled knob's activity depends on their value)."""
    moved = frozenset().union(*(moved_by(o.metric) for o in objectives))
    names = ", ".join(o.name for o in objectives)
    drop = {k.target: knob_stage(k.target) for k in space.knobs if knob_stage(k.target) not in moved}
    changed = True
    while changed:  # a kept knob conditional on a dropped one keeps it (and what that one is conditional on)
        changed = False
        for knob in space.knobs:
            if knob.target not in drop:
                for target in knob.when:
                    if target in drop:
                        del drop[target]
                        changed = True
    return {
        target: f"{stage} stage: no objective ({names}) depends on it; the base config's value is kept"
        for target, stage in drop.items()
    }


def restrict(space: SearchSpace, objectives: Sequence[Objective]) -> tuple[SearchSpace, dict[str, str]]:
    """The search space without the knobs no objective depends on, and those knobs with the reason."""
    dropped = not_sampled(space, objectives)
    kept = [k for k in space.knobs if k.target not in dropped]
    if not kept:
        raise ValueError(
            f"search space {space.name!r}: none of its knobs can move the objectives "
            f"{[o.metric for o in objectives]} ({'; '.join(f'{t}: {r}' for t, r in dropped.items())}). "
            "Choose objectives that depend on them (e.g. sweep=f1) or another search_space"
        )
    return type(space)(kept, name=space.name), dropped


# ---- the record of one chosen trial (bundle.json source.knobs) ------------------------------------------------
def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """["policy/decider=threshold", "policy.retriever.top_k=5"] -> {target: value text}."""
    out = {}
    for override in overrides:
        target, sep, value = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} is not target=value")
        out[target.lstrip("+~")] = value
    return out


def knob_record(
    config: Mapping[str, Any],
    overrides: Sequence[str],
    not_sampled_knobs: Mapping[str, str] | None,
    groups: Sequence[str] = ("policy", "embedder", "lm"),
) -> dict:
    """Which settings of an exported policy a study tuned and which it left at their defaults.

    tuned        {target: value} the study sampled for this trial (its overrides); a `group/option` target picks
                 a config-group option, whose other settings are defaulted
    defaulted    {path: value} every other setting of the policy, embedder and LM (`_target_` class paths left
                 out): the base config's value, never chosen by the study
    not_sampled  {target: why} knobs of the search space the study did not sample for this trial (no objective
                 depends on them, or their `when:` condition did not hold)"""
    tuned_text = parse_overrides(overrides)
    tuned: dict[str, Any] = {}
    for target, text in tuned_text.items():
        value = _select(config, target) if "/" not in target else _MISSING
        tuned[target] = text if value is _MISSING else value
    defaulted = {
        path: value
        for group in groups
        for path, value in _flatten(config.get(group), group).items()
        if path not in tuned and not path.endswith("._target_") and path != "_target_"
    }
    return {"tuned": tuned, "defaulted": defaulted, "not_sampled": dict(not_sampled_knobs or {})}


_MISSING = object()


def _select(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}"))
        return out
    return {prefix: value}
