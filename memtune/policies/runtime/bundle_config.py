"""The config a policy bundle stores: the resolved Hydra groups a policy is built from, with no secret in it.

Why: a bundle must not depend on the conf/ tree or the environment it was exported from, except deployment
settings the runtime decides (an `api_base` / `base_url` that was an `${oc.env:...}` interpolation stays one), and
it must never carry a secret (keys are named by env var: `api_key_env`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

GROUPS = ("policy", "embedder", "store", "lm")  # the config groups a policy is built from
RUNTIME_ENV_KEYS = ("api_base", "base_url")  # kept as ${oc.env:...} when they were: the deployment decides them
_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|password|passwd|token|credentials?)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"://[^/@\s]+:[^/@\s]+@")
_ENV_INTERPOLATION = re.compile(r"^\$\{oc\.env:[^}]+\}$")


def bundle_config(cfg: DictConfig | Mapping[str, Any]) -> dict:
    """The groups a policy needs (policy, embedder, store, lm), resolved, as plain JSON-able dicts.

    `api_base` / `base_url` values that are `${oc.env:...}` interpolations stay unresolved (the runtime
    environment decides where the endpoint is); everything else is pinned. Raises on a literal secret."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    missing = [g for g in ("policy", "embedder", "store") if g not in cfg or cfg.get(g) is None]
    if missing:
        raise ValueError(
            f"config has no {missing} group(s): a bundle needs policy, embedder and store "
            "(compose it from conf/eval.yaml, e.g. memtune-export policy=mem0_offline)"
        )
    out: dict[str, Any] = {}
    for group in GROUPS:
        node = cfg.get(group)
        if node is None:
            out[group] = None
            continue
        resolved = OmegaConf.to_container(node, resolve=True)
        raw = OmegaConf.to_container(node, resolve=False)
        out[group] = _keep_runtime_env(resolved, raw)
    check_no_secrets(out)
    return out


def _keep_runtime_env(resolved: Any, raw: Any) -> Any:
    if isinstance(resolved, dict) and isinstance(raw, dict):
        return {
            k: (
                raw[k]
                if k in RUNTIME_ENV_KEYS and isinstance(raw.get(k), str) and _ENV_INTERPOLATION.match(raw[k])
                else _keep_runtime_env(v, raw.get(k))
            )
            for k, v in resolved.items()
        }
    return resolved


def check_no_secrets(config: Mapping[str, Any], where: str = "config") -> None:
    """Refuse a literal secret: a key named like one (api_key, token, password, ...; `*_env` names are fine), a URL
    with user:password@, or any value equal to the current value of an env var that a `*_env` key names."""
    env_names: set[str] = set()

    def names(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if str(k).endswith("_env") and isinstance(v, str):
                    env_names.add(v)
                names(v)
        elif isinstance(node, list):
            for v in node:
                names(v)

    names(config)
    secrets = {os.environ[n] for n in env_names | {"OPENAI_API_KEY"} if len(os.environ.get(n) or "") >= 8}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                sub = f"{path}.{k}"
                if _SECRET_KEY.search(str(k)) and v not in (None, "") and not isinstance(v, (dict, list)):
                    raise ValueError(
                        f"{sub} holds a literal secret: a bundle never stores secrets. Put it in an "
                        f"environment variable and name that variable instead (e.g. {k}_env: MY_VAR)"
                    )
                walk(v, sub)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str):
            if _URL_USERINFO.search(node):
                raise ValueError(
                    f"{path} is a URL with a user:password part: a bundle never stores secrets; "
                    "pass credentials through environment variables"
                )
            if any(s in node for s in secrets):
                raise ValueError(
                    f"{path} contains the value of a secret environment variable: a bundle never "
                    "stores secrets; reference the variable by name (api_key_env)"
                )

    walk(config, where)
