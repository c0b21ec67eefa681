"""`memtune-export`: write the bundle of one chosen policy (policies/runtime/bundle.py), optionally registered in MLflow.

    memtune-export policy=mem0_offline                             # a plain Hydra config: no sweep, no scores
    memtune-export study=<name> pick=best|pareto:<objective>|trial:<n> [storage=sqlite:///.../optuna.db]
    memtune-export run_id=<MLflow trial run id>                    # tracking URI: tracking.tracking_uri
    memtune-export ... out=bundles/mine register=memtune-policy    # + MLflow pyfunc model, registered

A study trial's config is re-composed exactly as memtune-sweep composed it (`sweep_config` + the sweep's
command-line overrides + the trial's overrides, all recorded on the trial); an MLflow run's config the same
way from its params, then checked against its policy.json artifact. The bundle says which split its scores come
from: `tune` (the conversations the trial was selected on: optimistic) and, when memtune-sweep re-scored the
trial, `heldout` (never tuned on); and, in source.knobs, which settings the study tuned (the trial's own
overrides), which it left at the base config's value (`defaulted`), and which search-space knobs it did not
sample and why (`not_sampled`: no objective depends on them, or inactive in this trial).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.runtime.bundle import build_stages
from ...policies.runtime.bundle_config import bundle_config
from ...policies.runtime.bundle_save import graph_stages, module_states, policy_hash, save_bundle
from ..sweep.knob_deps import knob_record
from .mlflow_run import from_run
from .sources import ExportError, from_config, from_study, policy_overrides

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


# ---- helpers --------------------------------------------------------------------------------------------------


# ---- the command ------------------------------------------------------------------------------------------------
def run_export(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict:
    """Export one policy as a bundle (and register it when `register` is set). Hydra must be initialised."""
    if cfg.run_id and cfg.study:
        raise ExportError("give one source: run_id=... or study=..., not both")
    if cfg.run_id:
        composed, scores, source = from_run(cfg)
    elif cfg.study:
        composed, scores, source = from_study(cfg)
    else:
        composed, scores, source = from_config(cfg)
        if overrides is not None:
            source["overrides"] = policy_overrides(overrides)
    config = bundle_config(composed)
    if source["kind"] in ("study", "mlflow_run"):  # which settings the study chose, which it left at their defaults
        source["knobs"] = knob_record(config, source["overrides"], source.pop("not_sampled"))
    if cfg.get("bundle_store"):  # store settings are the deployment's, not the tuned policy's (eval keeps no versions)
        config["store"] = OmegaConf.to_container(
            hydra.compose(config_name="eval", overrides=[f"store={cfg.bundle_store}"]).store, resolve=True
        )
    embedder = instantiate(composed.embedder)  # id and dim only: MiniLM loads its weights on first use
    name = str(cfg.name) if cfg.name else None
    stages = build_stages(config) | graph_stages(config)
    version = str(cfg.version) if cfg.version else None
    target = Path(str(cfg.out)) if cfg.out else None
    if target is None:
        label = name or str(config["policy"].get("name") or "policy")
        target = Path("bundles") / (version or f"{label}-{policy_hash(config, module_states(stages))}")
    info = save_bundle(
        target,
        config,
        embedder_id=embedder.id,
        embedder_dim=int(embedder.dim),
        stages=stages,
        name=name,
        version=version,
        scores=scores,
        source=source,
        overwrite=bool(cfg.force),
    )
    result = {"bundle": info.path, "version": info.version, "source": source, "scores": scores}
    print(f"[export] bundle {info.version} -> {info.path}")
    print(f"[export] scores: {_score_line(scores)}")
    if cfg.register:
        from .registry import register_bundle

        reg = register_bundle(
            info.path,
            str(cfg.register),
            tracking_uri=str(cfg.tracking.tracking_uri),
            experiment=str(cfg.registry.experiment),
            artifact_location=cfg.tracking.get("artifact_location"),
            store_uri=cfg.registry.store_uri,
        )
        result["registered"] = reg
        print(f"[export] registered {reg['model_uri']} (MLflow run {reg['run_id']})")
    return result


def _score_line(scores: Mapping[str, Any]) -> str:
    if not scores.get("tune"):
        return scores.get("note", "none")
    parts = [f"tune {k}={v:.4g}" for k, v in (scores["tune"].get("objectives") or {}).items()]
    if scores.get("heldout"):
        held = scores["heldout"]["metrics"].items()
        parts += [
            f"heldout {k.removeprefix('scores.overall.')}={v:.4g}"
            for k, v in held
            if isinstance(v, (int, float)) and k.startswith("scores.overall.")
        ]
    else:
        parts.append("no held-out score")
    return ", ".join(parts)


def export_from_overrides(overrides: Sequence[str]) -> dict:
    """memtune-export as a function (tests, notebooks): compose conf/export.yaml with `overrides` and run it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="export", overrides=list(overrides))
        return run_export(cfg, overrides=list(overrides))


@hydra.main(config_path="pkg://memtune.conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_export(cfg)
    except (ExportError, FileExistsError, ValueError) as err:
        print(f"memtune-export: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
