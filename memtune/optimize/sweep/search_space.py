"""The Optuna search space, read from conf/search_space/*.yaml: a list of knobs, each a Hydra override target.

    knobs:
      - target: policy/decider                   # a slash: pick a config-group option
        type: categorical
        choices: [threshold, add_only]
      - target: policy.decider.update_threshold  # dots: set a value
        type: float                              # int | float | categorical
        low: 0.70
        high: 0.90
        step: 0.05                               # or log: true (not both)
        when: {policy/decider: threshold}        # only when an earlier knob took this value (or one of a list)
        null_as: 0.0                             # optional: the value the defaults trial uses for a null base value

`SearchSpace.suggest(trial)` asks the trial for every active knob, in order, and returns Hydra overrides
(`policy/decider=threshold`, `policy.decider.update_threshold=0.8`). Pure: no Hydra, no I/O; an
`optuna.trial.FixedTrial` reproduces the overrides of any stored trial (`overrides_for(params)`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import optuna

TYPES = ("categorical", "int", "float")
_FIELDS = {"target", "name", "type", "choices", "low", "high", "step", "log", "when", "null_as"}


@dataclass(frozen=True)
class Knob:
    target: str  # Hydra override target: `policy/decider` (group option) or `policy.decider.update_threshold`
    type: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: Mapping[str, tuple] = field(default_factory=dict)  # earlier target -> the values that activate this knob
    name: str = ""  # Optuna parameter name (default: the target)
    null_as: Any = None  # the defaults trial's stand-in for a null base value (optimize/sweep/defaults_trial.py)

    @property
    def param(self) -> str:
        return self.name or self.target

    def active(self, chosen: Mapping[str, Any]) -> bool:
        """All conditions hold: each named knob was suggested and took one of the listed values."""
        return all(target in chosen and chosen[target] in values for target, values in self.when.items())

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.type == "categorical":
            assert self.choices is not None  # _knob() checked the spec
            return trial.suggest_categorical(self.param, list(self.choices))
        assert self.low is not None and self.high is not None  # _knob() checked the spec
        if self.type == "int":
            return trial.suggest_int(self.param, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        value = trial.suggest_float(self.param, float(self.low), float(self.high), step=self.step, log=self.log)
        return round(value, 10) if self.step else value  # 0.7500000000000001 -> 0.75 on a stepped grid

    def describe(self) -> str:
        if self.type == "categorical":
            body = "{" + ", ".join(map(str, self.choices or ())) + "}"
        else:
            body = (
                f"[{self.low}, {self.high}]"
                + (f" step {self.step}" if self.step else "")
                + (" log" if self.log else "")
            )
        cond = " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when.items()) if self.when else ""
        return f"{self.target}: {self.type} {body}{cond}"


def _knob(spec: Mapping[str, Any], earlier: Sequence[Knob]) -> Knob:
    where = f"search space knob {spec.get('target', spec)!r}"
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    if not spec.get("target"):
        raise ValueError(f"{where}: needs a `target` (a Hydra override target such as policy.retriever.top_k)")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"{where}: type must be one of {TYPES}, got {kind!r}")
    when = {}
    for target, values in (spec.get("when") or {}).items():
        if target not in {k.target for k in earlier}:
            raise ValueError(f"{where}: `when` names {target!r}, which is not a knob listed above it")
        when[target] = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    knob = Knob(
        target=str(spec["target"]),
        type=kind,
        when=when,
        name=str(spec.get("name") or ""),
        log=bool(spec.get("log", False)),
        null_as=spec.get("null_as"),
    )
    if kind == "categorical":
        choices = spec.get("choices")
        if not choices or isinstance(choices, (str, bytes)):
            raise ValueError(f"{where}: categorical needs a non-empty list of `choices`")
        if any(k in spec for k in ("low", "high", "step", "log")):
            raise ValueError(f"{where}: categorical takes `choices`, not low/high/step/log")
        if knob.null_as is not None and knob.null_as not in choices:
            raise ValueError(f"{where}: null_as must be one of the choices {list(choices)}, got {knob.null_as!r}")
        return Knob(**{**knob.__dict__, "choices": tuple(choices)})
    if spec.get("low") is None or spec.get("high") is None:
        raise ValueError(f"{where}: {kind} needs `low` and `high`")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if "choices" in spec:
        raise ValueError(f"{where}: {kind} takes low/high, not `choices`")
    if not low <= high:
        raise ValueError(f"{where}: needs low <= high, got low={low}, high={high}")
    if knob.log and low <= 0:
        raise ValueError(f"{where}: log scale needs low > 0, got {low}")
    if knob.log and step is not None and not (kind == "int" and step == 1):
        raise ValueError(f"{where}: `log` and `step` cannot be combined (Optuna)")
    if step is not None and step <= 0:
        raise ValueError(f"{where}: step must be > 0, got {step}")
    if kind == "int" and any(v is not None and float(v) != int(v) for v in (low, high, step)):
        raise ValueError(f"{where}: int knob needs integer low/high/step, got {low}/{high}/{step}")
    if knob.null_as is not None and not low <= knob.null_as <= high:
        raise ValueError(f"{where}: null_as must lie in [low, high] = [{low}, {high}], got {knob.null_as!r}")
    return Knob(**{**knob.__dict__, "low": low, "high": high, "step": step})


def format_value(value: Any) -> str:
    """A Python value as Hydra override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} as an override")
        return repr(value)
    return str(value)


class SearchSpace:
    def __init__(self, knobs: Sequence[Knob], name: str = ""):
        self.knobs, self.name = list(knobs), name
        params = [k.param for k in self.knobs]
        if len(set(params)) != len(params):
            raise ValueError(f"search space {name!r}: a parameter appears twice: {params}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SearchSpace:
        """From the search_space config node (a DictConfig or plain dict with `knobs:` and optional `name:`)."""
        if hasattr(cfg, "_metadata"):  # an OmegaConf node: plain containers from here on
            from omegaconf import OmegaConf

            cfg = cast(dict, OmegaConf.to_container(cfg, resolve=True))  # a mapping node -> a dict
        specs = cfg.get("knobs")
        if not specs:
            raise ValueError("search space has no `knobs:` list (see conf/search_space/offline.yaml)")
        knobs: list[Knob] = []
        for spec in specs:
            knobs.append(_knob(spec, knobs))
        return cls(knobs, name=str(cfg.get("name") or ""))

    def suggest(self, trial: optuna.trial.BaseTrial) -> list[str]:
        """Ask the trial for every active knob (in order) and return the Hydra overrides."""
        chosen: dict[str, Any] = {}
        for knob in self.knobs:
            if knob.active(chosen):
                chosen[knob.target] = knob.suggest(trial)
        return [f"{target}={format_value(value)}" for target, value in chosen.items()]

    def overrides_for(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides of a stored trial, from its params (`FrozenTrial.params`)."""
        return self.suggest(optuna.trial.FixedTrial(dict(params)))

    def describe(self) -> dict[str, str]:
        return {k.param: k.describe() for k in self.knobs}
