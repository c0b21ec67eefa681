"""A study's identity (base config and both splits: resuming with another one is refused), the knobs a study does
not sample because no objective depends on them, and the bundle's record of what was tuned and what defaulted."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.optimize.sweep.knob_deps import KnobNotSampledWarning, knob_stage, moved_by, restrict
from memtune.optimize.sweep.scoring import Objective
from memtune.optimize.sweep.search_space import SearchSpace
from memtune.optimize.sweep.study import Sweep

ROOT = Path(__file__).resolve().parents[1]
RECALL = Objective("evidence_recall", "scores.overall.evidence_recall", "maximize")
TOKENS = Objective("context_tokens", "scores.overall.context_tokens", "minimize")
F1 = Objective("f1", "scores.overall.f1", "maximize")


def space(name: str) -> SearchSpace:
    return SearchSpace.from_config(OmegaConf.load(CONF_DIR / "search_space" / f"{name}.yaml"))


def two_conversations(tmp: Path) -> Path:
    data = json.loads((ROOT / "data" / "fixture" / "fixture.json").read_text())
    copy = json.loads(json.dumps(data[0]))
    copy["sample_id"] = "fixture-2"
    path = tmp / "two.json"
    path.write_text(json.dumps([data[0], copy]))
    return path


def make_sweep(tmp: Path, *overrides: str, name: str = "s") -> Sweep:
    """A Sweep on the two-conversation fixture, constructed only: the signature check runs in the constructor."""
    base = [
        f"cache_dir={tmp / 'cache'}",
        "dataset=fixture",
        f"dataset.path={two_conversations(tmp)}",
        f"sweep.storage=sqlite:///{tmp / 'optuna.db'}",
        f"sweep.study_name={name}",
        "sweep.tune_conversations=[fixture-1]",
        "sweep.holdout_conversations=[fixture-2]",
        "tracking=none",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KnobNotSampledWarning)
            return Sweep(compose(config_name="sweep", overrides=base), tmp / "run", base)


# ---- the study's identity --------------------------------------------------------------------------------------
def test_same_base_resumes_and_free_settings_may_change(tmp_path):
    first = make_sweep(tmp_path)
    stored = first.study.user_attrs["signature"]
    assert stored["tune"] == ["fixture-1"] and stored["holdout"] == ["fixture-2"]
    assert stored["base"]["embedder"]["_target_"].endswith("MiniLMEmbedder") and stored["dataset"]["sha256"]
    assert "sweep" not in stored["base"] and "tracking" not in stored["base"]
    for free in (
        [],  # the same command
        ["sweep.n_trials=60"],
        ["sweep.sampler.seed=7", "sweep.pruner.n_startup_trials=2", "sweep.heldout.max_pareto=2"],
        ["embedder=minilm", "embedder.batch_size=8"],  # the default written out; batching does not change vectors
        ["progress=true", "ingest_cache=false", "sweep.enqueue=[]", "sweep.max_consecutive_failures=3"],
    ):
        again = make_sweep(tmp_path, *free)
        assert again.study.study_name == "s", free


@pytest.mark.parametrize(
    "change, named",
    [
        (["embedder=openai"], "base.embedder._target_"),
        (["policy=rag"], "base.policy.name"),
        (["policy.answerer.max_words=3"], "base.policy.answerer.max_words"),  # not sampled, but its value differs
        (["lm=openai"], "base.lm"),
        (["dataset.max_questions=2"], "base.dataset.max_questions"),
        (["overall_categories=[1,2]"], "base.overall_categories"),
        (["sweep.holdout_conversations=[]"], "holdout"),
        (["sweep=f1"], "objectives"),
        (["search_space=retrieval_only"], "search_space"),
    ],
)
def test_resuming_with_another_base_is_refused(tmp_path, change, named):
    make_sweep(tmp_path)
    with pytest.raises(ValueError) as err:
        make_sweep(tmp_path, *change)
    message = str(err.value)
    assert "study 's'" in message and named in message, message
    assert "sweep.study_name=s-" in message  # how to start a new study instead
    assert "It was started with the command-line overrides:" in message
    # the suggested name is a new study of this base: the same command with it starts, then resumes it
    new_name = message.rsplit("sweep.study_name=", 1)[1].strip()
    assert make_sweep(tmp_path, *change, name=new_name).study.study_name == new_name
    assert make_sweep(tmp_path, *change, name=new_name).study.study_name == new_name


def test_a_study_without_a_recorded_base_is_refused_with_why(tmp_path):
    first = make_sweep(tmp_path)
    old = {k: v for k, v in first.study.user_attrs["signature"].items() if k not in ("base", "holdout")}
    first.study.set_user_attr("signature", old)
    with pytest.raises(ValueError, match="older memtune that did not record its base config"):
        make_sweep(tmp_path)


def test_secrets_and_worker_endpoints_stay_out_of_the_identity(tmp_path, monkeypatch):
    from memtune.optimize.sweep.identity import base_identity

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=["lm=openai", "judge=openai", "lm.timeout=5"])
        monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@host-a:8000/v1")
        a = base_identity(cfg)
        monkeypatch.setenv("OPENAI_BASE_URL", "http://host-b:8000/v1")
        b = base_identity(compose("sweep", overrides=["lm=openai", "judge=openai", "lm.timeout=600"]))
        literal = base_identity(compose("sweep", overrides=["lm=openai", "lm.api_base=http://u:secret@h:1/v1"]))
    assert literal["lm"]["api_base"] == "http://***@h:1/v1"  # a literal endpoint counts, its password does not
    assert a == b  # each worker's endpoint and timeout are its own
    assert a["lm"]["api_base"].startswith("${oc.env:") and "timeout" not in a["lm"]
    assert "pw" not in json.dumps(a) and "pw" not in json.dumps(b)


# ---- knobs no objective depends on ------------------------------------------------------------------------------
def test_the_declared_dependency_map():
    assert knob_stage("policy.answerer.max_words") == knob_stage("policy/answerer") == "answer"
    assert knob_stage("policy.retriever.top_k") == knob_stage("policy.graph.retrieval.hops") == "retrieve"
    assert knob_stage("policy/graph") == knob_stage("policy.graph.edges.invalidation") == "ingest"
    assert knob_stage("policy.decider.update_threshold") == knob_stage("embedder") == knob_stage("lm.model") == "ingest"
    assert knob_stage("judge.retries") == "judge"
    assert moved_by("scores.overall.evidence_recall") == moved_by("scores.2 temporal.recall_at_1000")
    assert moved_by("scores.overall.recall_ctx_1000") == moved_by("scores.overall.graph_evidence_recall")
    assert moved_by("scores.overall.context_tokens") == {"ingest", "retrieve"}
    assert moved_by("scores.overall.f1") == moved_by("scores.overall.abstained") == {"ingest", "retrieve", "answer"}
    assert moved_by("scores.overall.judge") == {"ingest", "retrieve", "answer", "judge"}
    assert moved_by("cost.memories_stored") == moved_by("cost.ingest.phases.extract.calls") == {"ingest"}
    assert (
        moved_by("wall_seconds")
        == moved_by("scores.overall.some_new_metric")
        == {  # unknown: never drop
            "ingest",
            "retrieve",
            "answer",
            "judge",
        }
    )


def test_recall_vs_tokens_drops_answerer_knobs_and_f1_keeps_them():
    offline = space("offline")
    kept, dropped = restrict(offline, [RECALL, TOKENS])
    answer_knobs = {k.target for k in offline.knobs if knob_stage(k.target) == "answer"}
    assert {"policy/answerer", "policy.answerer.max_words", "policy.answerer.pool"} <= answer_knobs
    assert set(dropped) == answer_knobs
    assert (
        "answer stage" in dropped["policy.answerer.max_words"]
        and "evidence_recall" in dropped["policy.answerer.max_words"]
    )
    # the rendered context's style sets what context_tokens count: a recall-vs-tokens study samples it
    assert [k.target for k in kept.knobs] == [k.target for k in offline.knobs if k.target not in answer_knobs]
    assert "policy.answerer.render" in [k.target for k in kept.knobs]
    # every retrieval lever of the offline space is a retrieval knob (sampled by recall studies)
    levers = ("hybrid", "fusion", "rrf_k", "keyword_weight", "keyword_depth", "dense_depth", "recency_weight")
    levers += ("recency_half_life_days", "date_filter", "date_boost", "dedup_threshold", "mmr_lambda")
    assert {f"policy.retriever.{k}" for k in levers} <= {k.target for k in kept.knobs}
    assert all(knob_stage(f"policy.retriever.{k}") == "retrieve" for k in levers)
    assert knob_stage("policy.extractor.resolve_dates") == "ingest"
    budget = Objective("recall_at_1000", "scores.overall.recall_at_1000", "maximize")
    assert set(restrict(offline, [budget])[1]) == set(dropped)
    for objectives in ([F1], [RECALL, F1], [Objective("j", "scores.overall.judge", "maximize")]):
        kept, dropped = restrict(offline, objectives)
        assert dropped == {} and len(kept.knobs) == len(offline.knobs)
    # the YAML spaces keep their answerer knobs: they matter for sweep=f1
    assert {"policy.answerer.max_words", "policy.answerer.candidates"} <= {
        k.target for k in space("retrieval_only").knobs
    }
    # graph retrieval knobs move recall; an ingest-only objective drops them and the retriever's
    graph = space("graph")
    assert restrict(graph, [RECALL, TOKENS])[1] == {}
    _, ingest_only = restrict(graph, [Objective("m", "cost.memories_stored", "minimize")])
    assert set(ingest_only) == {k.target for k in graph.knobs if k.target.startswith("policy.graph.retrieval.")}


def test_a_knob_that_gates_a_sampled_knob_is_kept_and_an_empty_space_is_an_error():
    gated = SearchSpace.from_config(
        {
            "knobs": [
                {"target": "policy/answerer", "type": "categorical", "choices": ["extractive", "llm"]},
                {"target": "policy.answerer.max_words", "type": "int", "low": 2, "high": 9},
                {
                    "target": "policy.retriever.top_k",
                    "type": "int",
                    "low": 1,
                    "high": 9,
                    "when": {"policy/answerer": "extractive"},
                },
            ]
        }
    )
    kept, dropped = restrict(gated, [RECALL])
    assert [k.target for k in kept.knobs] == ["policy/answerer", "policy.retriever.top_k"]
    assert set(dropped) == {"policy.answerer.max_words"}
    with pytest.raises(ValueError, match="none of its knobs can move the objectives.*sweep=f1"):
        restrict(space("retrieval_only"), [Objective("m", "cost.memories_stored", "minimize")])


def test_the_sweep_warns_drops_and_does_not_enqueue_dropped_knobs(tmp_path):
    with pytest.warns(KnobNotSampledWarning, match="policy.answerer.max_words"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            base = [f"cache_dir={tmp_path / 'cache'}", "dataset=fixture", "sweep.tune_conversations=null"]
            base += ["policy=mem0_offline_v0"]  # the defaults before issue 14: every lever off, render json
            base += ["sweep.holdout_conversations=null", f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}"]
            recall = Sweep(compose("sweep", overrides=base), tmp_path / "run", base)
    not_sampled = set(recall.study.user_attrs["signature"]["not_sampled"])
    assert {"policy/answerer", "policy.answerer.max_words", "policy.answerer.candidates"} <= not_sampled
    assert "policy.answerer.render" not in not_sampled
    assert all(knob_stage(t) == "answer" for t in not_sampled)
    [queued] = recall.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    fixed = queued.system_attrs["fixed_params"]
    assert "policy.retriever.top_k" in fixed and not any(knob_stage(k) == "answer" for k in fixed)
    assert fixed["policy.answerer.render"] == "json" and fixed["policy.retriever.mmr_lambda"] is None

    f1 = make_sweep(tmp_path, "sweep=f1", name="f1")
    assert f1.not_sampled == {} and f1.study.user_attrs["signature"]["not_sampled"] == {}
    [queued] = f1.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"]["policy.answerer.max_words"] == 6


# ---- the bundle's record ----------------------------------------------------------------------------------------
def test_a_study_export_records_tuned_defaulted_and_not_sampled_knobs(tmp_path):
    from memtune.optimize.export.app import export_from_overrides
    from memtune.optimize.sweep.app import sweep_from_overrides
    from memtune.policies.runtime.bundle import read_bundle

    overrides = [
        "policy=mem0_offline_v0",  # the defaults before issue 14: every lever off (their knobs inactive)
        f"cache_dir={tmp_path / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "sweep.study_name=rec",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "sweep.heldout.baselines=[]",
        "sweep.n_trials=1",
        "tracking=none",
    ]
    with pytest.warns(KnobNotSampledWarning):
        sweep_from_overrides(overrides, tmp_path / "run")  # trial 0: the enqueued defaults
    trial = optuna.load_study(study_name="rec", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[0]
    assert trial.state.name == "COMPLETE"
    assert not any(knob_stage(p) == "answer" for p in trial.params) and "policy.answerer.render" in trial.params
    result = export_from_overrides(
        [
            "study=rec",
            f"storage=sqlite:///{tmp_path / 'optuna.db'}",
            "pick=trial:0",
            f"out={tmp_path / 'bundle'}",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    knobs = read_bundle(result["bundle"]).source["knobs"]
    assert knobs["tuned"] == {
        "policy/extractor": "heuristic",
        "policy.extractor.min_words": 4,
        "policy/decider": "threshold",
        "policy.decider.update_threshold": 0.85,
        "policy.decider.noop_threshold": 0.95,
        "policy.extractor.resolve_dates": False,
        "policy.retriever.top_k": 30,
        "policy.retriever.threshold": 0.0,
        "policy.retriever.hybrid": False,  # every lever off: its conditional knobs are inactive, not tuned
        "policy.retriever.recency_weight": 0.0,
        "policy.retriever.date_filter": "off",
        "policy.retriever.dedup_threshold": None,
        "policy.retriever.mmr_lambda": None,
        "policy.answerer.render": "json",
    }
    assert "inactive" in knobs["not_sampled"]["policy.retriever.fusion"]
    assert (
        knobs["defaulted"]["policy.answerer.max_words"] == 6 and knobs["defaulted"]["policy.answerer.candidates"] == 3
    )
    assert "policy.retriever.top_k" not in knobs["defaulted"] and "embedder.max_length" in knobs["defaulted"]
    assert not any(path.endswith("_target_") for path in knobs["defaulted"])
    assert "answer stage" in knobs["not_sampled"]["policy.answerer.max_words"]
    assert "inactive" in knobs["not_sampled"]["policy.extractor.chunk_turns"]  # heuristic extractor: not active
    assert set(knobs["tuned"]) | set(knobs["not_sampled"]) == {k.target for k in space("offline").knobs}


def test_the_cli_refuses_another_embedder_without_a_traceback(tmp_path):
    """The issue's repro: `memtune-sweep embedder=openai` used to resume the offline study and mix its trials."""
    import os
    import subprocess
    import sys

    make_sweep(tmp_path, "sweep.tune_conversations=null", "sweep.holdout_conversations=null", name="cli")
    proc = subprocess.run(
        [sys.executable, "-m", "memtune.optimize.sweep.app", "embedder=openai", f"hydra.run.dir={tmp_path / 'run'}"]
        + [f"cache_dir={tmp_path / 'cache'}", "dataset=fixture", f"dataset.path={tmp_path / 'two.json'}"]
        + [f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", "sweep.study_name=cli", "tracking=none"]
        + ["sweep.tune_conversations=null", "sweep.holdout_conversations=null"],
        cwd=ROOT,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "\nmemtune-sweep: study 'cli'" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("policy.answerer.max_words: answer stage") == 1  # said once, not warned twice
    assert "base.embedder._target_" in proc.stderr and "sweep.study_name=cli-" in proc.stderr
    assert optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[0].state.name == (
        "WAITING"
    )  # nothing ran: the enqueued defaults trial is still waiting


def test_answer_knobs_cannot_move_what_the_map_says_they_cannot(tmp_path, embedder):
    """The declaration checked against the code: two very different extractive answerers over one ingested store
    give different answers but the same retrieval, recall (every budget) and context tokens."""
    from memtune.optimize.data.locomo import load_locomo, resolve_path
    from memtune.optimize.evaluation.evaluate import answer_all, ingest_all
    from memtune.policies.build import build_policy
    from memtune.policies.stages.answer import ExtractiveAnswerer

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=["dataset=fixture"])
    dataset = load_locomo(resolve_path(cfg.dataset.path))
    policy = build_policy(cfg, tmp_path / "store", embedder=embedder)
    ingest_all(policy, dataset, progress=False)
    frames = []
    for knobs in ({"max_words": 2, "candidates": 1}, {"max_words": 12, "candidates": 5, "dates_for_when": False}):
        assert {knob_stage(f"policy.answerer.{k}") for k in knobs} == {"answer"}
        policy.answerer = ExtractiveAnswerer(**knobs)
        frames.append(answer_all(policy, dataset, progress=False))
    retrieval = [c for c in frames[0].columns if moved_by(f"scores.overall.{c}") == {"ingest", "retrieve"}]
    budgeted = [c for c in retrieval if "recall" in c and c != "evidence_recall"]  # recall at a token budget
    assert {"evidence_recall", "context_tokens"} <= set(retrieval) and budgeted
    assert frames[0].select([*retrieval, "retrieved_ids"]).equals(frames[1].select([*retrieval, "retrieved_ids"]))
    assert frames[0]["prediction"].to_list() != frames[1]["prediction"].to_list()  # the knobs do act on answers


def test_the_levers_space_is_the_offline_spaces_retrieval_knobs_unchanged():
    """search_space=offline_levers (the issue-14 studies) is the offline space's retrieval levers and render style with
    the same ranges and conditions, and nothing that re-ingests: every trial shares one cached ingestion."""
    levers, offline = space("offline_levers"), space("offline")
    by_target = {k.target: k for k in offline.knobs}
    assert [k.target for k in levers.knobs] == [k.target for k in offline.knobs if knob_stage(k.target) == "retrieve"]
    assert all(k == by_target[k.target] for k in levers.knobs)
    assert {"policy.retriever.hybrid", "policy.retriever.mmr_lambda", "policy.answerer.render"} <= set(by_target)
    assert not any(knob_stage(k.target) in ("ingest", "answer") for k in levers.knobs)
