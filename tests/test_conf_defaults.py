"""One source for each default: every value a conf yaml gives a knob equals the default in the code (the stage's knob
dataclass field, or the `__init__` / function parameter of its `_target_`: policies/knob_defaults.py), or the yaml
line says why it differs with a trailing `# differs: <reason>` comment; a `differs:` on an equal value fails too.

Each conf/policy/<stage>/<variant>.yaml (and graph/<part>/<variant>.yaml), each preset conf/policy/<name>.yaml, and
each store/, embedder/, lm/ and judge/ yaml is composed into memtune-eval's config and every key of every
`_target_` node in it is checked; the yaml line that set a key is found by tests/conf_sources.py."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
from conf_sources import composition, package_of, source_of, trailing_comment, yaml_keys
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.policies.knob_defaults import NO_DEFAULT, knob_defaults

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {  # group -> the overrides that make its options reachable
    "policy/extractor": [],
    "policy/summarizer": [],
    "policy/decider": [],
    "policy/retriever": [],
    "policy/answerer": [],
    "policy/graph": [],
    "policy/graph/entities": ["policy/graph=on"],
    "policy/graph/relations": ["policy/graph=on"],
    "policy/graph/resolver": ["policy/graph=on"],
    "policy": [],  # the presets: they may set a knob to another value, with a `differs:` reason
    "store": [],
    "embedder": [],
    "lm": [],
    "judge": [],
}
ENV = ("OPENAI_BASE_URL", "MEMTUNE_LM_MODEL", "MEMTUNE_JUDGE_MODEL", "MEMTUNE_JUDGE_BASE_URL")  # their yaml fallbacks
CASES = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
DIFFERS = "differs:"


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def home(target: str, key: str) -> str:
    """Where the default of `key` of `target` is written, for the error message."""
    obj = get_object(target)
    group, _, sub = key.partition(".")
    if sub and group in getattr(obj, "knob_groups", {}):
        cls = obj.knob_groups[group]
        return f"{cls.__qualname__}.{sub} ({cls.__module__})"
    params = inspect.signature(obj.__init__ if isinstance(obj, type) else obj).parameters
    if key in params:
        return f"{target}({key}=...)"
    cls = type(obj().knobs)
    return f"{cls.__qualname__}.{key} ({cls.__module__})"


class Checker:
    """Walks the `_target_` nodes of one composed config group and records every disagreement."""

    def __init__(self, files: list[tuple[Path, str]]):
        self.files, self.problems, self.used = files, [], set()

    def node(self, node, path: str) -> None:
        if not isinstance(node, dict):
            return
        target = node.get("_target_")
        defaults = knob_defaults(target) if target else {}
        for key, value in node.items():
            if key == "_target_":
                continue
            if isinstance(value, dict) and ("_target_" in value or not target):
                self.node(value, f"{path}.{key}")  # a nested stage (graph entities, the judge's LM), or no class
            elif not target:
                continue  # a preset's `name`, graph/off's `mode`: not a knob of any class
            elif isinstance(value, dict) and isinstance(defaults.get(key), dict):
                for sub, v in value.items():  # a knob group (GraphMemory's nodes/edges/retrieval/store)
                    self.knob(target, f"{key}.{sub}", v, defaults[key].get(sub, NO_DEFAULT), f"{path}.{key}.{sub}")
            else:
                self.knob(target, key, value, defaults.get(key, NO_DEFAULT), f"{path}.{key}")

    def knob(self, target: str, key: str, value, default, path: str) -> None:
        found = source_of(self.files, path)
        if found is None:
            self.problems.append(f"{path}: no yaml line of {[show(f) for f, _ in self.files]} sets it")
            return
        file, comment = found
        where = f"{show(file)}: `{key}` ({path})"
        if default is NO_DEFAULT:
            self.problems.append(
                f"{where} = {value!r}, but {target} has no default for {key!r} (not a knob of it, or a required "
                "argument filled in at run time). Fix: remove the line, or give the knob a default in the code."
            )
            return
        differs = comment.startswith(DIFFERS)
        self.used.add((file, path))
        if differs and same(value, default):
            self.problems.append(
                f"{where} = {value!r} equals the default of {home(target, key)} ({default!r}) but its line says "
                f"`# {comment}`. Fix: drop the `differs:` comment (or the whole line: the code's default applies)."
            )
        elif not differs and not same(value, default):
            self.problems.append(
                f"{where} = {value!r}, but the default of {home(target, key)} is {default!r}. Fix: make them equal "
                "(change the yaml or the code's default, with a comment saying where the value comes from), or keep "
                "both and end the yaml line with `# differs: <why this config needs another value>`."
            )


def compose_case(group: str, option: str):
    overrides = [*GROUPS[group], f"{group}={option}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    node = OmegaConf.select(cfg, group.replace("/", "."))
    return (OmegaConf.to_container(node, resolve=True) if node is not None else None), choices


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}/{o}" for g, o in CASES])
def test_every_conf_knob_equals_the_code_default_or_says_why_not(group, option, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    node, choices = compose_case(group, option)
    files = composition(group, option, choices)
    checker = Checker(files)
    checker.node(node, group.replace("/", "."))
    own = CONF_DIR / group / f"{option}.yaml"
    package = package_of(own, group.replace("/", "."))
    for key, comment in yaml_keys(own).items():  # a `differs:` must sit on a knob this file sets
        if comment.startswith(DIFFERS) and (own, f"{package}.{key}".lstrip(".")) not in checker.used:
            checker.problems.append(f"{show(own)}: `{key}` says `# {comment}` but is not a knob checked here")
    assert not checker.problems, "\n".join(checker.problems)


# ---- the checker itself: it catches what it must -----------------------------------------------------------------
def test_the_line_reader_finds_keys_nesting_and_trailing_comments(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(
        '# header\n_target_: a.B\ntop_k: 7  # differs: why\nname: "a # b"  # real\nnodes:\n  merge: 0.9\n'
        "single: [a, b,\n         c]  # differs: list\n"
    )
    keys = yaml_keys(f)
    assert keys == {
        "_target_": "",
        "top_k": "differs: why",
        "name": "real",
        "nodes": "",
        "nodes.merge": "",
        "single": "differs: list",
    }
    assert trailing_comment("x: '#no'") == ""


def test_a_disagreement_and_a_needless_differs_are_both_reported(tmp_path):
    target = "memtune.policies.stages.retrieve.CosineRetriever"
    f = tmp_path / "cosine.yaml"
    f.write_text(f"_target_: {target}\ntop_k: 7\nthreshold: null  # differs: none is the default too\n")
    checker = Checker([(f, "policy.retriever")])
    checker.node({"_target_": target, "top_k": 7, "threshold": None}, "policy.retriever")
    text = "\n".join(checker.problems)
    assert (
        "`top_k` (policy.retriever.top_k) = 7, but the default of" in text
        and "RetrievalKnobs.top_k (memtune.policies.stages.retrieve) is 30" in text
    )
    assert "`threshold`" in text and "equals the default" in text and "drop the `differs:` comment" in text
    f.write_text(f"_target_: {target}\ntop_k: 7  # differs: a test\n")
    ok = Checker([(f, "policy.retriever")])
    ok.node({"_target_": target, "top_k": 7}, "policy.retriever")
    assert ok.problems == []
