"""conf/experiment/: every committed experiment as a Hydra experiment file (`# @package _global_`, a delta over the
base config), usable as `experiment=<name>` by memtune-eval, memtune-sweep and memtune-export. Each file composes with
the app its header names; it composes to exactly the config of the override list the experiment used to spell out;
and its experiment's README (and run script) cite it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = CONF_DIR / "experiment"
FILES = sorted(EXPERIMENTS.rglob("*.yaml"))
NAMES = [str(f.relative_to(EXPERIMENTS).with_suffix("")) for f in FILES]
_RUN = re.compile(r"^#\s+uv run (memtune-(?:eval|sweep|export)) experiment=(\S+)", re.MULTILINE)
APPS = {"memtune-eval": "eval", "memtune-sweep": "sweep", "memtune-export": "export"}
GRAPH_ON = "policy/graph=on"
LLM_SMOKE = ["policy=mem0_llm", "lm=openai", "judge=openai", "ingest_cache=false", "lm.timeout=600"]
DEFAULTS_ONLY = "[{name: defaults, overrides: []}]"
HELDOUT = ["dataset=locomo_dev", "dataset.conversations=[conv-43,conv-44,conv-47]"]
# The offline defaults before issue 14 switched them (conf/policy/mem0_offline_v0.yaml): every experiment whose
# committed numbers ran on them pins it, so its old command line, which ran on the base policy, means this today
V0 = "policy=mem0_offline_v0"
# offline-retrieval: each lever alone over the defaults before issue 14 (mem0_offline_v0), as the arms first spelled
# them out
BEFORE = {
    "policy": "mem0_offline_v0",
    "policy/answerer": "extractive",
    "policy.extractor.resolve_dates": "false",
    "policy.retriever.top_k": "30",
    "policy.retriever.threshold": "null",
    "policy.retriever.hybrid": "false",
    "policy.retriever.recency_weight": "0.0",
    "policy.retriever.date_filter": "off",
    "policy.retriever.dedup_threshold": "null",
    "policy.retriever.mmr_lambda": "null",
    "policy.answerer.render": "json",
}
LEVERS = {
    "defaults": {},
    "hybrid": {"policy.retriever.hybrid": "true"},
    "time": {"policy.extractor.resolve_dates": "true", "policy.retriever.date_filter": "boost"},
    "recency": {"policy.retriever.recency_weight": "0.1"},
    "mmr": {"policy.retriever.mmr_lambda": "0.7"},
    "dedup": {"policy.retriever.dedup_threshold": "0.9"},
    "answerer": {"policy/answerer": "question_aware"},
    "render": {"policy.answerer.render": "lines_date"},
    "ingest": {
        "policy/decider": "offline",
        "policy.extractor.min_words": "2",
        "policy.retriever.include_history": "when_asked",
        "policy.retriever.slot_rank": "true",
    },
}


def before(arm: str, lever: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in {**BEFORE, **lever}.items()]


# experiments/knowledge-updates: the datasets and knob groups its runs combine
KU_UPD = [V0, "dataset=updates"]
KU_HELD = [V0, "dataset.conversations=[conv-43,conv-44,conv-47]"]
KU_SEED1 = [
    V0,
    "dataset=updates",
    "dataset.name=updates_seed1",
    "dataset.path=experiments/knowledge-updates/data/updates_seed1.json",
]
KU_PEOPLE4 = [
    V0,
    "dataset=updates",
    "dataset.name=updates_seed2_people4",
    "dataset.path=experiments/knowledge-updates/data/updates_seed2_people4.json",
]
KU_ORACLE = ["policy/extractor=observations"]
KU_SOFT = ["policy.decider.supersede=true", "policy.decider.invalidation=soft"]
KU_WHEN = ["policy.retriever.include_history=when_asked"]
KU_SLOT = ["policy.retriever.slot_rank=true"]
# The command lines the experiments ran with before conf/experiment/ (READMEs' Command sections and run.sh at the
# commit that added this test), without what stays on the command line (progress=false, hydra.run.dir, out=)
OLD = {
    "offline-sweep": ("sweep", [V0]),
    "offline-sweep-budget": ("sweep", [V0, "sweep=budget"]),
    "rag-vs-mem0-offline/mem0_offline": ("eval", [V0]),
    "rag-vs-mem0-offline/rag": ("eval", ["policy=rag"]),
    "rag-vs-mem0-offline/rag_chunk4": ("eval", ["policy=rag", "policy.extractor.chunk_turns=4"]),
    "mem0-vs-mem0g/off": ("eval", [V0]),
    "mem0-vs-mem0g/off_top43": ("eval", [V0, "policy.retriever.top_k=43"]),
    "mem0-vs-mem0g/on_soft": ("eval", [V0, GRAPH_ON]),
    "mem0-vs-mem0g/only_soft": ("eval", [V0, "policy/graph=only"]),
    "mem0-vs-mem0g/on_soft_merge_score": ("eval", [V0, GRAPH_ON, "policy.graph.retrieval.merge=score"]),
    "mem0-vs-mem0g/on_soft_show_invalid": (
        "eval",
        [V0, GRAPH_ON, "policy.graph.retrieval.merge=score", "policy.graph.retrieval.include_invalid=true"],
    ),
    "mem0-vs-mem0g/only_soft_hops2": ("eval", [V0, "policy/graph=only", "policy.graph.retrieval.hops=2"]),
    "mem0-vs-mem0g/on_soft_ner_nodes": (
        "eval",
        [V0, GRAPH_ON, "policy.graph.entities.noun_chunks=false", "policy.graph.nodes.orphan_nodes=false"],
    ),
    "mem0-vs-mem0g/on_hard": ("eval", [V0, GRAPH_ON, "policy.graph.edges.invalidation=hard"]),
    "mem0-vs-mem0g/on_soft_max_age30": (
        "eval",
        [V0, GRAPH_ON, "policy.graph.edges.compaction=max_age", "policy.graph.edges.max_age_days=30"],
    ),
    "mem0-vs-mem0g/on_soft_keep_last1": (
        "eval",
        [V0, GRAPH_ON, "policy.graph.edges.compaction=keep_last", "policy.graph.edges.keep_last=1"],
    ),
    "local-llm-smoke/fixture": ("eval", [*LLM_SMOKE, "dataset=fixture", "judge.lm.timeout=600"]),
    "local-llm-smoke/locomo-conv26": (
        "eval",
        [
            *LLM_SMOKE,
            "dataset=locomo_dev",
            "dataset.conversations=[conv-26]",
            "dataset.max_sessions=2",
            "dataset.max_questions=10",
            "judge.lm.timeout=600",
        ],
    ),
    "production-smoke": ("export", ["policy=mem0_llm", "lm=openai", "lm.timeout=600"]),
    # issue 14 (new files, no older command line): the override lists they stand for
    "offline-sweep-budget500": (
        "sweep",
        [V0, "search_space=offline_levers", "sweep=budget500", "sweep.heldout.baselines=" + DEFAULTS_ONLY],
    ),
    "offline-sweep-levers": (
        "sweep",
        [V0, "search_space=offline_levers", "sweep.sampler.seed=1", "sweep.heldout.baselines=" + DEFAULTS_ONLY],
    ),
    **{f"offline-retrieval/{arm}": ("eval", [*HELDOUT, *before(arm, lever)]) for arm, lever in LEVERS.items()},
    "offline-retrieval/after": (
        "eval",
        [
            *HELDOUT,
            "policy/answerer=question_aware",
            "policy.extractor.resolve_dates=true",
            "policy.extractor.min_words=2",
            "policy/decider=offline",
            "policy.retriever.include_history=when_asked",
            "policy.retriever.slot_rank=true",
            "policy.retriever.top_k=32",
            "policy.retriever.threshold=0.3",
            "policy.retriever.hybrid=true",
            "policy.retriever.fusion=weighted",
            "policy.retriever.keyword_weight=0.25",
            "policy.retriever.keyword_depth=50",
            "policy.retriever.dense_depth=70",
            "policy.retriever.date_filter=boost",
            "policy.retriever.date_boost=1.75",
            "policy.retriever.rerank=true",
            "policy.retriever.rerank_depth=70",
            "policy.retriever.scorer._target_=memtune.policies.stages.rerank_lexical.LexicalScorer",
            "policy.retriever.scorer.prior=3.0",
            "policy.retriever.dedup_threshold=0.9",
            "policy.retriever.mmr_lambda=0.7",
            "policy.answerer.render=lines_date",
            "policy.answerer.rank_weight=1.0",
            "policy.answerer.fresh_weight=0.4",
            "policy.answerer.candidates=8",
            "policy.answerer.pool=32",
            "policy.answerer.join=3",
            "policy.answerer.join_margin=0.6",
            "policy.answerer.span_weight=1.75",
            "policy.answerer.dated_bonus=1.0",
        ],
    ),
    "offline-retrieval/rerank": (
        "eval",
        [
            *HELDOUT,
            *before("rerank", {}),
            "policy.retriever.rerank=true",
            "policy.retriever.rerank_depth=70",
            "+policy.retriever.scorer._target_=memtune.policies.stages.rerank_lexical.LexicalScorer",
            "+policy.retriever.scorer.prior=3.0",
        ],
    ),
    # experiments added since: the override list each file stands for
    "knowledge-updates/upd_threshold": ("eval", [*KU_UPD]),
    "knowledge-updates/upd_add_only": ("eval", [*KU_UPD, "policy/decider=add_only"]),
    "knowledge-updates/upd_add_only_slot_rank": ("eval", [*KU_UPD, "policy/decider=add_only", *KU_SLOT]),
    "knowledge-updates/upd_threshold_slot_rank": ("eval", [*KU_UPD, *KU_SLOT]),
    "knowledge-updates/upd_supersede_hard": ("eval", [*KU_UPD, "policy.decider.supersede=true"]),
    "knowledge-updates/upd_supersede_hard_slot_rank": ("eval", [*KU_UPD, "policy.decider.supersede=true", *KU_SLOT]),
    "knowledge-updates/upd_supersede_soft": ("eval", [*KU_UPD, *KU_SOFT]),
    "knowledge-updates/upd_supersede_soft_when_asked": ("eval", [*KU_UPD, *KU_SOFT, *KU_WHEN]),
    "knowledge-updates/upd_supersede_soft_always": (
        "eval",
        [*KU_UPD, *KU_SOFT, "policy.retriever.include_history=always"],
    ),
    "knowledge-updates/upd_supersede_soft_when_asked_slot_rank": ("eval", [*KU_UPD, *KU_SOFT, *KU_WHEN, *KU_SLOT]),
    "knowledge-updates/upd_oracle_threshold": ("eval", [*KU_UPD, *KU_ORACLE]),
    "knowledge-updates/upd_oracle_supersede_soft_when_asked": ("eval", [*KU_UPD, *KU_ORACLE, *KU_SOFT, *KU_WHEN]),
    "knowledge-updates/upd_oracle_supersede_soft_when_asked_slot_rank": (
        "eval",
        [*KU_UPD, *KU_ORACLE, *KU_SOFT, *KU_WHEN, *KU_SLOT],
    ),
    "knowledge-updates/upd_graph_on_soft": ("eval", [*KU_UPD, "policy/graph=on"]),
    "knowledge-updates/upd_graph_only_soft": ("eval", [*KU_UPD, "policy/graph=only"]),
    "knowledge-updates/upd_graph_only_soft_invalid": (
        "eval",
        [*KU_UPD, "policy/graph=only", "policy.graph.retrieval.include_invalid=true"],
    ),
    "knowledge-updates/upd_graph_only_hard": (
        "eval",
        [*KU_UPD, "policy/graph=only", "policy.graph.edges.invalidation=hard"],
    ),
    "knowledge-updates/heldout_threshold": ("eval", [*KU_HELD]),
    "knowledge-updates/heldout_add_only": ("eval", [*KU_HELD, "policy/decider=add_only"]),
    "knowledge-updates/heldout_threshold_slot_rank": ("eval", [*KU_HELD, *KU_SLOT]),
    "knowledge-updates/heldout_supersede_hard": ("eval", [*KU_HELD, "policy.decider.supersede=true"]),
    "knowledge-updates/heldout_supersede_soft": ("eval", [*KU_HELD, *KU_SOFT]),
    "knowledge-updates/heldout_supersede_soft_when_asked": ("eval", [*KU_HELD, *KU_SOFT, *KU_WHEN]),
    "knowledge-updates/heldout_supersede_soft_when_asked_slot_rank": ("eval", [*KU_HELD, *KU_SOFT, *KU_WHEN, *KU_SLOT]),
    "knowledge-updates/heldout_graph_only_soft": ("eval", [*KU_HELD, "policy/graph=only"]),
    "knowledge-updates/heldout_graph_only_soft_invalid": (
        "eval",
        [*KU_HELD, "policy/graph=only", "policy.graph.retrieval.include_invalid=true"],
    ),
    "knowledge-updates/seed1_threshold": ("eval", [*KU_SEED1]),
    "knowledge-updates/seed1_add_only": ("eval", [*KU_SEED1, "policy/decider=add_only"]),
    "knowledge-updates/seed1_supersede_soft_when_asked": ("eval", [*KU_SEED1, *KU_SOFT, *KU_WHEN]),
    "knowledge-updates/seed1_supersede_soft_when_asked_slot_rank": ("eval", [*KU_SEED1, *KU_SOFT, *KU_WHEN, *KU_SLOT]),
    "knowledge-updates/seed1_oracle_supersede_soft_when_asked_slot_rank": (
        "eval",
        [*KU_SEED1, *KU_ORACLE, *KU_SOFT, *KU_WHEN, *KU_SLOT],
    ),
    "knowledge-updates/people4_threshold": ("eval", [*KU_PEOPLE4]),
    "knowledge-updates/people4_add_only": ("eval", [*KU_PEOPLE4, "policy/decider=add_only"]),
    "knowledge-updates/people4_supersede_soft_when_asked": ("eval", [*KU_PEOPLE4, *KU_SOFT, *KU_WHEN]),
    "knowledge-updates/people4_supersede_soft_when_asked_slot_rank": (
        "eval",
        [*KU_PEOPLE4, *KU_SOFT, *KU_WHEN, *KU_SLOT],
    ),
    "knowledge-updates/people4_oracle_supersede_soft_when_asked_slot_rank": (
        "eval",
        [*KU_PEOPLE4, *KU_ORACLE, *KU_SOFT, *KU_WHEN, *KU_SLOT],
    ),
}


def header(path: Path) -> tuple[str, str, str]:
    """(app config name, the experiment name the header runs, the experiments/ folder it belongs to)."""
    text = path.read_text()
    assert text.startswith("# @package _global_\n"), f"{path}: an experiment file starts with `# @package _global_`"
    match = _RUN.search(text)
    assert match, f"{path}: the header needs the line `#   uv run memtune-<eval|sweep|export> experiment=<name> ...`"
    folder = re.search(r"^# experiments/([\w.-]+)", text, re.MULTILINE)
    assert folder, f"{path}: the header names its experiment folder (`# experiments/<folder>...`)"
    return APPS[match[1]], match[2], folder[1]


def composed(app: str, overrides: list[str]) -> dict:
    """The app's config, resolved (the values a run sees; the LM endpoints' env fallbacks, read from os.environ, are
    the same on both sides of a comparison)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose(app, overrides=overrides), resolve=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_file_composes_with_its_app(name, monkeypatch):
    for var in ("OPENAI_BASE_URL", "MEMTUNE_LM_MODEL", "MEMTUNE_JUDGE_MODEL", "MEMTUNE_JUDGE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    app, runs, folder = header(EXPERIMENTS / f"{name}.yaml")
    assert runs == name, f"conf/experiment/{name}.yaml: its header runs experiment={runs}"
    assert (ROOT / "experiments" / folder / "README.md").exists(), f"{name}: no experiments/{folder}/README.md"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(app, overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["experiment"] == name
    OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)  # it resolves


@pytest.mark.parametrize("name", sorted(OLD))
def test_an_experiment_composes_to_its_old_override_list(name):
    app, old = OLD[name]
    assert composed(app, [f"experiment={name}"]) == composed(app, old)


def test_every_experiment_has_a_file_and_every_file_an_old_command_or_a_reason():
    assert sorted(NAMES) == sorted(OLD), "a new conf/experiment file: add its old override list (or [] ) to OLD"


def test_a_command_line_override_still_beats_the_experiment():
    cfg = composed("eval", ["experiment=mem0-vs-mem0g/on_hard", "policy.graph.edges.invalidation=soft", "policy=rag"])
    assert cfg["policy"]["name"] == "rag" and cfg["policy"]["graph"]["edges"]["invalidation"] == "soft"
    cfg = composed("sweep", ["experiment=offline-sweep", "sweep.n_trials=60"])
    assert cfg["sweep"]["n_trials"] == 60 and cfg["sweep"]["tune_conversations"][0] == "conv-26"


def test_the_experiment_is_merged_after_each_apps_own_settings():
    """An experiment can set any key of any app (it comes last in each defaults list), e.g. the sweep's trials."""
    for app in ("eval", "sweep", "export"):
        defaults = OmegaConf.load(CONF_DIR / f"{app}.yaml").defaults
        assert defaults[-1] == {"experiment": None} and "_self_" in defaults, app


@pytest.mark.parametrize("name", NAMES)
def test_the_experiment_readme_cites_it(name):
    _, _, folder = header(EXPERIMENTS / f"{name}.yaml")
    here = ROOT / "experiments" / folder
    cited = (here / "README.md").read_text()
    if (here / "run.sh").exists():
        script = (here / "run.sh").read_text()
        arm = name.rsplit("/", 1)[-1]
        assert f"experiment={name.rsplit('/', 1)[0]}/$name" in script and re.search(
            rf"^\s+run {arm}\b", script, re.M
        ), f"experiments/{folder}/run.sh does not run conf/experiment/{name}.yaml"
        cited += script.replace("$name", arm)
    assert f"experiment={name}" in cited or f"experiment={name.rsplit('/', 1)[0]}/" in cited, (
        f"experiments/{folder}/README.md does not cite experiment={name} in its Command section"
    )


@pytest.mark.parametrize("script", sorted((ROOT / "experiments").glob("*/run.sh")), ids=lambda p: p.parent.name)
def test_every_run_of_a_run_script_is_an_experiment_file(script):
    runs = re.findall(r"^\s+run (\S+)", script.read_text(), re.MULTILINE)
    assert runs, f"{script}: no `run <name>` lines"
    missing = [r for r in runs if not (EXPERIMENTS / script.parent.name / f"{r}.yaml").exists()]
    assert not missing, f"{script} runs {missing}: add conf/experiment/{script.parent.name}/<run>.yaml for each"
