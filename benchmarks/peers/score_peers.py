"""Score the engram peer and memtune's own runs with ONE evidence-recall definition, at k and at equal tokens.

    uv run python benchmarks/peers/score_peers.py \
        --engram benchmarks/peers/engram_retrievals.json \
        --memtune mem0_offline=outputs/eval/<run>/questions.parquet rag=outputs/eval/<run>/questions.parquet \
        --out benchmarks/peers/engram_locomo.json

Questions: memtune's LOCOMO loader (normalised evidence ids), categories 1-4, questions without evidence left out.
Recall: `optimize.evaluation.metrics.evidence_recall` (share of the gold dia_ids covered by the union of the
retrieved items' provenance) over the first k items, and over the items whose RENDERED context fits a token
budget (`context_budget_walk`, tokens by `count_tokens`, cl100k_base). What is rendered:
- engram: the texts of its ranked documents joined by blank lines (each text already carries its ``[date]``
  prefix and speaker names): the least an answerer can be handed, so its token counts are a lower bound.
- memtune: `render_context` (what its answerer reads); its recall_ctx_<B> are read from the run's parquet,
  where memtune-eval computed them with the same walk.
Also reported: engram's OWN R@5/R@10 as its locomo_bench.py defines it (any gold SESSION among the first 5/10
distinct sessions of its top-10 documents), for engram and, with the same rule on their provenance, memtune runs.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from memtune.optimize.data.locomo import dev_path, load_locomo
from memtune.optimize.evaluation.evaluate import BUDGETS
from memtune.optimize.evaluation.metrics import context_budget_walk, count_tokens, evidence_recall, tokenizer_name

KS = (5, 10)


def session_of(dia_id: str) -> int:
    return int(dia_id.split(":")[0][1:])


def own_session_recall(provenance: Sequence[Sequence[str]], evidence: Sequence[str], k: int) -> float:
    """engram's locomo_bench.py rule on any ranked items: map its first 10 items (top_k * 2) to the distinct
    sessions they came from (an item's session = that of its first provenance id, as an engram document has one
    session), in order; 1 when any gold session is among the first k of those. Items without provenance count
    for no session."""
    sessions: list[int] = []
    for prov in provenance[:10]:
        if prov and session_of(prov[0]) not in sessions:
            sessions.append(session_of(prov[0]))
    gold = {session_of(d) for d in evidence}
    return float(bool(gold & set(sessions[:k])))


def chance_session_recall(dataset, questions: dict, k: int) -> float:
    """engram's session-level R@k of a retriever that names k sessions at random: per question
    1 - C(N - g, k) / C(N, k), with N the conversation's sessions and g its distinct gold sessions."""
    values = []
    for conv in dataset.conversations:
        n = len(conv.sessions)
        for q in conv.questions:
            if q.qid in questions:
                g = len({session_of(d) for d in q.evidence})
                values.append(1 - math.comb(n - g, k) / math.comb(n, k))
    return mean(values)


def join_texts(items: Sequence[dict]) -> str:
    return "\n\n".join(item["text"] for item in items)


def mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


def engram_rows(path: Path, questions: dict, mode: str, credit_synthetic: bool) -> list[dict]:
    run = json.loads(path.read_text())
    rows = []
    for conv in run["conversations"].values():
        docs = {d["id"]: d for d in conv["documents"]}
        for q in conv["questions"]:
            gold = questions.get(q["qid"])
            if gold is None:
                continue
            items = [docs[i] for i in q[mode]]
            prov = [d["provenance"] if credit_synthetic or d["kind"] == "session" else [] for d in items]
            total, kept = context_budget_walk(items, join_texts, BUDGETS, count_tokens)
            if total <= max(BUDGETS):
                raise ValueError(f"{q['qid']}: {len(items)} documents render to {total} tokens <= {max(BUDGETS)}")
            rows.append(
                {
                    "qid": q["qid"],
                    "category": gold.category,
                    **{f"recall@{k}": evidence_recall(gold.evidence, prov[:k]) for k in KS},
                    **{f"tokens@{k}": count_tokens(join_texts(items[:k])) for k in KS},
                    **{f"recall_ctx_{b}": evidence_recall(gold.evidence, prov[: kept[b]]) for b in BUDGETS},
                    **{f"own_r{k}": own_session_recall(prov, gold.evidence, k) for k in KS},
                }
            )
    return rows


def memtune_rows(path: Path, questions: dict) -> list[dict]:
    frame = pl.read_parquet(path)
    rows = []
    for r in frame.iter_rows(named=True):
        gold = questions.get(r["qid"])
        if gold is None:
            continue
        prov = r["retrieved_provenance"]
        rows.append(
            {
                "qid": r["qid"],
                "category": gold.category,
                **{f"recall@{k}": evidence_recall(gold.evidence, prov[:k]) for k in KS},
                "top_k": r["n_retrieved"],
                "evidence_recall_topk": r["evidence_recall"],
                "context_tokens_topk": r["context_tokens"],
                **{f"recall_ctx_{b}": r[f"recall_ctx_{b}"] for b in BUDGETS},
                **{f"own_r{k}": own_session_recall(prov, gold.evidence, k) for k in KS},
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("qid", "category")]
    out = {"n": len(rows), **{k: mean([r[k] for r in rows]) for k in keys}}
    out["per_category"] = {
        c: {"n": len(sub), **{k: mean([r[k] for r in sub]) for k in keys if k.startswith("recall")}}
        for c in (1, 2, 3, 4)
        if (sub := [r for r in rows if r["category"] == c])
    }
    return out


def engram_claim_rows(path: Path, mode: str, categories: set[int]) -> dict:
    """engram's own R@5/R@10 exactly as its benchmark computes it (raw evidence strings, every category given)."""
    run = json.loads(path.read_text())
    qs = [q for c in run["conversations"].values() for q in c["questions"] if q["evidence_raw"]]
    qs = [q for q in qs if q["category"] in categories]
    return {
        "n": len(qs),
        "R@5": mean([q[f"{mode}_own_r5"] for q in qs]),
        "R@10": mean([q[f"{mode}_own_r10"] for q in qs]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engram", type=Path, default=Path("benchmarks/peers/engram_retrievals.json"))
    ap.add_argument("--memtune", nargs="*", default=[], help="name=questions.parquet of a memtune-eval run")
    ap.add_argument("--conversations", nargs="+", default=["conv-43", "conv-44", "conv-47"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/peers/engram_locomo.json"))
    args = ap.parse_args()

    dataset = load_locomo(dev_path(), conversations=args.conversations)
    questions = {
        q.qid: q for conv in dataset.conversations for q in conv.questions if q.category in (1, 2, 3, 4) and q.evidence
    }
    systems: dict[str, dict] = {}
    for mode in ("hybrid", "dense"):
        systems[f"engram-{mode}"] = summarise(engram_rows(args.engram, questions, mode, credit_synthetic=True))
        systems[f"engram-{mode}-chunks-only"] = summarise(
            engram_rows(args.engram, questions, mode, credit_synthetic=False)
        )
    for spec in args.memtune:
        name, _, parquet = spec.partition("=")
        systems[f"memtune-{name}"] = summarise(memtune_rows(Path(parquet), questions))
    claim = {
        f"engram-{mode}": {
            "categories_1_5": engram_claim_rows(args.engram, mode, {1, 2, 3, 4, 5}),
            "categories_1_4": engram_claim_rows(args.engram, mode, {1, 2, 3, 4}),
        }
        for mode in ("hybrid", "dense")
    }
    meta = json.loads(args.engram.read_text())
    result = {
        "engram_run": {k: v for k, v in meta.items() if k != "conversations"},
        "memtune_runs": dict(spec.partition("=")[::2] for spec in args.memtune),
        "conversations": args.conversations,
        "questions": len(questions),
        "tokenizer": tokenizer_name(),
        "budgets": list(BUDGETS),
        "systems": systems,
        "engram_own_metric": claim,
        "engram_own_metric_chance": {f"R@{k}": chance_session_recall(dataset, questions, k) for k in KS},
        "sessions": {conv.sample_id: len(conv.sessions) for conv in dataset.conversations},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    cols = ["recall@5", "recall@10", *(f"recall_ctx_{b}" for b in BUDGETS), "own_r5"]
    print("| system | n | " + " | ".join(cols) + " | tokens@5 | tokens@10 |")
    print("|---" * (len(cols) + 4) + "|")
    for name, s in systems.items():
        vals = " | ".join(f"{s[c]:.3f}" for c in cols)
        print(f"| {name} | {s['n']} | {vals} | {s.get('tokens@5', '')} | {s.get('tokens@10', '')} |")
    print(json.dumps({k: result[k] for k in ("engram_own_metric", "engram_own_metric_chance", "sessions")}, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
