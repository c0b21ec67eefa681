"""Policy bundles: export (plain config, Optuna study), load, and identical behaviour after the round trip;
refusals (unknown schema, missing/corrupt files, wrong embedder, secrets, the oracle extractor)."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from memtune.optimize.data.locomo import load_locomo
from memtune.optimize.export.app import CONF_DIR, export_from_overrides
from memtune.optimize.export.mlflow_run import split_overrides
from memtune.optimize.export.sources import ExportError
from memtune.policies.build import STAGES, build_policy
from memtune.policies.policy import MemoryPolicy
from memtune.policies.runtime.bundle import BundleError, load_policy, read_bundle
from memtune.policies.runtime.bundle_config import bundle_config
from memtune.policies.runtime.bundle_save import policy_modules, save_bundle
from memtune.policies.types import Message, Scope

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "fixture" / "fixture.json"


def composed(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="export", overrides=list(overrides))


def ingest(policy, conversation):
    """Every message pair of the conversation -> the events the policy returned (ids dropped: they are uuids)."""
    scope, events = Scope(user_id=conversation.sample_id), []
    for session in conversation.sessions:
        messages = [t.as_message() for t in session.turns]
        for start in range(0, len(messages), 2):
            events += [(e.op, e.text, e.old_text) for e in policy.add(messages[start : start + 2], scope)]
    return events


def behaviour(policy, conversation):
    """Everything observable: ingestion events, the stored memories, search results and answers per question."""
    events = ingest(policy, conversation)
    scope = Scope(user_id=conversation.sample_id)
    stored = sorted((m.text, m.provenance, m.timestamp) for m in policy.store.get_all(scope))
    searches = []
    for q in conversation.questions:
        answer, memories = policy.answer(q.question, scope)
        searches.append((answer, [(m.text, m.provenance, round(m.score, 6)) for m in memories]))
    return events, stored, searches


def test_offline_default_round_trip_behaves_identically(tmp_path):
    result = export_from_overrides(["policy=mem0_offline", f"out={tmp_path / 'bundle'}"])
    info = read_bundle(result["bundle"])
    assert info.version.startswith("mem0_offline-") and len(info.version) == len("mem0_offline-") + 8
    assert info.embedder_id == "minilm-l6-v2-onnx-int8" and info.embedder_dim == 384
    assert info.source == {"kind": "config", "overrides": ["policy=mem0_offline"]}  # out= is not a policy override
    assert info.scores["tune"] is None and "no scores" in info.scores["note"]
    conversation = load_locomo(FIXTURE).conversations[0]

    original = build_policy(composed("policy=mem0_offline"), tmp_path / "a", cache_dir=tmp_path / "cache")
    loaded, loaded_info = load_policy(result["bundle"], tmp_path / "b", cache_dir=tmp_path / "cache")
    assert loaded_info == info
    expected, actual = behaviour(original, conversation), behaviour(loaded, conversation)
    assert expected == actual
    events, stored, searches = actual
    assert len(stored) > 5 and {op for op, *_ in events} >= {"ADD"} and all(hits for _, hits in searches)
    assert loaded.store.policy_version == info.version
    # the eval run keeps no old store versions; the bundle carries the production store settings instead
    assert composed("policy=mem0_offline").store.keep_last_versions == 0
    assert info.config["store"]["keep_last_versions"] == 100 and loaded.store.keep_last_versions == 100
    # same config -> same version: the version names the behaviour
    again = export_from_overrides(["policy=mem0_offline", f"out={tmp_path / 'again'}"])
    assert again["version"] == info.version


def test_graph_policy_round_trip(tmp_path, embedder):
    """Mem0g (policy/graph=on, spaCy): the graph is rebuilt from the bundle and answers the same."""
    cfg = composed("policy=mem0_offline", "policy/graph=on")
    original = build_policy(cfg, tmp_path / "a", embedder=embedder)
    info = save_bundle(
        tmp_path / "bundle",
        bundle_config(cfg),
        embedder_id=embedder.id,
        embedder_dim=embedder.dim,
        stages=policy_modules(original),
    )
    loaded, _ = load_policy(info.path, tmp_path / "b", embedder=embedder)
    assert loaded.graph is not None and loaded.graph.mode == "on"
    conversation = load_locomo(FIXTURE).conversations[0]
    expected, actual = behaviour(original, conversation), behaviour(loaded, conversation)
    assert expected[:2] == actual[:2]  # the same events and vector memories
    # graph triplets of equal score come in no fixed order, even from two fresh policies of the same config (ties
    # among seed nodes change the entity walk): compare the best score per question, and the whole graph
    assert [max(s for *_, s in hits) for _, hits in expected[2]] == [max(s for *_, s in hits) for _, hits in actual[2]]
    scope = Scope(user_id=conversation.sample_id)
    edges = [
        sorted((e["text"], bool(e["invalidated_at"])) for e in p.graph.store.scope_edges(scope, include_invalid=True))
        for p in (original, loaded)
    ]
    assert edges[0] == edges[1] and len(edges[0]) > 10
    assert loaded.graph.counts == original.graph.counts and loaded.graph.counts["edges_added"] > 0

    # an LLM graph stage's module state is saved and loaded like the others
    llm_cfg = composed("policy=mem0_llm", "lm=openai", "policy/graph=on", "policy/graph/entities=llm")
    llm_info = save_bundle(tmp_path / "llm", bundle_config(llm_cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)
    assert "graph.entities" in llm_info.modules and "graph.relations" not in llm_info.modules
    policy, _ = load_policy(llm_info.path, tmp_path / "c", embedder=embedder, lm=DummyLM([]))
    assert set(policy.graph.llm_stages()) == {"graph.entities"}


def optimised_llm_policy(cfg, store_uri, embedder, lm):
    """mem0_llm stages with changed instructions and demos, as a DSPy optimiser would leave them."""
    stages = {name: instantiate(cfg.policy[name]) for name in STAGES}
    extractor = stages["extractor"].predict
    extractor.signature = extractor.signature.with_instructions("TUNED: extract durable personal facts only.")
    extractor.demos = [
        dspy.Example(
            new_messages=["[1 May 2023] Ann: I moved to Oslo."],
            recent_messages=[],
            summary="",
            facts=["Ann moved to Oslo in May 2023"],
        )
    ]
    decider = stages["decider"].predict
    decider.signature = decider.signature.with_instructions("TUNED: prefer UPDATE over ADD for the same topic.")
    stages["answerer"].predict.demos = [
        dspy.Example(question="Where does Ann live?", memories=[], answer="Oslo (demo)")
    ]
    from memtune.policies.store.store import MemoryStore

    store = MemoryStore(store_uri, dim=embedder.dim, embedder_id=embedder.id)
    return MemoryPolicy(**stages, embedder=embedder, store=store, lm=lm)


def script():
    """The LM's answers for two message pairs and one question (DummyLM replays them in order)."""
    return [
        {"facts": json.dumps(["Melanie ran a charity race on 13 May 2023", "Caroline lives in Boston"])},
        {
            "operations": json.dumps(
                [
                    {"event": "ADD", "text": "Melanie ran a charity race on 13 May 2023"},
                    {"event": "ADD", "text": "Caroline lives in Boston"},
                ]
            )
        },
        {"facts": json.dumps(["Caroline moved to Denver"])},
        {"operations": json.dumps([{"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver"}])},
        {"answer": "Denver"},
    ]


PAIRS = [
    [
        Message("Melanie", "I ran a charity race for mental health last Saturday.", "D1:1", "20 May 2023"),
        Message("Caroline", "That's great! I live in Boston now.", "D1:2", "20 May 2023"),
    ],
    [Message("Caroline", "Big news: I moved to Denver.", "D2:1", "9 Jun 2023")],
]


def run_llm(policy):
    scope = Scope(user_id="caroline")
    events = [(e.op, e.text, e.old_text) for pair in PAIRS for e in policy.add(pair, scope)]
    answer, memories = policy.answer("Where does Caroline live?", scope)
    prompts = [entry["messages"] for entry in policy.lm.history]
    return (
        events,
        sorted((m.text, m.provenance) for m in policy.store.get_all(scope)),
        answer,
        [m.text for m in memories],
        prompts,
    )


def test_llm_policy_with_tuned_prompts_round_trips(tmp_path, embedder):
    cfg = composed("policy=mem0_llm", "lm=openai")
    original = optimised_llm_policy(cfg, tmp_path / "a", embedder, DummyLM(script()))
    info = save_bundle(
        tmp_path / "bundle",
        bundle_config(cfg),
        embedder_id=embedder.id,
        embedder_dim=embedder.dim,
        stages=original.stages(),
        scores={"chosen_on": None},
        source={"kind": "test"},
    )
    assert sorted(info.modules) == ["answerer", "decider", "extractor", "summarizer"]
    saved = json.loads((tmp_path / "bundle" / "modules" / "extractor.json").read_text())
    assert saved["predict"]["signature"]["instructions"].startswith("TUNED: extract")
    assert saved["predict"]["demos"][0]["facts"] == ["Ann moved to Oslo in May 2023"]

    expected = run_llm(original)
    loaded, _ = load_policy(tmp_path / "bundle", tmp_path / "b", lm=DummyLM(script()), embedder=embedder)
    assert loaded.extractor.predict.signature.instructions == "TUNED: extract durable personal facts only."
    actual = run_llm(loaded)
    assert actual == expected  # same events, memories, answer, retrieved memories and the very same prompts
    events, stored, answer, _, prompts = actual
    assert [op for op, *_ in events] == ["ADD", "ADD", "UPDATE"] and answer == "Denver"
    # "lives in Denver" replaces "lives in Boston": it cites the Denver turn only (policies/provenance.py)
    assert ("Caroline lives in Denver", ("D2:1",)) in stored
    first = json.dumps(prompts[0])
    assert "TUNED: extract durable personal facts only." in first and "I moved to Oslo." in first
    assert "TUNED: prefer UPDATE" in json.dumps(prompts[1]) and "Oslo (demo)" in json.dumps(prompts[-1])

    # a changed prompt is a different policy: another version
    other = optimised_llm_policy(cfg, tmp_path / "c", embedder, DummyLM([]))
    other.answerer.predict.demos = []
    info2 = save_bundle(
        tmp_path / "bundle2",
        bundle_config(cfg),
        embedder_id=embedder.id,
        embedder_dim=embedder.dim,
        stages=other.stages(),
    )
    assert info2.version != info.version


@pytest.fixture
def offline_bundle(tmp_path, embedder):
    cfg = composed("policy=mem0_offline")
    return save_bundle(tmp_path / "bundle", bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)


def test_unknown_schema_version_is_refused(offline_bundle, tmp_path, embedder):
    path = Path(offline_bundle.path) / "bundle.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"schema_version 99 is not supported .*supports \[1\]"):
        load_policy(offline_bundle.path, tmp_path / "s", embedder=embedder)


def test_missing_or_corrupt_files_are_named(tmp_path, embedder):
    cfg = composed("policy=mem0_llm", "lm=openai")
    root = tmp_path / "llm"
    save_bundle(root, bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)
    lm = DummyLM([])
    module = root / "modules" / "decider.json"
    module.write_text(module.read_text().replace('"instructions": "', '"instructions": "Edited. ', 1))
    with pytest.raises(BundleError, match=r"decider\.json does not match the sha256"):
        load_policy(root, tmp_path / "s", lm=lm, embedder=embedder)
    module.unlink()
    with pytest.raises(BundleError, match=r"decider\.json is missing"):
        load_policy(root, tmp_path / "s", lm=lm, embedder=embedder)
    (root / "bundle.json").write_text("{ not json")
    with pytest.raises(BundleError, match=r"bundle\.json is corrupt"):
        load_policy(root, tmp_path / "s", lm=lm, embedder=embedder)
    (root / "bundle.json").unlink()
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_policy(root, tmp_path / "s", lm=lm, embedder=embedder)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())  # nothing was created


def test_embedder_mismatch_is_refused(offline_bundle, tmp_path):
    class OtherEmbedder:
        id, dim = "other-model", 64

    with pytest.raises(BundleError, match="'test-hash-64'.*'other-model'.*not comparable"):
        load_policy(offline_bundle.path, tmp_path / "s", embedder=OtherEmbedder())


def test_existing_bundle_is_not_overwritten(offline_bundle, tmp_path, embedder):
    cfg = composed("policy=rag")
    with pytest.raises(FileExistsError, match="not empty"):
        save_bundle(offline_bundle.path, bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)
    assert read_bundle(offline_bundle.path).name == "mem0_offline"
    replaced = save_bundle(
        offline_bundle.path, bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim, overwrite=True
    )
    assert replaced.name == "rag" and not list(Path(offline_bundle.path).parent.glob(".bundle.*"))


def test_no_secrets_in_the_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-0123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:hunter2@llm.internal:8000/v1")
    result = export_from_overrides(["policy=mem0_llm", "lm=openai", f"out={tmp_path / 'b'}"])
    text = "".join(p.read_text() for p in Path(result["bundle"]).rglob("*.json"))
    assert "SECRET" not in text and "hunter2" not in text and "llm.internal" not in text
    lm = json.loads((Path(result["bundle"]) / "bundle.json").read_text())["config"]["lm"]
    assert lm["api_key_env"] == "OPENAI_API_KEY" and lm["api_base"] == "${oc.env:OPENAI_BASE_URL,null}"
    assert lm["model"] == "openai/gpt-4o-mini"  # the tuned model is pinned; the endpoint is the deployment's
    with pytest.raises(ValueError, match=r"config\.lm\.api_key holds a literal secret"):
        bundle_config(composed("policy=mem0_llm", "lm=openai", "+lm.api_key=sk-literal"))
    with pytest.raises(ValueError, match="secret"):
        bundle_config(composed("policy=mem0_llm", "lm=openai", "lm.model=sk-test-SECRET-0123456789"))


def test_oracle_extractor_is_not_exportable(tmp_path, embedder):
    cfg = composed("policy/extractor=observations")
    with pytest.raises(ValueError, match="ORACLE"):
        save_bundle(tmp_path / "b", bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim)
    assert not (tmp_path / "b").exists()


def test_split_overrides_keeps_lists_whole():
    assert split_overrides("dataset=fixture 'x=[a, b]' y={k: 1}  z=2") == [
        "dataset=fixture",
        "'x=[a, b]'",
        "y={k: 1}",
        "z=2",
    ]


def make_study(tmp_path):
    """A finished two-objective study as memtune-sweep leaves it (user attrs included), without running trials."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr(
        "signature",
        {
            "objectives": [
                {"name": "evidence_recall", "metric": "scores.overall.evidence_recall", "direction": "maximize"},
                {"name": "context_tokens", "metric": "scores.overall.context_tokens", "direction": "minimize"},
            ],
            "tune": ["conv-26"],
        },
    )
    dist = {"policy.retriever.top_k": optuna.distributions.IntDistribution(1, 50)}
    for top_k, values in ((5, [0.4, 100.0]), (20, [0.7, 400.0]), (30, [0.6, 500.0])):  # 30 is dominated
        study.add_trial(
            optuna.trial.create_trial(
                params={"policy.retriever.top_k": top_k},
                distributions=dist,
                values=values,
                user_attrs={
                    "overrides": [f"policy.retriever.top_k={top_k}"],
                    "base_overrides": ["policy=rag"],
                    "config_name": "sweep",
                    "metrics": {"scores.overall.f1": 0.1},
                },
            )
        )
    return storage


def test_export_from_a_study_composes_the_trial_like_the_sweep(tmp_path):
    storage = make_study(tmp_path)
    result = export_from_overrides(
        ["study=s", f"storage={storage}", "pick=pareto:evidence_recall", f"out={tmp_path / 'best_recall'}"]
    )
    info = read_bundle(result["bundle"])
    policy = info.config["policy"]
    assert policy["name"] == "rag" and policy["retriever"]["top_k"] == 20  # base overrides + the trial's own
    assert info.source["trial"] == 1 and info.source["overrides"] == ["policy.retriever.top_k=20"]
    knobs = info.source["knobs"]  # an older study recorded no knobs it left unsampled
    assert knobs["tuned"] == {"policy.retriever.top_k": 20} and knobs["not_sampled"] == {}
    assert "policy.retriever.top_k" not in knobs["defaulted"] and knobs["defaulted"]["policy.name"] == "rag"
    assert info.scores["chosen_on"] == "tune" and info.scores["heldout"] is None
    assert info.scores["tune"]["objectives"] == {"evidence_recall": 0.7, "context_tokens": 400.0}
    assert info.scores["tune"]["conversations"] == ["conv-26"] and "no held-out score" in info.scores["note"]

    cheap = export_from_overrides(
        ["study=s", f"storage={storage}", "pick=pareto:context_tokens", f"out={tmp_path / 'cheap'}"]
    )
    assert read_bundle(cheap["bundle"]).config["policy"]["retriever"]["top_k"] == 5
    chosen = export_from_overrides(["study=s", f"storage={storage}", "pick=trial:2", f"out={tmp_path / 't2'}"])
    assert read_bundle(chosen["bundle"]).config["policy"]["retriever"]["top_k"] == 30
    with pytest.raises(ExportError, match="'best' is ambiguous"):
        export_from_overrides(["study=s", f"storage={storage}", f"out={tmp_path / 'x'}"])
    with pytest.raises(ExportError, match="no objective 'f1'"):
        export_from_overrides(["study=s", f"storage={storage}", "pick=pareto:f1", f"out={tmp_path / 'x'}"])
    with pytest.raises(ExportError, match="trial 7 .* is missing"):
        export_from_overrides(["study=s", f"storage={storage}", "pick=trial:7", f"out={tmp_path / 'x'}"])
    with pytest.raises(ExportError, match="study 'nope' is not in"):
        export_from_overrides(["study=nope", f"storage={storage}", f"out={tmp_path / 'x'}"])


def test_export_an_mlflow_trial_run_and_serve_it_from_the_registry(tmp_path, monkeypatch):
    """One test for everything MLflow (its import is slow): a sweep-like trial run -> bundle -> registered pyfunc
    model -> mlflow.pyfunc.load_model("models:/...") adds and searches memories."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import mlflow
    from omegaconf import OmegaConf

    from memtune.optimize.sweep.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "memtune-sweep", str(tmp_path / "artifacts"))
    tracker.start_study(
        "key",
        "s",
        {
            "base_overrides": "policy=rag dataset.conversations=[conv-26, conv-30]",
            "tune_conversations": "conv-26",
            "holdout_conversations": "conv-30",
        },
        {"memtune.study": "s"},
    )
    ran = composed("policy=rag", "policy.retriever.top_k=7")
    not_sampled = {"policy.answerer.max_words": "answer stage: no objective (evidence_recall) depends on it"}
    run_id = tracker.start_trial(3, {"overrides": "policy.retriever.top_k=7", "not_sampled": json.dumps(not_sampled)})
    tracker.end_trial(
        run_id,
        "FINISHED",
        metrics={"overall.evidence_recall": 0.5, "objective.evidence_recall": 0.5},
        dicts={"policy.json": OmegaConf.to_container(ran.policy, resolve=True)},
    )
    tracker.end_study(metrics={"heldout.trial-3.evidence_recall": 0.42})
    with pytest.raises(ExportError, match="not a memtune-sweep trial run"):
        export_from_overrides([f"run_id={tracker.parent_run_id}", f"tracking.tracking_uri={uri}"])

    result = export_from_overrides(
        [
            f"run_id={run_id}",
            f"tracking.tracking_uri={uri}",
            f"tracking.artifact_location={tmp_path / 'artifacts'}",
            f"out={tmp_path / 'bundle'}",
            "register=memtune-policy",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    info = read_bundle(result["bundle"])
    assert info.config["policy"]["name"] == "rag" and info.config["policy"]["retriever"]["top_k"] == 7
    assert info.source["kind"] == "mlflow_run" and info.source["trial"] == 3 and info.source["study"] == "s"
    assert info.source["knobs"]["tuned"] == {"policy.retriever.top_k": 7}
    assert (
        info.source["knobs"]["not_sampled"] == not_sampled
        and "policy.retriever.top_k" not in info.source["knobs"]["defaulted"]
    )
    assert info.scores["tune"]["objectives"] == {"evidence_recall": 0.5}
    assert info.scores["heldout"] == {"conversations": ["conv-30"], "metrics": {"scores.overall.evidence_recall": 0.42}}
    reg = result["registered"]
    assert reg["model_uri"] == "models:/memtune-policy/1" and reg["bundle_version"] == info.version

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(reg["model_uri"])
    added, found = model.predict(
        [
            {
                "op": "add",
                "user_id": "alice",
                "messages": [
                    {"role": "Caroline", "content": "I adopted a golden retriever puppy named Rex last week."},
                    {"role": "Melanie", "content": "I ran a charity race for mental health on Saturday."},
                ],
            },
            {"op": "search", "user_id": "alice", "query": "What pet did Caroline adopt?", "top_k": 1},
        ]
    )
    assert [e["event"] for e in added["result"]] == ["ADD", "ADD"]
    [hit] = found["result"]
    assert "golden retriever" in hit["memory"] and hit["policy_version"] == info.version
    assert hit["embedder_id"] == info.embedder_id and hit["user_id"] == "alice"
    import pandas as pd

    everything, answered = model.predict(
        pd.DataFrame(
            [
                {"op": "get_all", "user_id": "alice"},
                {"op": "answer", "user_id": "alice", "query": "What is the puppy's name?"},
            ]
        )
    )
    assert len(everything["result"]) == 2 and "Rex" in answered["result"]["answer"]
    assert model.predict([{"op": "get_all", "user_id": "bob"}])[0]["result"] == []
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        model.predict([{"op": "get", "memory_id": hit["id"], "colour": "red"}])
    [deleted] = model.predict([{"op": "delete", "memory_id": hit["id"], "user_id": "alice"}])
    assert deleted["result"]["event"] == "DELETE"
    assert len(model.predict([{"op": "get_all", "user_id": "alice"}])[0]["result"]) == 1


def test_loading_a_bundle_needs_no_tuning_stack():
    """A production service installs memtune without the tune extras: the bundle loader must not import them."""
    import subprocess
    import sys

    code = (
        "import sys, memtune.policies.runtime.bundle, memtune.policies.runtime.bundle_save; "
        "print(sorted(m for m in ('optuna', 'mlflow', 'polars') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
