"""The defaults trial: a new study's first trial is the base config itself, read as Optuna params of the search space,
so the sampler starts from the defaults and the report can compare every trial with them. Nothing is copied by hand:

- a group knob (`policy/extractor`) takes the option the base config chose (Hydra's runtime choices);
- a value knob (`policy.retriever.top_k`) takes the base config's value there, or the code's default when no yaml
  sets it (policies/knob_defaults.py);
- a null base value takes the knob's `null_as` from the search space (documented next to the knob:
  `policy.retriever.threshold` null, no threshold, is enqueued as 0.0, the range's lowest cut-off), or is left to
  the sampler when the knob has none;
- a value the search space cannot hold (an option it does not list, a number outside [low, high] or off its step
  grid: `policy=rag`'s chunk_turns 1 against a [2, 4] space) is left to the sampler, and so are the knobs
  conditional on it; the sweep prints which and why.

Only the knobs the study samples are enqueued (knobs no objective depends on are dropped first: knob_deps.py), in
the search space's order, each only when its `when:` holds for the values before it. `sweep.enqueue_defaults: false`
turns the trial off; `sweep.enqueue` lists more trials by hand (run after it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ...policies.knob_defaults import NO_DEFAULT, knob_defaults
from .search_space import Knob, SearchSpace

_UNSET = object()


def base_choices(config_name: str, overrides: Sequence[str]) -> dict[str, Any]:
    """Hydra's runtime choices (`policy/extractor` -> `heuristic`) of the base config; Hydra must be initialised."""
    cfg = hydra.compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


def defaults_trial(
    space: SearchSpace, cfg: DictConfig, choices: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(Optuna params of the base config, {knob target: why it is left to the sampler})."""
    params: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    left: dict[str, str] = {}
    for knob in space.knobs:
        waiting = [t for t in knob.when if t in left]
        if waiting:
            left[knob.target] = f"depends on {waiting[0]}, which is left to the sampler"
            continue
        if not knob.active(chosen):
            continue
        value = choices.get(knob.target, _UNSET) if "/" in knob.target else base_value(cfg, knob.target)
        value, why = fit(knob, value)
        if why:
            left[knob.target] = why
            continue
        params[knob.param] = chosen[knob.target] = value
    return params, left


def base_value(cfg: DictConfig, target: str) -> Any:
    """The base config's value at `target`, or the default of the nearest `_target_` above it when no yaml sets it."""
    value = OmegaConf.select(cfg, target, default=_UNSET)
    if value is not _UNSET:
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:cut]))
        if OmegaConf.is_dict(node) and "_target_" in node:
            found: Any = knob_defaults(str(node["_target_"]))
            for part in parts[cut:]:
                found = found.get(part, _UNSET) if isinstance(found, dict) else _UNSET
            return _UNSET if found is NO_DEFAULT else found
    return _UNSET


def fit(knob: Knob, value: Any) -> tuple[Any, str]:
    """(the value as the knob's Optuna param, '') or (None, why the search space cannot hold it)."""
    if value is _UNSET:
        return None, "the base config has no value for it"
    if value is None:
        if knob.type == "categorical" and None in (knob.choices or ()):
            return None, ""  # null is one of the choices (`policy.extractor.program: [null, ...]`: no program)
        if knob.null_as is None:
            return None, "the base value is null and the knob has no `null_as` in the search space"
        return knob.null_as, ""
    if knob.type == "categorical":
        assert knob.choices is not None
        return (value, "") if value in knob.choices else (None, f"{value!r} is not one of {list(knob.choices)}")
    assert knob.low is not None and knob.high is not None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{value!r} is not a number"
    if not knob.low <= value <= knob.high:
        return None, f"{value!r} is outside [{knob.low}, {knob.high}]"
    if knob.step:
        steps = (value - knob.low) / knob.step
        if not math.isclose(steps, round(steps), abs_tol=1e-9):
            return None, f"{value!r} is off the grid {knob.low} + k * {knob.step}"
    if knob.type == "int":
        return (int(value), "") if float(value).is_integer() else (None, f"{value!r} is not an integer")
    return float(value), ""
