"""The default of every knob a config's `_target_` takes, read from the code: the one source of each default.

A stage built from `**knobs` (`ExtractionKnobs`, `SummaryKnobs`, `DecisionKnobs`, `RetrievalKnobs`, `AnswerKnobs`,
the graph stages' knobs) has the fields of its knob dataclass, read from an instance built with no arguments (what
`self.knobs` holds then); any other class or function (the store, the embedders, `make_lm`, the judge) has its
parameters' defaults. A class may name dataclasses for knobs passed as mappings in `knob_groups` (GraphMemory's
`nodes`, `edges`, `retrieval`, `store`): those defaults are nested dicts.

conf/ must agree (tests/test_conf_defaults.py): every value a conf yaml gives a knob equals this default, or its
line says why not with a trailing `# differs: <reason>` comment.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hydra.utils import get_object

NO_DEFAULT = inspect.Parameter.empty  # a required parameter (filled in at run time, e.g. the store's uri)


def knob_defaults(target: str) -> dict[str, Any]:
    """{knob name: default} of `target` (a Hydra `_target_`); a required parameter maps to NO_DEFAULT."""
    obj: Any = get_object(target)
    out: dict[str, Any] = {}
    # a class's own __init__ (a dspy.Module's metaclass would show `(*args, **kwargs)`), without `self`
    is_class = isinstance(obj, type)
    params = list(inspect.signature(obj.__init__ if is_class else obj).parameters.values())
    for param in params[1:] if is_class else params:
        name = param.name
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            knobs = getattr(obj(), "knobs", None)  # a stage: every default in its knob dataclass
            if not dataclasses.is_dataclass(knobs) or isinstance(knobs, type):
                raise TypeError(f"{target} takes **{name} but keeps no knob dataclass in `.knobs`")
            out.update(dataclasses.asdict(knobs))
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            out[name] = param.default
    for name, cls in getattr(obj, "knob_groups", {}).items():
        out[name] = dataclasses.asdict(cls())
    return out
