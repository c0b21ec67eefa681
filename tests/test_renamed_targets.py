"""Configs written before the source tree was split into subpackages (old flat module paths in `_target_`) still
load: a bundle, a recorded trial policy, a stored study signature."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.optimize.sweep.identity import StudyMismatch, claim_study
from memtune.policies.runtime.bundle import load_policy, read_bundle
from memtune.policies.runtime.bundle_config import bundle_config
from memtune.policies.runtime.bundle_save import save_bundle
from memtune.policies.runtime.renamed_targets import MOVED_EMBEDDERS, MOVED_MODULES, current_target, current_targets

OLD_MODULE = {new: old for old, new in MOVED_MODULES.items()}


def old_spelling(target: str) -> str:
    module, _, name = target.rpartition(".")
    if MOVED_EMBEDDERS.get(name) == module:
        return f"memtune.policies.embed.{name}"
    return f"{OLD_MODULE[module]}.{name}" if module in OLD_MODULE else target


def conf_targets() -> set[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            found.update(v for k, v in node.items() if k == "_target_" and isinstance(v, str))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in Path(CONF_DIR).rglob("*.yaml"):
        walk(OmegaConf.to_container(OmegaConf.load(path)))
    return found


def test_every_conf_target_imports_and_its_old_spelling_maps_to_it():
    targets = conf_targets()
    assert len(targets) >= 20
    renamed = 0
    for target in sorted(targets):
        assert get_object(target) is not None, target
        old = old_spelling(target)
        renamed += old != target
        assert current_target(old) == target, (old, target)
    assert renamed >= 18  # every stage, embedder, graph part, the store and the judge moved
    assert current_target("memtune.policies.lm.make_lm") == "memtune.policies.lm.make_lm"  # did not move
    assert current_target("mypkg.MyEmbedder") == "mypkg.MyEmbedder"  # not ours: untouched


def test_a_bundle_written_with_the_old_module_paths_loads(tmp_path, embedder):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["policy=mem0_offline", "policy/graph=on"])
    info = save_bundle(tmp_path / "b", bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)
    path = Path(info.path) / "bundle.json"
    doc = json.loads(path.read_text())
    text = json.dumps(doc)
    for target in conf_targets():
        text = text.replace(f'"{target}"', f'"{old_spelling(target)}"')
    old_doc = json.loads(text)
    assert old_doc != doc and '"memtune.policies.extractors.HeuristicExtractor"' in text
    assert '"memtune.policies.graph.GraphMemory"' in text
    path.write_text(text)

    assert read_bundle(info.path).config == doc["config"]  # read back with today's paths
    policy, _ = load_policy(info.path, tmp_path / "store", embedder=embedder)
    assert type(policy.extractor).__module__ == "memtune.policies.stages.extract"
    assert type(policy.graph).__module__ == "memtune.policies.graph.memory"
    assert current_targets(old_doc["config"]) == doc["config"]


def test_a_study_signed_with_the_old_module_paths_resumes():
    now = {"base": {"policy": {"extractor": {"_target_": "memtune.policies.stages.extract.HeuristicExtractor"}}}}
    old = {"base": {"policy": {"extractor": {"_target_": "memtune.policies.extractors.HeuristicExtractor"}}}}
    study = optuna.create_study(study_name="s", directions=["maximize"])
    study.set_user_attr("signature", old)
    assert claim_study(study, now, ["maximize"], "memory", []) is False  # resumed, not refused
    other = {"base": {"policy": {"extractor": {"_target_": "memtune.policies.stages.extract.ChunkExtractor"}}}}
    with pytest.raises(StudyMismatch, match="HeuristicExtractor"):  # a real difference is still refused
        claim_study(study, other, ["maximize"], "memory", [])
