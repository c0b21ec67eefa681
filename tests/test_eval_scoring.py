"""Honest per-question scoring (issue 11): a failed LM answer is scored 0 and is never an abstention, a failed
judgement counts WRONG with J's denominator explicit, the rendered context is the one the answerer reads and
the budget walk counts it, and oracle runs say so in summary tags and report labels. DummyLM only."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import HashEmbedder
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.utils.dummies import DummyLM

from memtune.optimize.data.locomo import load_locomo, resolve_path
from memtune.optimize.evaluation.evaluate import (
    BUDGETS,
    answer_questions,
    conversation_scope,
    ingest,
    score_table,
    summary_dict,
)
from memtune.optimize.evaluation.judge import Judge
from memtune.optimize.evaluation.metrics import count_tokens
from memtune.optimize.evaluation.oracle import oracle_label, oracle_stages, summary_oracle
from memtune.optimize.sweep.run_record import oracle_tags, summary_metrics, summary_tags
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer, LLMAnswerer, render_context
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.signatures import AnswerQuestion
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.store.store import MemoryStore

CAT = "What is the name of Priya's cat?"  # q7, category 4, gold "Pixel"
SATURDAYS = "What does Priya do on Saturdays?"  # q9, category 4
TOMAS_CAT = "What is the name of Tomas's cat?"  # q12, category 5 (adversarial)
COMPANY = "Which company does Tomas work for as a data analyst?"  # q13, category 5
GARBAGE = {"nonsense": "no answer field"}  # malformed for every signature: parsing fails, retried, then recorded


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """The fixture conversation ingested offline once, with 4 of its questions (two of category 4, two of 5)."""
    conversation = load_locomo(resolve_path("data/fixture/fixture.json")).conversations[0]
    keep = [q for q in conversation.questions if q.question in (CAT, SATURDAYS, TOMAS_CAT, COMPANY)]
    conversation = replace(conversation, questions=tuple(keep))
    embedder = HashEmbedder()
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(top_k=8),
        ExtractiveAnswerer(),
        embedder,
        MemoryStore(tmp_path_factory.mktemp("store"), embedder.dim, embedder.id),
    )
    ingest(policy, conversation, progress=False)
    return policy, conversation


def llm_answers(policy, answers: dict) -> None:
    policy.answerer = LLMAnswerer()
    policy.lm = DummyLM(answers)


def by_question(rows: list[dict]) -> dict[str, dict]:
    return {r["question"]: r for r in rows}


def overall_and_adversarial(rows) -> tuple[dict, dict]:
    import polars as pl

    summary = summary_dict(score_table(pl.DataFrame(rows, schema_overrides={"judge": pl.Float64})))
    return summary["overall"], summary["5 adversarial"]


def test_a_failed_answer_scores_zero_and_is_not_an_abstention(ingested):
    policy, conversation = ingested
    llm_answers(
        policy,
        {
            CAT: GARBAGE,
            SATURDAYS: {"answer": "Volunteers teaching kids to code"},
            TOMAS_CAT: GARBAGE,  # an adversarial question: "" used to count as the right abstention
            COMPANY: {"answer": "Not mentioned"},
        },
    )
    judge = Judge(DummyLM({SATURDAYS: {"reasoning": "same", "label": "CORRECT"}}))
    rows = by_question(answer_questions(policy, conversation, judge=judge, progress=False))
    failed = rows[CAT]
    assert failed["prediction"] is None and failed["answer_failed"] is True
    assert failed["f1"] == failed["f1_squad"] == failed["bleu1"] == 0.0
    assert failed["abstained"] is False
    assert failed["judge"] == 0.0 and failed["judge_failed"] is False  # WRONG, without asking the judge
    assert rows[SATURDAYS]["answer_failed"] is False and rows[SATURDAYS]["f1"] == 1.0 and rows[SATURDAYS]["judge"] == 1
    assert rows[TOMAS_CAT]["answer_failed"] is True and rows[TOMAS_CAT]["abstained"] is False
    assert rows[TOMAS_CAT]["judge"] is None  # category 5 is never judged
    assert rows[COMPANY]["abstained"] is True
    assert [f.phase for f in policy.meter.failures][-2:] == ["answer", "answer"]
    assert judge.meter.phases["judge"].calls == 1  # only the one real answer went to the judge

    overall, adversarial = overall_and_adversarial(list(rows.values()))
    assert overall["answer_failures"] == 1 and adversarial["answer_failures"] == 1
    assert adversarial["abstained"] == 0.5  # 1 of 2: the failed answer is not the right abstention
    assert overall["f1"] == 0.5  # (0 + 1) / 2
    assert (overall["judge"], overall["judge_n"], overall["n_judged"], overall["judge_failures"]) == (0.5, 2, 1, 0)
    assert overall["judge_judged_only"] == 1.0


def test_a_failed_judgement_counts_wrong_and_is_reported(ingested):
    policy, conversation = ingested
    llm_answers(
        policy,
        {
            CAT: {"answer": "Pixel"},
            SATURDAYS: {"answer": "Volunteers teaching kids to code"},
            TOMAS_CAT: {"answer": "Not mentioned"},
            COMPANY: {"answer": "Not mentioned"},
        },
    )
    # the judge answers CAT with a label outside CORRECT/WRONG: retried, then recorded as a failure
    judge = Judge(
        DummyLM(
            {
                CAT: {"reasoning": "hmm", "label": "MAYBE"},
                SATURDAYS: {"reasoning": "same", "label": "CORRECT"},
            }
        )
    )
    rows = by_question(answer_questions(policy, conversation, judge=judge, progress=False))
    assert rows[CAT]["judge"] == 0.0 and rows[CAT]["judge_failed"] is True and rows[CAT]["answer_failed"] is False
    assert rows[SATURDAYS]["judge"] == 1.0 and rows[SATURDAYS]["judge_failed"] is False
    [failure] = judge.meter.failures
    assert failure.phase == "judge" and failure.item == rows[CAT]["qid"]

    overall, _ = overall_and_adversarial(list(rows.values()))
    # the old J, which dropped the failure, would have been 1.0 over 1 question
    assert (overall["judge"], overall["judge_n"], overall["n_judged"], overall["judge_failures"]) == (0.5, 2, 1, 1)
    assert overall["judge_judged_only"] == 1.0 and overall["answer_failures"] == 0


def test_no_judge_leaves_j_undefined_with_zero_counts(ingested):
    policy, conversation = ingested
    policy.answerer, policy.lm = ExtractiveAnswerer(), None
    rows = answer_questions(policy, conversation, progress=False)
    assert all(r["judge"] is None and r["judge_failed"] is False and r["answer_failed"] is False for r in rows)
    overall, _ = overall_and_adversarial(rows)
    assert overall["judge"] is None and overall["judge_n"] == overall["n_judged"] == overall["judge_failures"] == 0


def test_the_llm_answerer_reads_exactly_the_rendered_context(ingested):
    """The prompt's memories field is render_context(memories), byte for byte what DSPy would write for the list
    itself (so prompts and the LM cache are unchanged), and the eval's context_tokens counts that very text."""
    policy, conversation = ingested
    llm_answers(policy, {CAT: {"answer": "Pixel"}})
    answer, memories = policy.answer(CAT, conversation_scope(conversation))
    assert answer == "Pixel" and len(memories) == 8
    text = render_context(memories)
    assert text == json.dumps([{"said_at": m.timestamp, "memory": m.text} for m in memories], ensure_ascii=False)
    assert f"[[ ## memories ## ]]\n{text}\n" in policy.lm.history[-1]["messages"][-1]["content"]
    adapter = ChatAdapter()
    as_list = adapter.format_user_message_content(AnswerQuestion, {"question": CAT, "memories": json.loads(text)})
    assert as_list == adapter.format_user_message_content(AnswerQuestion, {"question": CAT, "memories": text})

    rows = by_question(answer_questions(policy, replace(conversation, questions=conversation.questions[:1])))
    assert rows[CAT]["context_tokens"] == count_tokens(text)
    for b in BUDGETS:  # the whole top-k is kept exactly under the budgets its rendered context fits
        if count_tokens(text) <= b:
            assert rows[CAT][f"recall_ctx_{b}"] == rows[CAT]["evidence_recall"]


# ---------------------------------------------------------------------------------------------------- oracle


def test_oracle_stages_of_a_policy_config():
    observations = {"extractor": {"_target_": "memtune.policies.stages.extract.ObservationExtractor"}}
    heuristic = {"extractor": {"_target_": "memtune.policies.stages.extract.HeuristicExtractor", "min_words": 4}}
    assert oracle_stages(observations) == {"extractor": "observations"}  # the override a user types
    assert oracle_stages(heuristic) == {} and oracle_stages(None) == {}
    assert oracle_label("mem0_offline", {"extractor": "observations"}) == "mem0_offline [ORACLE: observations]"
    assert oracle_label("mem0_offline", {}) == "mem0_offline"
    # a summary.json written before the flag existed is read from its resolved config
    assert summary_oracle({"config": {"policy": observations}}) == {"extractor": "observations"}
    assert summary_oracle({"oracle_stages": {}, "config": {"policy": observations}}) == {}


def test_oracle_summary_is_an_mlflow_metric_and_tag(tmp_path):
    summary = {"oracle": True, "oracle_stages": {"extractor": "observations"}, "scores": {}}
    assert summary_metrics(summary)["oracle"] == 1.0
    assert summary_metrics({"oracle": False, "scores": {}})["oracle"] == 0.0
    assert summary_tags(summary) == {"memtune.oracle": "true", "memtune.oracle_stages": "extractor=observations"}
    assert oracle_tags(summary_metrics(summary)) == {"memtune.oracle": "true"}
    assert oracle_tags({"oracle": 0.0}) == {"memtune.oracle": "false"} and oracle_tags({}) == {}

    from memtune.optimize.sweep.tracking import MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "oracle-test")
    tracker.start_study("key", "study", {}, {})
    oracle_run, policy_run = tracker.start_trial(0, {}), tracker.start_trial(1, {})
    # what memtune-sweep passes today: the summary's metrics (the tag follows the `oracle` metric)
    tracker.end_trial(oracle_run, "FINISHED", metrics=summary_metrics(summary))
    tracker.end_trial(policy_run, "FINISHED", metrics=summary_metrics({"scores": {}}), tags={"x": "y"})
    tags = tracker.client.get_run(oracle_run).data.tags
    assert tags["memtune.oracle"] == "true"
    assert tracker.client.get_run(policy_run).data.tags["memtune.oracle"] == "false"


def test_an_oracle_eval_run_says_so_and_reports_budgets_and_failures(tmp_path):
    """`memtune-eval policy/extractor=observations` on the fixture: oracle in summary.json, the printed warning,
    the rendered-context budget columns and the failure counts."""
    import polars as pl
    from test_eval_app import run_eval

    proc = run_eval(tmp_path, "dataset=fixture", "policy/extractor=observations")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["oracle"] is True and summary["oracle_stages"] == {"extractor": "observations"}
    assert "ORACLE run" in proc.stdout
    overall = summary["scores"]["overall"]
    assert overall["answer_failures"] == 0 and overall["judge_n"] == 0 and overall["judge"] is None
    frame = pl.read_parquet(tmp_path / "run" / "questions.parquet")
    assert not frame["answer_failed"].any() and not frame["judge_failed"].any()
    names = [f"recall_ctx_{b}" for b in BUDGETS]
    for row in frame.drop_nulls("evidence_recall").iter_rows(named=True):
        recalls = [row[n] for n in names]
        assert recalls == sorted(recalls) and recalls[-1] <= row["evidence_recall"]  # a bigger budget keeps more
        for b, name in zip(BUDGETS, names):
            if row["context_tokens"] <= b:  # the whole rendered context fits: recall of the whole top-k
                assert row[name] == row["evidence_recall"]
    for name in names:
        assert overall[name] == pytest.approx(frame.filter(pl.col("category") <= 4)[name].mean(), abs=1e-4)
