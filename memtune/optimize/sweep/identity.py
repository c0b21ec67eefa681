"""A study's identity: what must not change while memtune-sweep resumes it, and the refusal when it does.

The signature holds the sampled search space (and the knobs not sampled), the objectives, both splits (the tune
and holdout conversation ids), the dataset file's sha256, and the base config: every top-level group the
trials are composed from (policy, embedder, lm, judge, store, dataset, overall_categories, and any group added
later), resolved. So `memtune-sweep embedder=openai` is another study than the offline one, and so is an edit
of conf/policy/... between two runs, while writing out a default (`embedder=minilm`) is the same study.

Free to change on resume, because they do not change what a trial scores:
  sweep.n_trials, study_name, storage, sampler, pruner, heartbeat, enqueue, enqueue_defaults (read at creation only),
  max_consecutive_failures, wait_for_workers, poll_seconds, heldout.* (the held-out re-scoring and baselines
  of the report); tracking, cache_dir, progress, ingest_cache, hydra; judges and judge_checks (the extra judges and
  canaries that check the main judge: reported beside J, never an objective);
  an LM's timeout, num_retries and cache (how a call is made); the embedder's batch_size and threads;
  an api_base / base_url read from the environment (`${oc.env:...}`): each worker's deployment decides it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ...policies.runtime.renamed_targets import current_targets

if TYPE_CHECKING:
    from .scoring import Objective
    from .search_space import SearchSpace

FREE_GROUPS = (
    "sweep",
    "search_space",
    "tracking",
    "cache_dir",
    "progress",
    "ingest_cache",
    "hydra",
    "judges",
    "judge_checks",  # checks of the judges (canaries, agreement): reported, never an objective's input
)
RUNTIME_KEYS = ("api_base", "base_url")  # kept as written when read from the environment
FREE_KEYS = {"lm": ("timeout", "num_retries", "cache"), "embedder": ("batch_size", "threads")}  # at any depth


class StudyMismatch(ValueError):
    """An existing study cannot be resumed with this command: the message says what differs and what to do."""


_USERINFO = re.compile(r"://[^/@\s]+@")
_ABSENT = "(absent)"


def base_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved base config of a sweep's trials, minus what is free to change (module docstring)."""
    out: dict[str, Any] = {}
    for key in cfg:
        if key in FREE_GROUPS:
            continue
        node = cfg._get_node(key)
        if isinstance(node, (DictConfig, ListConfig)):
            value = _keep_env(OmegaConf.to_container(node, resolve=True), OmegaConf.to_container(node))
        else:
            value = cfg.get(key)
            if isinstance(value, (DictConfig, ListConfig)):  # an interpolation (overall_categories) resolved
                value = OmegaConf.to_container(value, resolve=True)
        out[str(key)] = _drop_free(value, str(key))
    return _redact(out)


def _keep_env(resolved: Any, raw: Any) -> Any:
    """Resolved values, except an endpoint read from the environment, which stays `${oc.env:...}`."""
    if isinstance(resolved, dict) and isinstance(raw, dict):
        return {
            k: raw[k]
            if k in RUNTIME_KEYS and isinstance(raw.get(k), str) and "${oc.env:" in raw[k]
            else _keep_env(v, raw.get(k))
            for k, v in resolved.items()
        }
    return resolved


def _drop_free(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        return value
    free = FREE_KEYS.get(key, ())
    return {k: _drop_free(v, str(k)) for k, v in value.items() if k not in free}


def _redact(value: Any) -> Any:
    """No user:password@ of a URL is written into the study's storage."""
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return _USERINFO.sub("://***@", value) if isinstance(value, str) else value


def signature(
    space: SearchSpace,
    objectives: Sequence[Objective],
    tune: Sequence[str],
    cfg: DictConfig,
    holdout: Sequence[str] = (),
    dataset_sha256: str | None = None,
    not_sampled: Mapping[str, str] | None = None,
) -> dict:
    """What must not change while a study is resumed (n_trials may; see the module docstring)."""
    return {
        "search_space": space.describe(),
        "not_sampled": dict(not_sampled or {}),
        "objectives": [o.__dict__ for o in objectives],
        "tune": list(tune),
        "holdout": list(holdout),
        "dataset": {"name": cfg.dataset.name, "path": str(cfg.dataset.path), "sha256": dataset_sha256},
        "base": base_identity(cfg),
    }


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def same(stored: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    return _plain(stored) == _plain(now)


def differences(stored: Mapping[str, Any], now: Mapping[str, Any], limit: int = 12) -> list[str]:
    """`path: stored -> now` for every setting that differs, the shallowest paths first (a changed preset name
    before the knobs it brings), at most `limit` lines, then a count."""
    a, b = _flat(_plain(stored)), _flat(_plain(now))
    lines = [
        f"{path}: {_show(a.get(path, _ABSENT))} -> {_show(b.get(path, _ABSENT))}"
        for path in sorted(set(a) | set(b), key=lambda p: (p.count("."), p))  # the broadest first: policy.name
        if a.get(path, _ABSENT) != b.get(path, _ABSENT)
    ]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    text = value if value == _ABSENT else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def new_study_name(name: str, sig: Mapping[str, Any]) -> str:
    """A name for the study of this signature: the same command with it resumes that study."""
    digest = hashlib.sha256(json.dumps(_plain(sig), sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def refusal(
    name: str, storage: str, stored: Mapping[str, Any], now: Mapping[str, Any], stored_overrides: Sequence[str] | None
) -> str:
    """Why a study cannot be resumed with this command, what differs, and how to start a new one."""
    older = "" if "base" in stored else " (it was created by an older memtune that did not record its base config)"
    started = (
        f"\nIt was started with the command-line overrides: {' '.join(stored_overrides) or '(none)'}"
        if stored_overrides is not None
        else ""
    )
    return (
        f"study {name!r} in {storage} was started with other settings{older}; its trials would not be comparable "
        "with this run's. What differs (stored -> now):\n  "
        + "\n  ".join(differences(stored, now))
        + started
        + "\nResume it with the same base config, search space, objectives and splits, or start a new study: "
        f"sweep.study_name={new_study_name(name, now)}"
    )


def claim_study(
    study, sig: Mapping[str, Any], directions: Sequence[str], storage: str, overrides: Sequence[str]
) -> bool:
    """Record `sig` on a new study (True), or check that an existing one has the same signature and directions
    (False); raises StudyMismatch with what differs and a new study name otherwise."""
    name, stored = study.study_name, study.user_attrs.get("signature")
    stored = current_targets(stored)  # a study started before the source tree was split resumes
    other_directions = [d.name.lower() for d in study.directions] != [d.lower() for d in directions]
    if stored is not None and (other_directions or not same(stored, sig)):
        raise StudyMismatch(refusal(name, storage, stored, sig, study.user_attrs.get("base_overrides")))
    if other_directions:
        raise StudyMismatch(
            f"study {name!r} exists with directions {[d.name.lower() for d in study.directions]}, not "
            f"{list(directions)}: start a new study: sweep.study_name={new_study_name(name, sig)}"
        )
    if stored is not None:
        return False
    study.set_user_attr("signature", _plain(sig))
    study.set_user_attr("holdout", list(sig.get("holdout") or []))
    study.set_user_attr("base_overrides", list(overrides))
    return True
